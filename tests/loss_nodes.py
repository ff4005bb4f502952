"""Publisher and listener processes for the loss tests: they count what they send and get.

Run as a script, a node plays one role and reports JSON lines on stdout, like
:mod:`node_processes` (whose :class:`~node_processes.Node` drives it). A listener does not report
every message: it checks sequence numbers itself and reports a ``summary`` (received, gaps, out
of order, duplicates, its transport's counters, message ages) when it has the last message, or
when nothing arrived for ``--idle`` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from node_processes import Node, _report

SCRIPT = os.path.abspath(__file__)


class LossNode(Node):
    """A :class:`Node` running this script instead of :mod:`node_processes`."""

    script = SCRIPT


def rss_kib(field: str = "VmRSS") -> int:
    """This process's resident set size now (KiB), or its peak with ``field="VmHWM"``, from /proc.
    (Not ``getrusage``: its peak includes the forked test process's memory from before exec.)"""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _publish(options) -> None:
    from wrapyfi_like.connect.publishers import Publisher

    publisher = Publisher("Loss", options.topic, should_wait=options.wait, wait_timeout=30,
                          **json.loads(options.kwargs))
    transport = publisher._transport
    buffer = np.zeros(options.size, np.uint8)  # one buffer, reused for every message (a camera loop)
    _report("ready", publisher=transport.publisher_id.hex())
    interval = 1.0 / options.rate if options.rate else 0.0
    start_at = time.monotonic()
    for seq in range(options.count):
        if options.size:
            buffer.fill(seq % 251)
        publisher.publish({"seq": seq, "t": time.time(), "data": buffer})
        if seq % options.every == 0:
            _report("sent", seq=seq, dropped=publisher.dropped)
        if interval:
            pause = start_at + (seq + 1) * interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # the publishing rate under test, not a wait for anything
    _report("done", stats=transport.statistics())
    publisher.close()
    _report("closed", stats=transport.statistics())


def _listen(options) -> None:
    from wrapyfi_like.connect.listeners import Listener
    from wrapyfi_like.exceptions import DecodeError

    listener = Listener("Loss", options.topic, should_wait=False, **json.loads(options.kwargs))
    transport = listener._transport
    _report("ready", endpoint=transport.endpoint, rss_kib=rss_kib())
    seqs: list[int] = []
    ages: list[float] = []
    corrupt = undecodable = foreign = 0
    empty_polls = 0  # counted, not timed: a clock would also count the time this process was stopped
    while True:
        frames = transport.recv(0.1)
        if frames is None:
            empty_polls += 1
            if empty_polls * 0.1 > (options.idle if seqs else 60):
                break
            continue
        empty_polls = 0
        try:
            message = listener._format.decode(frames)
        except DecodeError:
            undecodable += 1  # reached the codec (a hostile peer's), refused there: counted, skipped
            continue
        if not isinstance(message, dict) or message.keys() != {"seq", "t", "data"}:
            foreign += 1  # well-formed, but not from our publisher (a hostile peer's)
            continue
        seq = message["seq"]
        ages.append(time.time() - message["t"])
        data = message["data"]
        if len(data) and not (data == seq % 251).all():
            corrupt += 1
        if not seqs:
            _report("first", seq=seq)
        seqs.append(seq)
        if len(seqs) == options.pause_after:
            _report("pausing")
            time.sleep(options.pause)  # the listener's thread busy elsewhere: the fault under test
            _report("resumed")
        if options.interval:
            time.sleep(options.interval)  # a slow consumer: the fault under test
        if seq == options.count - 1:
            break
    _report("summary", **_summary(seqs, ages), corrupt=corrupt, undecodable=undecodable, foreign=foreign, stats=transport.statistics(),
            per_publisher=transport.per_publisher(), rss_kib=rss_kib(),
            max_rss_kib=rss_kib("VmHWM"))
    listener.close()


def _summary(seqs: list[int], ages: list[float]) -> dict:
    if not seqs:
        return {"received": 0}
    ordered = all(a < b for a, b in zip(seqs, seqs[1:]))
    percentiles = np.percentile(ages, [50, 90, 99]).round(4).tolist() if ages else []
    return {"received": len(seqs), "first": seqs[0], "last": seqs[-1], "in_order": ordered,
            "missing": seqs[-1] - seqs[0] + 1 - len(set(seqs)), "repeats": len(seqs) - len(set(seqs)),
            "age_percentiles": percentiles}


def main() -> None:
    sys.path.insert(0, os.path.dirname(SCRIPT))
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["publish", "listen"])
    parser.add_argument("topic")
    parser.add_argument("--count", type=int, default=10**9)
    parser.add_argument("--size", type=int, default=1024, help="bytes of payload per message")
    parser.add_argument("--rate", type=float, default=0.0, help="messages per second; 0: flat out")
    parser.add_argument("--every", type=int, default=1000, help="report every n-th message sent")
    parser.add_argument("--wait", type=int, default=1, help="publisher's should_wait (0 or 1)")
    parser.add_argument("--pause-after", type=int, default=0, help="listener: busy after this many messages")
    parser.add_argument("--pause", type=float, default=0.0, help="listener: seconds busy")
    parser.add_argument("--interval", type=float, default=0.0, help="listener: seconds of work per message")
    parser.add_argument("--idle", type=float, default=3.0, help="listener: end after this long without messages")
    parser.add_argument("--kwargs", default="{}", help="JSON of extra communicator kwargs")
    options = parser.parse_args()
    {"publish": _publish, "listen": _listen}[options.role](options)


if __name__ == "__main__":
    main()
