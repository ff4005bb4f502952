"""JSON mode: a publisher that writes each message as one JSON document, and a listener.

Run in two terminals, in either order:

    python examples/json_messages.py --mode publish --serializer json
    python examples/json_messages.py --mode listen

The listener needs no setting: it reads binary and JSON messages alike. While both run,
``wrapyfi-like echo /json/demo`` prints the messages too, and any JSON parser (``jq``, a browser,
node) can read the publisher's frames: see docs/guide/messages.md.
"""

import argparse
import logging
import time

import numpy as np

from wrapyfi_like.connect.wrapper import DEFAULT_COMMUNICATOR, MiddlewareCommunicator


class Telemetry(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("NativeObject", "$mware", "Telemetry", "/json/demo",
                                     carrier="tcp", should_wait=True, serializer="$serializer")
    def report(self, count, mware=None, serializer=None):
        return {
            "count": count,
            "position": (1.0 * count, 2.0, 3.0),
            "scan": np.linspace(0.0, 1.0, 4, dtype=np.float32) * count,
            "raw": bytes([count % 256]) * 3,
        },


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("publish", "listen"), required=True,
                        help="publish messages, or listen and print them")
    parser.add_argument("--mware", choices=sorted(MiddlewareCommunicator.get_communicators()),
                        default=DEFAULT_COMMUNICATOR, help="middleware to use (default: %(default)s)")
    parser.add_argument("--serializer", choices=("binary", "json"), default=None,
                        help="what the publisher writes (default: WRAPYFI_LIKE_SERIALIZER, else binary)")
    parser.add_argument("--count", type=int, default=0, help="stop after this many messages (0: never)")
    parser.add_argument("--rate", type=float, default=1.0, help="messages per second when publishing")
    return parser.parse_args()


def main():
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    telemetry = Telemetry()
    telemetry.activate_communication(Telemetry.report, mode=args.mode)
    done = 0
    try:
        while args.count == 0 or done < args.count:
            done += 1
            (msg,) = telemetry.report(done, mware=args.mware, serializer=args.serializer)
            print(("published" if args.mode == "publish" else "received"), msg, flush=True)
            if args.mode == "publish" and (args.count == 0 or done < args.count):
                time.sleep(1.0 / args.rate)  # pacing the example, not waiting for a connection
    except KeyboardInterrupt:
        pass
    finally:
        telemetry.close()


if __name__ == "__main__":
    main()
