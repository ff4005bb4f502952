"""Transceive/reemit: one process sends frames and gets them back processed by another.

Run in two terminals, in either order:

    python examples/communication_patterns/transceive_reemit_example.py --mode reemit --mware zeromq --effect invert
    python examples/communication_patterns/transceive_reemit_example.py --mode transceive --mware zeromq

The transceiver publishes a synthetic frame and its metadata on /camera/raw_image and
/message/my_message_snd, then listens on /camera/effect_image and /message/my_message_rec (its
``listener_kwargs`` topics). The reemitter listens on the raw topics, calls ``apply_effect`` with
what arrived appended to its arguments, and publishes the result on the effect topics.
"""

import argparse
import logging
import time

import numpy as np

from wrapyfi_like.connect.wrapper import DEFAULT_COMMUNICATOR, MiddlewareCommunicator

EFFECTS = {
    "none": lambda image: image,
    "invert": lambda image: 255 - image,
    "grayscale": lambda image: np.repeat(image.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2),
}


class CameraEffects(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("Image", "$mware", "CameraRaw", "/camera/raw_image",
                                     carrier="tcp", width="$img_width", height="$img_height", rgb=True,
                                     publisher_kwargs={"out_topic": "/camera/raw_image"},
                                     listener_kwargs={"in_topic": "/camera/effect_image"})
    @MiddlewareCommunicator.register("NativeObject", "$mware", "CameraRaw", "/message/my_message_snd",
                                     carrier="tcp",
                                     publisher_kwargs={"out_topic": "/message/my_message_snd"},
                                     listener_kwargs={"in_topic": "/message/my_message_rec"})
    def send_image(self, frame_id, img_width=160, img_height=120, mware=None):
        """Makes a synthetic frame: a gradient whose brightness encodes the frame id."""
        y, x = np.mgrid[0:img_height, 0:img_width]
        frame = np.stack([x % 256, y % 256, np.full_like(x, frame_id % 256)], axis=-1).astype(np.uint8)
        return frame, {"frame_id": frame_id, "sent": time.time()}

    @MiddlewareCommunicator.register("Image", "$mware", "CameraEffects", "/camera/effect_image",
                                     carrier="tcp", width="$img_width", height="$img_height", rgb=True,
                                     publisher_kwargs={"out_topic": "/camera/effect_image"},
                                     listener_kwargs={"in_topic": "/camera/raw_image"})
    @MiddlewareCommunicator.register("NativeObject", "$mware", "CameraEffects", "/message/my_message_rec",
                                     carrier="tcp",
                                     publisher_kwargs={"out_topic": "/message/my_message_rec"},
                                     listener_kwargs={"in_topic": "/message/my_message_snd"})
    def apply_effect(self, *arrived, effect="none", img_width=160, img_height=120, mware=None):
        """Runs in the reemitter with (frame, metadata) appended to its arguments."""
        frame, metadata = arrived
        return EFFECTS[effect](frame), {**metadata, "effect": effect}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("transceive", "reemit"), required=True,
                        help="transceive: send frames and show what comes back; reemit: process and send back")
    parser.add_argument("--mware", choices=sorted(MiddlewareCommunicator.get_communicators()),
                        default=DEFAULT_COMMUNICATOR, help="middleware to use (default: %(default)s)")
    parser.add_argument("--effect", choices=sorted(EFFECTS), default="invert", help="effect the reemitter applies")
    parser.add_argument("--count", type=int, default=0, help="stop after this many frames (0: never)")
    return parser.parse_args()


def main():
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    cam = CameraEffects()
    if args.mode == "transceive":
        cam.activate_communication(CameraEffects.send_image, mode="transceive")
        cam.activate_communication(CameraEffects.apply_effect, mode="disable")
    else:
        cam.activate_communication(CameraEffects.apply_effect, mode="reemit")
        cam.activate_communication(CameraEffects.send_image, mode="disable")
    done = 0
    try:
        while args.count == 0 or done < args.count:
            done += 1
            if args.mode == "transceive":
                frame, metadata = cam.send_image(done, mware=args.mware)
                latency_ms = (time.time() - metadata["sent"]) * 1000
                print(f"frame {metadata['frame_id']} came back with effect {metadata['effect']}: "
                      f"{frame.shape}, pixel[0,0]={frame[0, 0].tolist()}, round trip {latency_ms:.1f} ms", flush=True)
            else:
                frame, metadata = cam.apply_effect(effect=args.effect, mware=args.mware)
                print(f"reemitted frame {metadata['frame_id']} with effect {args.effect}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        cam.close()


if __name__ == "__main__":
    main()
