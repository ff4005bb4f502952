"""numpy arrays and pandas DataFrames/Series between two processes.

Run in two terminals, in either order:

    python examples/encoders/numpy_pandas_example.py --mode publish --mware zeromq
    python examples/encoders/numpy_pandas_example.py --mode listen --mware zeromq

Each message holds a numpy array, a DataFrame with many dtypes (nullable ints, categoricals,
tz-aware timestamps, object strings), non-string column labels and a MultiIndex, and a Series.
numpy arrays travel as raw frames; pandas objects as Arrow IPC streams (never pickle), and the
listener gets them back equal under ``pandas.testing.assert_frame_equal``.
"""

import argparse
import time

import numpy as np
import pandas as pd

from wrapyfi_like.connect.wrapper import DEFAULT_COMMUNICATOR, MiddlewareCommunicator


class TableExchange(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("NativeObject", "$mware", "TableExchange", "/examples/encoders/pandas",
                                     carrier="tcp", should_wait=True)
    def send_tables(self, count, mware=None):
        index = pd.MultiIndex.from_product([["left", "right"], [1, 2]], names=["side", "slot"])
        frame = pd.DataFrame({
            "reading": np.linspace(0, 1, 4) * count,
            "samples": pd.array([count, None, 3, 4], dtype="Int64"),
            "state": pd.Categorical(["on", "off", "on", "idle"]),
            "at": pd.date_range("2024-05-01 12:00", periods=4, freq="min", tz="Europe/Berlin"),
            "note": pd.Series(["a", "b", "c", f"#{count}"], dtype=object),
            7: [True, False, True, False],
        }, index=index)
        series = pd.Series(np.arange(3, dtype=np.int16) * count, name=("sensor", count))
        return {"array": np.arange(6, dtype=np.float32).reshape(2, 3) * count, "frame": frame, "series": series},


def describe(message):
    """dtypes, labels and a hash of the exact contents, equal on both sides when nothing changed."""
    frame, series = message["frame"], message["series"]
    frame_hash = int(pd.util.hash_pandas_object(frame).sum())
    return (f"array {message['array'].dtype}{message['array'].shape} sum={message['array'].sum()}; "
            f"frame columns={list(frame.columns)} dtypes={[str(d) for d in frame.dtypes]} "
            f"index={list(frame.index.names)} hash={frame_hash}; "
            f"series name={series.name} dtype={series.dtype} values={series.tolist()}")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("publish", "listen"), required=True,
                        help="publish tables, or listen and print them")
    parser.add_argument("--mware", choices=sorted(MiddlewareCommunicator.get_communicators()),
                        default=DEFAULT_COMMUNICATOR, help="middleware to use (default: %(default)s)")
    parser.add_argument("--count", type=int, default=0, help="stop after this many messages (0: never)")
    parser.add_argument("--rate", type=float, default=1.0, help="messages per second when publishing")
    return parser.parse_args()


def main():
    args = parse_args()
    exchange = TableExchange()
    exchange.activate_communication(TableExchange.send_tables, mode=args.mode)
    sent = 0
    try:
        while args.count == 0 or sent < args.count:
            sent += 1
            (message,) = exchange.send_tables(sent, mware=args.mware)
            print(("published" if args.mode == "publish" else "received"), describe(message), flush=True)
            if args.mode == "publish" and (args.count == 0 or sent < args.count):
                time.sleep(1.0 / args.rate)  # pacing the example, not waiting for a connection
    except KeyboardInterrupt:
        pass
    finally:
        exchange.close()


if __name__ == "__main__":
    main()
