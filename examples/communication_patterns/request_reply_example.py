"""Request/reply: a client calls a method that runs in the server process, and gets its returns.

Run in two terminals, in either order (a request waits up to --timeout seconds for the server):

    python examples/communication_patterns/request_reply_example.py --mode reply --mware zeromq
    python examples/communication_patterns/request_reply_example.py --mode request --mware zeromq

Each request sends a message and a counter; the server answers with a dict, a JPEG-compressed
image and an audio chunk (both synthetic: a moving gradient and a tone), all in one reply. Every
value is encoded as its own decorator says (NativeObject, Image, AudioChunk).
"""

import argparse
import logging

import numpy as np

from wrapyfi_like.connect.wrapper import DEFAULT_COMMUNICATOR, MiddlewareCommunicator


def synthetic_frame(count, width, height):
    y, x = np.mgrid[0:height, 0:width]
    shift = 4 * count
    return np.stack([(x + shift) % 256, (y + shift) % 256, np.full_like(x, 128)], axis=-1).astype(np.uint8)


def synthetic_tone(count, chunk, rate, frequency=440.0):
    t = (np.arange(chunk) + count * chunk) / rate
    return np.sin(2 * np.pi * frequency * t).astype(np.float32).reshape(-1, 1), rate


class ReqRep(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("NativeObject", "$mware", "ReqRep", "/req_rep/my_message",
                                     carrier="tcp", request_timeout="$timeout")
    @MiddlewareCommunicator.register("Image", "$mware", "ReqRep", "/req_rep/my_image_message",
                                     carrier="tcp", width="$img_width", height="$img_height", rgb=True,
                                     jpg={"quality": 90})
    @MiddlewareCommunicator.register("AudioChunk", "$mware", "ReqRep", "/req_rep/my_audio_message",
                                     carrier="tcp", rate="$aud_rate", chunk="$aud_chunk", channels=1)
    def send_message(self, msg=None, counter=0, img_width=320, img_height=240, aud_rate=16000,
                     aud_chunk=1600, timeout=10.0, mware=None):
        """Runs in the server with the client's arguments."""
        reply = {"message": f"got {msg!r}", "counter": counter}
        return reply, synthetic_frame(counter, img_width, img_height), synthetic_tone(counter, aud_chunk, aud_rate)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("request", "reply"), required=True,
                        help="request: call the method remotely; reply: serve the calls")
    parser.add_argument("--mware", choices=sorted(MiddlewareCommunicator.get_communicators()),
                        default=DEFAULT_COMMUNICATOR, help="middleware to use (default: %(default)s)")
    parser.add_argument("--count", type=int, default=0, help="stop after this many requests (0: never)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds a request waits (default: %(default)s)")
    return parser.parse_args()


def main():
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    req_rep = ReqRep()
    req_rep.activate_communication(ReqRep.send_message, mode=args.mode)
    done = 0
    try:
        while args.count == 0 or done < args.count:
            done += 1
            if args.mode == "request":
                reply, image, (audio, rate) = req_rep.send_message(
                    f"hello #{done}", counter=done, timeout=args.timeout, mware=args.mware)
                print(f"reply {reply} image {image.shape} {image.dtype} audio {audio.shape} @ {rate} Hz", flush=True)
            else:
                reply, image, (audio, rate) = req_rep.send_message(mware=args.mware)
                print(f"served {reply}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        req_rep.close()


if __name__ == "__main__":
    main()
