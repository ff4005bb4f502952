"""Channeling: one method returns a NativeObject, an Image and an AudioChunk, each on its own topic.

Run the publisher and any number of listeners, in any order; a listener takes all channels or a
subset (the others are disabled, so it never subscribes to them):

    python examples/communication_schemes/channeling_example.py --mode publish --mware zeromq
    python examples/communication_schemes/channeling_example.py --mode listen --mware zeromq
    python examples/communication_schemes/channeling_example.py --mode listen --mware zeromq --channels C

Channels: A = NativeObject on /example/native_A_msg, B = Image on /example/image_B_msg,
C = AudioChunk on /example/audio_C_msg. The image is a random frame and the audio random noise.
"""

import argparse
import logging
import time

import numpy as np

from wrapyfi_like.connect.wrapper import DEFAULT_COMMUNICATOR, MiddlewareCommunicator

NATIVE = ("NativeObject", "$mware", "Channeling", "/example/native_A_msg")
IMAGE = ("Image", "$mware", "Channeling", "/example/image_B_msg")
AUDIO = ("AudioChunk", "$mware", "Channeling", "/example/audio_C_msg")
IMAGE_KWARGS = dict(width="$img_width", height="$img_height", rgb=True)
AUDIO_KWARGS = dict(rate="$aud_rate", chunk="$aud_chunk", channels=1)


class Channeling(MiddlewareCommunicator):
    @MiddlewareCommunicator.register(*NATIVE, carrier="tcp", should_wait=True)
    @MiddlewareCommunicator.register(*IMAGE, carrier="tcp", should_wait=True, **IMAGE_KWARGS)
    @MiddlewareCommunicator.register(*AUDIO, carrier="tcp", should_wait=True, **AUDIO_KWARGS)
    def read_mulret(self, counter, img_width=200, img_height=150, aud_rate=16000, aud_chunk=1600, mware=None):
        """The publisher's method: all three channels from one call."""
        rng = np.random.default_rng(counter)
        image = rng.integers(0, 256, (img_height, img_width, 3), dtype=np.uint8)
        audio = rng.uniform(-1, 1, (aud_chunk, 1)).astype(np.float32), aud_rate
        return {"counter": counter, "image_mean": float(image.mean())}, image, audio

    # A listener's view of each channel; the bodies never run (mode listen or disable).
    @MiddlewareCommunicator.register(*NATIVE, carrier="tcp", should_wait=True)
    def channel_A(self, mware=None):
        return None,

    @MiddlewareCommunicator.register(*IMAGE, carrier="tcp", should_wait=True, **IMAGE_KWARGS)
    def channel_B(self, img_width=200, img_height=150, mware=None):
        return None,

    @MiddlewareCommunicator.register(*AUDIO, carrier="tcp", should_wait=True, **AUDIO_KWARGS)
    def channel_C(self, aud_rate=16000, aud_chunk=1600, mware=None):
        return None,


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("publish", "listen"), required=True, help="publish or listen")
    parser.add_argument("--mware", choices=sorted(MiddlewareCommunicator.get_communicators()),
                        default=DEFAULT_COMMUNICATOR, help="middleware to use (default: %(default)s)")
    parser.add_argument("--channels", default="ABC", help="channels a listener takes, e.g. AC (default: ABC)")
    parser.add_argument("--count", type=int, default=0, help="stop after this many messages (0: never)")
    parser.add_argument("--rate", type=float, default=2.0, help="messages per second when publishing")
    return parser.parse_args()


def main():
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    channeling = Channeling()
    channels = {"A": Channeling.channel_A, "B": Channeling.channel_B, "C": Channeling.channel_C}
    if args.mode == "publish":
        channeling.activate_communication(Channeling.read_mulret, mode="publish")
    else:
        for name, method in channels.items():
            channeling.activate_communication(method, mode="listen" if name in args.channels.upper() else "disable")
    done = 0
    try:
        while args.count == 0 or done < args.count:
            done += 1
            if args.mode == "publish":
                native, image, (audio, rate) = channeling.read_mulret(done, mware=args.mware)
                print(f"published {native}, image {image.shape}, audio {audio.shape} @ {rate} Hz", flush=True)
                if args.count == 0 or done < args.count:
                    time.sleep(1.0 / args.rate)  # pacing the example, not waiting for a connection
                continue
            (native,) = channeling.channel_A(mware=args.mware)
            (image,) = channeling.channel_B(mware=args.mware)
            (audio_chunk,) = channeling.channel_C(mware=args.mware)  # None when disabled
            audio, rate = audio_chunk or (None, None)
            print(f"A: {native}", f"B: {None if image is None else image.shape}",
                  f"C: {None if audio is None else audio.shape} @ {rate} Hz", sep=" | ", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        channeling.close()


if __name__ == "__main__":
    main()
