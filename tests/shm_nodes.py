"""``carrier="shm"`` nodes as real processes for tests/test_shm.py (see tests/node_processes.py).

Each message is ``{"seq": n, "a": payload(n, size)}``; the listener rebuilds the payload from
``seq`` and reports whether what arrived is exactly that, and whether it is read-only.
``--no-iceoryx2`` makes ``import iceoryx2`` fail in the process, as on a system without it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from node_processes import Node, _report  # noqa: E402


class ShmNode(Node):
    script = Path(__file__).resolve()


def payload(seq: int, size: int):
    import numpy as np

    return (np.arange(size // 4, dtype=np.uint32) * 2654435761 + seq).astype(np.uint32)


class _Records(logging.Handler):
    """What the library logged in this process, reported with ``done``."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.levelname, record.getMessage()))


RECORDS = _Records()


class _NoIceoryx2:
    def find_spec(self, name, path=None, target=None):
        if name == "iceoryx2" or name.startswith("iceoryx2."):
            raise ImportError("iceoryx2 is blocked in this test process")
        return None


def _publish(options) -> None:
    from wrapyfi_like.connect.publishers import Publisher

    publisher = Publisher("Shm", options.topic, carrier="shm", wait_timeout=30,
                          backpressure=options.backpressure, queue_depth=options.queue_depth)
    _report("ready")
    for seq in range(options.count):
        if options.loan:  # the message is the array alone, filled in place
            with publisher.loan((options.size // 4,), "uint32") as array:
                array[:] = payload(seq, options.size)
        else:
            publisher.publish({"seq": seq, "a": payload(seq, options.size)})
        _report("sent", seq=seq, stats=publisher.stats())
        if options.rate:
            time.sleep(1.0 / options.rate)
    _report("done", stats=publisher.stats(), paths=publisher._transport.shm_paths(), logged=RECORDS.records)
    publisher.close()


def _listen(options) -> None:
    import numpy as np

    from wrapyfi_like.connect.listeners import Listener

    listener = Listener("Shm", options.topic, carrier=options.carrier)
    _report("ready", stats=listener.stats())
    held = []
    for index in range(options.count):
        message = listener.listen()
        if options.loan:  # the array alone, in order
            message = {"seq": index, "a": message}
        array = message["a"]
        exact = bool(np.array_equal(array, payload(message["seq"], options.size)))
        _report("got", seq=message["seq"], exact=exact, writeable=bool(array.flags.writeable),
                can_be_made_writeable=_can_be_made_writeable(array), nbytes=int(array.nbytes))
        if len(held) < options.hold:
            held.append((message["seq"], array))
    if options.stall:
        _report("stalled", stats=listener.stats())
        sys.stdin.read()  # hold everything until killed
    unchanged = all(np.array_equal(array, payload(seq, options.size)) for seq, array in held)
    _report("done", stats=listener.stats(), held_unchanged=unchanged, logged=RECORDS.records)
    listener.close()


def _can_be_made_writeable(array) -> bool:
    """Whether numpy lets a view of ``array`` be flagged writeable (a write to a listener's
    read-only mapping of shared memory would kill the process with SIGSEGV)."""
    view = array.view()
    try:
        view.flags.writeable = True
    except ValueError:
        return False
    return True


def _cleanup(options) -> None:
    from wrapyfi_like.middlewares.zeromq import shm

    cleaned, failed = shm.cleanup_dead_nodes()
    _report("cleaned", cleaned=cleaned, failed=failed)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["publish", "listen", "cleanup"])
    parser.add_argument("--topic", default="/shm")
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--size", type=int, default=1 << 20)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--hold", type=int, default=0)
    parser.add_argument("--stall", action="store_true")
    parser.add_argument("--carrier", default="shm")
    parser.add_argument("--backpressure", default="block")
    parser.add_argument("--queue-depth", type=int, default=1000)
    parser.add_argument("--no-iceoryx2", action="store_true")
    parser.add_argument("--loan", action="store_true", help="publish arrays alone, filled in place")
    options = parser.parse_args()
    library = logging.getLogger("wrapyfi_like")
    library.addHandler(RECORDS)
    library.setLevel(logging.INFO)
    if options.no_iceoryx2:
        sys.meta_path.insert(0, _NoIceoryx2())
    {"publish": _publish, "listen": _listen, "cleanup": _cleanup}[options.role](options)


if __name__ == "__main__":
    main()
