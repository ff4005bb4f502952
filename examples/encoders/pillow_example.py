"""PIL images between two processes, pixel-exact, or in their file format with --encoded.

Run in two terminals, in either order:

    python examples/encoders/pillow_example.py --mode publish --mware zeromq
    python examples/encoders/pillow_example.py --mode listen --mware zeromq

Each message holds an RGB gradient, a palette ("P") image and an image loaded from PNG bytes
(as if from a file, so it has ``format == "PNG"``). Images travel as raw pixels by default; with
``--encoded`` on the publisher, the decorator's ``publisher_kwargs=dict(pillow_encoded="$encoded")``
sends images that came from a file as their PNG/JPEG bytes instead. Either way the listener gets
the same pixels, mode, palette and format.
"""

import argparse
import hashlib
import io
import time

from PIL import Image

from wrapyfi_like.connect.wrapper import DEFAULT_COMMUNICATOR, MiddlewareCommunicator


def _png_image(count):
    buffer = io.BytesIO()
    Image.new("RGBA", (32, 16), (count % 256, 80, 160, 200)).save(buffer, format="PNG")
    return Image.open(io.BytesIO(buffer.getvalue()))


class ImageExchange(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("NativeObject", "$mware", "ImageExchange", "/examples/encoders/pillow",
                                     carrier="tcp", should_wait=True,
                                     publisher_kwargs=dict(pillow_encoded="$encoded"))
    def send_images(self, count, encoded=False, mware=None):
        gradient = Image.linear_gradient("L").resize((64, 48)).convert("RGB")
        palette = Image.new("P", (8, 8), count % 4)
        palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
        return {"gradient": gradient, "palette": palette, "from_png": _png_image(count)},


def describe(images):
    return "; ".join(
        f"{name}: {image.mode} {image.size} format={image.format} "
        f"sha1={hashlib.sha1(image.tobytes()).hexdigest()[:12]} palette={(image.getpalette() or [])[:6]}"
        for name, image in images.items()
    )


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("publish", "listen"), required=True,
                        help="publish images, or listen and print them")
    parser.add_argument("--mware", choices=sorted(MiddlewareCommunicator.get_communicators()),
                        default=DEFAULT_COMMUNICATOR, help="middleware to use (default: %(default)s)")
    parser.add_argument("--encoded", action="store_true",
                        help="publisher: send images that came from a file in their file format")
    parser.add_argument("--count", type=int, default=0, help="stop after this many messages (0: never)")
    parser.add_argument("--rate", type=float, default=1.0, help="messages per second when publishing")
    return parser.parse_args()


def main():
    args = parse_args()
    exchange = ImageExchange()
    exchange.activate_communication(ImageExchange.send_images, mode=args.mode)
    sent = 0
    try:
        while args.count == 0 or sent < args.count:
            sent += 1
            (images,) = exchange.send_images(sent, encoded=args.encoded, mware=args.mware)
            print(("published" if args.mode == "publish" else "received"), describe(images), flush=True)
            if args.mode == "publish" and (args.count == 0 or sent < args.count):
                time.sleep(1.0 / args.rate)  # pacing the example, not waiting for a connection
    except KeyboardInterrupt:
        pass
    finally:
        exchange.close()


if __name__ == "__main__":
    main()
