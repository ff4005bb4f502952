"""Camera and microphone streams: Image frames and AudioChunk samples, publish or listen.

No devices are needed: the "camera" is a synthetic moving gradient with a frame counter drawn as
a bright bar, and the "microphone" a sine tone. To stream real devices, replace ``read_camera``
and ``read_microphone`` bodies with your capture code (e.g. OpenCV, sounddevice); the decorators
stay as they are. Run in two terminals, in either order:

    python examples/sensors/cam_mic.py --mode publish --mware zeromq --stream video audio
    python examples/sensors/cam_mic.py --mode listen --mware zeromq --stream video audio

Frames travel JPEG-compressed with --jpg, otherwise raw (one zero-copy buffer per frame).
"""

import argparse
import logging
import time

import numpy as np

from wrapyfi_like.connect.wrapper import DEFAULT_COMMUNICATOR, MiddlewareCommunicator


class CamMic(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("Image", "$mware", "CamMic", "/cam_mic/cam_feed",
                                     carrier="tcp", width="$img_width", height="$img_height", rgb=True,
                                     jpg="$jpg", should_wait=True)
    def read_camera(self, frame_index, img_width=320, img_height=240, jpg=False, mware=None):
        y, x = np.mgrid[0:img_height, 0:img_width]
        frame = np.stack([(x + 3 * frame_index) % 256, (y + 2 * frame_index) % 256,
                          np.full_like(x, 64)], axis=-1).astype(np.uint8)
        frame[:8, : (frame_index * 8) % img_width] = 255  # a bar that grows with every frame
        return frame,

    @MiddlewareCommunicator.register("AudioChunk", "$mware", "CamMic", "/cam_mic/audio_feed",
                                     carrier="tcp", rate="$aud_rate", chunk="$aud_chunk", channels="$aud_channels",
                                     should_wait=True)
    def read_microphone(self, chunk_index, aud_rate=16000, aud_chunk=1600, aud_channels=1, mware=None):
        t = (np.arange(aud_chunk) + chunk_index * aud_chunk) / aud_rate
        tone = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
        return (np.repeat(tone[:, None], aud_channels, axis=1), aud_rate),


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("publish", "listen"), required=True, help="publish or listen")
    parser.add_argument("--mware", choices=sorted(MiddlewareCommunicator.get_communicators()),
                        default=DEFAULT_COMMUNICATOR, help="middleware to use (default: %(default)s)")
    parser.add_argument("--stream", nargs="+", choices=("video", "audio"), default=["video", "audio"],
                        help="streams to run (default: both)")
    parser.add_argument("--jpg", action="store_true", help="JPEG-compress the frames")
    parser.add_argument("--count", type=int, default=0, help="stop after this many frames/chunks (0: never)")
    parser.add_argument("--rate", type=float, default=10.0, help="frames/chunks per second when publishing")
    return parser.parse_args()


def main():
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    cam_mic = CamMic()
    for stream, method in (("video", CamMic.read_camera), ("audio", CamMic.read_microphone)):
        cam_mic.activate_communication(method, mode=args.mode if stream in args.stream else "disable")
    done = 0
    try:
        while args.count == 0 or done < args.count:
            done += 1
            if "video" in args.stream:
                (frame,) = cam_mic.read_camera(done, jpg=args.jpg, mware=args.mware)
                print(f"video {done}: frame {frame.shape} {frame.dtype} mean {frame.mean():.1f}", flush=True)
            if "audio" in args.stream:
                ((samples, rate),) = cam_mic.read_microphone(done, mware=args.mware)
                print(f"audio {done}: chunk {samples.shape} @ {rate} Hz peak {np.abs(samples).max():.2f}", flush=True)
            if args.mode == "publish" and (args.count == 0 or done < args.count):
                time.sleep(1.0 / args.rate)  # pacing the example, not waiting for a connection
    except KeyboardInterrupt:
        pass
    finally:
        cam_mic.close()


if __name__ == "__main__":
    main()
