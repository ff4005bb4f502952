"""Hello world: a publisher and a listener of one NativeObject topic.

Run in two terminals, in either order:

    python examples/hello_world.py --mode publish --mware zeromq
    python examples/hello_world.py --mode listen --mware zeromq

Each message is a dict holding a string, a nested tuple and a numpy array.
"""

import argparse
import logging
import time

import numpy as np

from wrapyfi_like.connect.wrapper import DEFAULT_COMMUNICATOR, MiddlewareCommunicator


class HelloWorld(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("NativeObject", "$mware", "HelloWorld", "/hello/my_message",
                                     carrier="tcp", should_wait=True)
    def send_message(self, count, mware=None):
        msg = {
            "message": f"hello world #{count}",
            "tuple": (count, (2.5, "three")),
            "array": np.arange(6, dtype=np.float32).reshape(2, 3) * count,
        }
        return msg,


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("publish", "listen"), required=True,
                        help="publish messages, or listen and print them")
    parser.add_argument("--mware", choices=sorted(MiddlewareCommunicator.get_communicators()),
                        default=DEFAULT_COMMUNICATOR, help="middleware to use (default: %(default)s)")
    parser.add_argument("--count", type=int, default=0, help="stop after this many messages (0: never)")
    parser.add_argument("--rate", type=float, default=1.0, help="messages per second when publishing")
    return parser.parse_args()


def main():
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    hello = HelloWorld()
    hello.activate_communication(HelloWorld.send_message, mode=args.mode)
    sent = 0
    try:
        while args.count == 0 or sent < args.count:
            sent += 1
            (msg,) = hello.send_message(sent, mware=args.mware)
            print(("published" if args.mode == "publish" else "received"), msg, flush=True)
            if args.mode == "publish" and (args.count == 0 or sent < args.count):
                time.sleep(1.0 / args.rate)  # pacing the example, not waiting for a connection
    except KeyboardInterrupt:
        pass
    finally:
        hello.close()


if __name__ == "__main__":
    main()
