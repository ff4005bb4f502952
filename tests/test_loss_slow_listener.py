"""``backpressure="block"`` means block: a busy or stopped listener loses nothing, a dead one is let go.

Publisher and listener are separate processes on 127.0.0.1 with a discovery directory of their
own. Before sequence numbers and TCP liveness, a listener busy for 5 s lost 621–871 of 20,000
messages and got the rest out of order, and one stopped with SIGSTOP lost ~2,700 of 12,000: the
publisher's ZMTP heartbeat timed out because a listener with a full queue stops reading its
socket, and libzmq discarded the queue with the connection.
"""

import signal
import time

import pytest

from loss_nodes import LossNode
from node_processes import event_is

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def nodes(private_discovery):
    env = private_discovery
    started = []

    def start(*args: str) -> LossNode:
        node = LossNode(*args, env=env)
        started.append(node)
        return node

    yield start
    for node in started:
        if node.process.poll() is None:
            node.process.send_signal(signal.SIGCONT)
        node.stop()


def assert_complete(summary: dict, count: int) -> None:
    assert summary["received"] > 0
    assert summary["last"] == count - 1, summary
    assert summary["in_order"] and summary["missing"] == 0 and summary["repeats"] == 0, summary
    assert summary["corrupt"] == 0
    assert summary["stats"]["missed"] == 0 and summary["stats"]["duplicate"] == 0, summary["stats"]


def test_a_listener_busy_for_5_s_gets_everything_in_order(topic, nodes):
    count = 20_000
    listener = nodes("listen", topic, "--count", str(count), "--pause-after", "10", "--pause", "5")
    listener.wait_for(event_is("ready"))
    publisher = nodes("publish", topic, "--count", str(count))
    listener.wait_for(event_is("pausing"))
    summary = listener.wait_for(event_is("summary"), timeout=60)
    closed = publisher.wait_for(event_is("closed"))
    assert_complete(summary, count)
    assert summary["first"] == 0
    assert closed["stats"]["dropped"] == 0


def test_a_listener_stopped_for_10_s_gets_everything_in_order_without_should_wait(topic, nodes):
    count = 12_000
    listener = nodes("listen", topic, "--count", str(count), "--idle", "5")
    listener.wait_for(event_is("ready"))
    publisher = nodes("publish", topic, "--count", str(count), "--rate", "3000", "--wait", "0", "--size", "10240")
    listener.wait_for(event_is("first"))
    listener.process.send_signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    before = publisher.wait_for(event_is("sent"))["seq"]
    time.sleep(10.0)  # the fault itself: how long the listener stays stopped
    stalled = [event["seq"] for event in _drain(publisher) if event.get("event") == "sent"]
    listener.process.send_signal(signal.SIGCONT)
    assert time.monotonic() - stopped_at >= 10.0
    summary = listener.wait_for(event_is("summary"), timeout=60)
    closed = publisher.wait_for(event_is("closed"))
    assert_complete(summary, count)
    assert closed["stats"]["dropped"] == 0 and closed["stats"]["disconnects"] == 0
    assert max(stalled, default=before) < count - 1, "the publisher was not held back by the stopped listener"


def test_a_killed_listener_releases_a_blocked_publisher_at_once_and_is_counted(topic, nodes):
    listener = nodes("listen", topic, "--pause-after", "1", "--pause", "60")  # stops reading: queues fill
    listener.wait_for(event_is("ready"))
    publisher = nodes("publish", topic, "--count", "10000000", "--every", "100")
    listener.wait_for(event_is("pausing"))
    stuck = _wait_until_stalled(publisher)
    listener.kill()
    killed_at = time.time()
    going_on = publisher.wait_for(lambda event: event.get("event") == "sent" and event["seq"] > stuck + 1000)
    assert going_on["t"] - killed_at < 2.0, "the publisher kept waiting for a dead listener"
    assert going_on["dropped"] > 0, "messages for the dead listener were not counted"


def _drain(node) -> list[dict]:
    events = []
    while not node.events.empty():
        event = node.events.get_nowait()
        node.seen.append(event)
        events.append(event)
    return events


def _wait_until_stalled(publisher, quiet: float = 1.0) -> int:
    """The last sequence number a blocked publisher reported, once it reported nothing for ``quiet`` s."""
    last = publisher.wait_for(event_is("sent"))["seq"]
    while True:
        try:
            last = publisher.wait_for(event_is("sent"), timeout=quiet)["seq"]
        except AssertionError:
            return last
