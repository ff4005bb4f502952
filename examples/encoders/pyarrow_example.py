"""pyarrow Tables and Arrays between two processes, received without copying.

Run in two terminals, in either order:

    python examples/encoders/pyarrow_example.py --mode publish --mware zeromq
    python examples/encoders/pyarrow_example.py --mode listen --mware zeromq

Each message holds a Table with nested types (struct, list, dictionary, timestamps) and schema
metadata, and a sliced Array. Both travel as Arrow IPC streams in frames of their own; the
listener's Arrow buffers point into the received frame.
"""

import argparse
import time

import pyarrow as pa

from wrapyfi_like.connect.wrapper import DEFAULT_COMMUNICATOR, MiddlewareCommunicator


class ArrowExchange(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("NativeObject", "$mware", "ArrowExchange", "/examples/encoders/pyarrow",
                                     carrier="tcp", should_wait=True)
    def send_arrow(self, count, mware=None):
        table = pa.table({
            "id": pa.array([count, count + 1, None], type=pa.int64()),
            "position": pa.array([{"x": 1.0, "y": 2.0}, {"x": -1.0, "y": None}, None]),
            "tags": pa.array([["a"], [], ["b", "c"]], type=pa.list_(pa.string())),
            "colour": pa.array(["red", "green", "red"]).dictionary_encode(),
            "at": pa.array([0, 1, 2], type=pa.timestamp("ms", tz="UTC")),
        }).replace_schema_metadata({"source": "pyarrow_example", "count": str(count)})
        return {"table": table, "array": pa.array(range(count, count + 10)).slice(3, 4)},


def describe(message):
    table, array = message["table"], message["array"]
    return (f"table schema=[{table.schema.to_string(show_schema_metadata=False).replace(chr(10), ', ')}] "
            f"metadata={table.schema.metadata} rows={table.to_pylist()}; "
            f"array {array.type} {array.to_pylist()}")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("publish", "listen"), required=True,
                        help="publish Arrow data, or listen and print it")
    parser.add_argument("--mware", choices=sorted(MiddlewareCommunicator.get_communicators()),
                        default=DEFAULT_COMMUNICATOR, help="middleware to use (default: %(default)s)")
    parser.add_argument("--count", type=int, default=0, help="stop after this many messages (0: never)")
    parser.add_argument("--rate", type=float, default=1.0, help="messages per second when publishing")
    return parser.parse_args()


def main():
    args = parse_args()
    exchange = ArrowExchange()
    exchange.activate_communication(ArrowExchange.send_arrow, mode=args.mode)
    sent = 0
    try:
        while args.count == 0 or sent < args.count:
            sent += 1
            (message,) = exchange.send_arrow(sent, mware=args.mware)
            print(("published" if args.mode == "publish" else "received"), describe(message), flush=True)
            if args.mode == "publish" and (args.count == 0 or sent < args.count):
                time.sleep(1.0 / args.rate)  # pacing the example, not waiting for a connection
    except KeyboardInterrupt:
        pass
    finally:
        exchange.close()


if __name__ == "__main__":
    main()
