"""Publisher and listener processes for the ack tests: what a dead or cut connection loses is counted.

Run as a script, a node plays one role and reports JSON lines on stdout (driven by
:class:`AckNode`). The listener appends every sequence number it delivered to a file *as it goes*
(one ``write`` each, so the file survives its SIGKILL), which is what the test compares the
publisher's ``unconfirmed`` with. With ``--cut-after n`` it shuts down its own side of every
connection after delivering n messages: the bytes on the way are lost, as in a network cut, and
the publisher reconnects.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time

from node_processes import Node, _report

SCRIPT = os.path.abspath(__file__)


class AckNode(Node):
    script = SCRIPT


def _publish(options) -> None:
    from wrapyfi_like.connect.publishers import Publisher

    publisher = Publisher("Ack", options.topic, wait_timeout=30, **json.loads(options.kwargs))
    transport = publisher._transport
    _report("ready")
    for seq in range(options.count):
        publisher.publish({"seq": seq, "pad": b"x" * options.size})
        if options.stop_on_loss and (transport.unconfirmed or transport.dropped):
            break
    if options.settle:  # take in the listener's last acks: they tell what a dropped connection lost
        deadline = time.monotonic() + options.settle
        while time.monotonic() < deadline and any(len(o.ledger) for o in transport._outlets.values()):
            for outlet in list(transport._outlets.values()):
                outlet.read_acks()
            time.sleep(0.01)  # polling the acks: the condition above ends the wait
    _report("done", stats=transport.statistics())
    publisher.close()


def _listen(options) -> None:
    from wrapyfi_like.connect.listeners import Listener

    listener = Listener("Ack", options.topic, should_wait=False)
    transport = listener._transport
    log = os.open(options.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    _report("ready", endpoint=transport.endpoint)
    delivered = idle = 0
    while True:
        frames = transport.recv(0.1)
        if frames is None:
            idle += 1
            if idle * 0.1 > (options.idle if delivered else 60):
                break
            continue
        idle = 0
        seq = listener._format.decode(frames)["seq"]
        os.write(log, b"%d\n" % seq)
        delivered += 1
        if delivered == options.report_at:
            _report("delivered", count=delivered)
        if delivered == options.cut_after:
            for connection in list(transport._intake._connections.values()):
                connection.sock.shutdown(socket.SHUT_RDWR)  # what a cut cable does to the bytes on the way
            _report("cut")
        if seq == options.count - 1:
            break
    _report("summary", delivered=delivered, stats=transport.statistics())
    # stay until the publisher has gone (its settle reads acks, and would see this close as another drop)
    deadline = time.monotonic() + 30
    while transport._intake._connections and time.monotonic() < deadline:
        transport.recv(0.1)
    listener.close()


def main() -> None:
    sys.path.insert(0, os.path.dirname(SCRIPT))
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["publish", "listen"])
    parser.add_argument("topic")
    parser.add_argument("--count", type=int, default=10**9)
    parser.add_argument("--size", type=int, default=1000, help="bytes of padding per message")
    parser.add_argument("--kwargs", default="{}", help="publisher: JSON of extra publisher kwargs")
    parser.add_argument("--settle", type=float, default=0.0,
                        help="publisher: up to this many seconds for the last acks before reporting")
    parser.add_argument("--stop-on-loss", type=int, default=1, help="publisher: stop once a loss is counted")
    parser.add_argument("--log", help="listener: file to append delivered sequence numbers to")
    parser.add_argument("--report-at", type=int, default=0, help="listener: report after this many")
    parser.add_argument("--cut-after", type=int, default=0, help="listener: cut its connections after this many")
    parser.add_argument("--idle", type=float, default=3.0, help="listener: end after this long without messages")
    options = parser.parse_args()
    {"publish": _publish, "listen": _listen}[options.role](options)


if __name__ == "__main__":
    main()
