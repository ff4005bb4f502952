"""Forwarding: a message hops from a source over a forwarder to a listener, on two topics.

Run in three terminals, in any order:

    python examples/communication_schemes/forwarding_example.py --mode publish --mware zeromq
    python examples/communication_schemes/forwarding_example.py --mode forward --mware zeromq
    python examples/communication_schemes/forwarding_example.py --mode listen --mware zeromq

The source publishes on chain A (/example/chain_A_msg). The forwarder listens to chain A, adds
a hop record, and publishes on chain B (/example/chain_B_msg), which the listener listens to.
Each process only sets the modes of the two methods: ``read_chain_A`` and ``read_chain_B``.
"""

import argparse
import logging
import os
import time

from wrapyfi_like.connect.wrapper import DEFAULT_COMMUNICATOR, MiddlewareCommunicator

MODES = {  # the example's --mode: (mode of read_chain_A, mode of read_chain_B)
    "publish": ("publish", "disable"),
    "forward": ("listen", "publish"),
    "listen": ("disable", "listen"),
}


class Forwarding(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("NativeObject", "$mware", "Forwarding", "/example/chain_A_msg",
                                     carrier="tcp", should_wait=True)
    def read_chain_A(self, counter, mware=None):
        return {"counter": counter, "hops": [f"source {os.getpid()}"]},

    @MiddlewareCommunicator.register("NativeObject", "$mware", "Forwarding", "/example/chain_B_msg",
                                     carrier="tcp", should_wait=True)
    def read_chain_B(self, message, mware=None):
        return {**message, "hops": [*message["hops"], f"forwarder {os.getpid()}"]},


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=sorted(MODES), required=True,
                        help="publish on chain A, forward A to B, or listen to chain B")
    parser.add_argument("--mware", choices=sorted(MiddlewareCommunicator.get_communicators()),
                        default=DEFAULT_COMMUNICATOR, help="middleware to use (default: %(default)s)")
    parser.add_argument("--count", type=int, default=0, help="stop after this many messages (0: never)")
    parser.add_argument("--rate", type=float, default=2.0, help="messages per second at the source")
    return parser.parse_args()


def main():
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    forwarding = Forwarding()
    mode_a, mode_b = MODES[args.mode]
    forwarding.activate_communication(Forwarding.read_chain_A, mode=mode_a)
    forwarding.activate_communication(Forwarding.read_chain_B, mode=mode_b)
    done = 0
    try:
        while args.count == 0 or done < args.count:
            done += 1
            (message,) = forwarding.read_chain_A(done, mware=args.mware)
            if args.mode == "publish":
                print(f"published on chain A: {message}", flush=True)
                if args.count == 0 or done < args.count:
                    time.sleep(1.0 / args.rate)  # pacing the example, not waiting for a connection
                continue
            (forwarded,) = forwarding.read_chain_B(message, mware=args.mware)
            print(f"{'forwarded to chain B' if args.mode == 'forward' else 'received on chain B'}: {forwarded}",
                  flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        forwarding.close()


if __name__ == "__main__":
    main()
