"""Mirroring: the same method, the same call, in two processes; one runs it, the other mirrors it.

With publish/listen, the publisher runs ``read_message`` and the listener's call returns what
the publisher's returned. With reply/request, the requester's arguments travel to the replier,
which runs the method with them and mirrors the result back. Run in two terminals, in either order:

    python examples/communication_schemes/mirroring_example.py --mode publish --mware zeromq
    python examples/communication_schemes/mirroring_example.py --mode listen --mware zeromq

    python examples/communication_schemes/mirroring_example.py --mode reply --mware zeromq
    python examples/communication_schemes/mirroring_example.py --mode request --mware zeromq
"""

import argparse
import logging
import os
import time

from wrapyfi_like.connect.wrapper import DEFAULT_COMMUNICATOR, MiddlewareCommunicator


class Mirror(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("NativeObject", "$mware", "Mirror", "/example/mirror_message",
                                     carrier="tcp", should_wait=True)
    def read_message(self, text, counter, mware=None):
        """Runs where the message is made: in the publisher, or in the replier."""
        return {"text": text, "counter": counter, "made_by_pid": os.getpid()},


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("publish", "listen", "reply", "request"), required=True,
                        help="publish/listen or reply/request: the pair to run in two processes")
    parser.add_argument("--mware", choices=sorted(MiddlewareCommunicator.get_communicators()),
                        default=DEFAULT_COMMUNICATOR, help="middleware to use (default: %(default)s)")
    parser.add_argument("--count", type=int, default=0, help="stop after this many messages (0: never)")
    parser.add_argument("--rate", type=float, default=2.0, help="messages per second when publishing or requesting")
    return parser.parse_args()


def main():
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    mirror = Mirror()
    mirror.activate_communication(Mirror.read_message, mode=args.mode)
    done = 0
    try:
        while args.count == 0 or done < args.count:
            done += 1
            if args.mode == "reply":
                (message,) = mirror.read_message(mware=args.mware)
            else:
                (message,) = mirror.read_message(f"mirrored message #{done}", done, mware=args.mware)
            print(f"{args.mode}: {message}", flush=True)
            if args.mode in ("publish", "request") and (args.count == 0 or done < args.count):
                time.sleep(1.0 / args.rate)  # pacing the example, not waiting for a connection
    except KeyboardInterrupt:
        pass
    finally:
        mirror.close()


if __name__ == "__main__":
    main()
