"""The discovery host dies under load: data connections carry on, nothing lost, nothing reordered.

Before outlets were tied to their own connection, in 3 of 4 runs 1–3 of 3 pairs lost 1,500–7,500
messages each: the rebuilt directory did not know a listener yet, the publisher heard "no
listeners" and closed that outlet with its queue. Publishers here use ``should_wait=False``, so
no wait can hide a loss; each listener checks its sequence numbers from its first message on.
"""

import signal
import time

import pytest

from loss_nodes import LossNode
from node_processes import Node, event_is

pytestmark = pytest.mark.timeout(90)

PAIRS = 3
RATE, COUNT = 400, 2000  # 5 s per publisher


def test_sigkill_of_the_directory_host_loses_nothing_in_order(topic, private_discovery):
    env = private_discovery
    host = Node("idle", env=env)
    started = [host]
    try:
        host.wait_for(event_is("ready"))
        listeners = [LossNode("listen", f"{topic}/{index}", "--count", str(COUNT), env=env)
                     for index in range(PAIRS)]
        started += listeners
        for listener in listeners:
            listener.wait_for(event_is("ready"))
        publishers = [LossNode("publish", f"{topic}/{index}", "--count", str(COUNT), "--rate", str(RATE),
                               "--wait", "0", "--every", "100", env=env) for index in range(PAIRS)]
        started += publishers
        for listener in listeners:
            listener.wait_for(event_is("first"))
        host.kill()
        killed_at = time.time()
        for listener, publisher in zip(listeners, publishers):
            summary = listener.wait_for(event_is("summary"), timeout=40)
            closed = publisher.wait_for(event_is("closed"), timeout=40)
            assert summary["last"] == COUNT - 1, summary
            assert summary["in_order"] and summary["missing"] == 0 and summary["repeats"] == 0, summary
            assert summary["stats"]["missed"] == 0 and summary["stats"]["duplicate"] == 0, summary
            assert closed["stats"]["dropped"] == 0, closed
            assert closed["t"] > killed_at + 2.0, "the publisher finished before the directory moved"
    finally:
        for node in started:
            if node.process.poll() is None:
                node.process.send_signal(signal.SIGCONT)
            node.stop()
