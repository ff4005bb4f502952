"""An external plugin: Fractions and Decimals, with the plugin found through WRAPYFI_PLUGIN_PATHS.

The plugin lives in examples/encoders/plugins/exact_numbers.py and is found only because this
folder is named in WRAPYFI_PLUGIN_PATHS. Run in two terminals, in either order, from the
repository root:

    WRAPYFI_PLUGIN_PATHS=examples/encoders python examples/encoders/exact_numbers_example.py --mode publish --mware zeromq
    WRAPYFI_PLUGIN_PATHS=examples/encoders python examples/encoders/exact_numbers_example.py --mode listen --mware zeromq

``python -m wrapyfi_like plugins`` with the same variable lists the plugin and its file.
"""

import argparse
import sys
import time
from decimal import Decimal
from fractions import Fraction

from wrapyfi_like.connect.wrapper import DEFAULT_COMMUNICATOR, MiddlewareCommunicator
from wrapyfi_like.utils import plugin_discovery

PLUGIN_IDS = {"examples.fractions.Fraction", "examples.decimal.Decimal"}


class ExactNumbers(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("NativeObject", "$mware", "ExactNumbers", "/examples/encoders/exact_numbers",
                                     carrier="tcp", should_wait=True)
    def send_numbers(self, count, mware=None):
        return {"third": Fraction(count, 3), "price": Decimal("19.99") * count, "tiny": Decimal("1e-40")},


def require_plugin():
    """Stop with a hint when the plugin is not found: a listener without it could decode nothing."""
    plugin_discovery.load_external_plugins()
    found = {plugin.codec_id for plugin in plugin_discovery.loaded_plugins()}
    if not PLUGIN_IDS <= found:
        sys.exit("the exact_numbers plugin was not found: run with WRAPYFI_PLUGIN_PATHS=examples/encoders")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("publish", "listen"), required=True,
                        help="publish numbers, or listen and print them")
    parser.add_argument("--mware", choices=sorted(MiddlewareCommunicator.get_communicators()),
                        default=DEFAULT_COMMUNICATOR, help="middleware to use (default: %(default)s)")
    parser.add_argument("--count", type=int, default=0, help="stop after this many messages (0: never)")
    parser.add_argument("--rate", type=float, default=1.0, help="messages per second when publishing")
    return parser.parse_args()


def main():
    args = parse_args()
    require_plugin()
    exchange = ExactNumbers()
    exchange.activate_communication(ExactNumbers.send_numbers, mode=args.mode)
    sent = 0
    try:
        while args.count == 0 or sent < args.count:
            sent += 1
            (numbers,) = exchange.send_numbers(sent, mware=args.mware)
            print(("published" if args.mode == "publish" else "received"), repr(numbers), flush=True)
            if args.mode == "publish" and (args.count == 0 or sent < args.count):
                time.sleep(1.0 / args.rate)  # pacing the example, not waiting for a connection
    except KeyboardInterrupt:
        pass
    finally:
        exchange.close()


if __name__ == "__main__":
    main()
