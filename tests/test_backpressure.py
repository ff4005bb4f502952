"""Backpressure: 1 KB messages flat out to a deliberately slow listener, for each policy.

By sequence number: with the default ("block") nothing is missing; with "drop" and "latest"
exactly as many are missing as the publisher's ``dropped`` counter says, plus (for "latest") the
older messages the listener skipped for a newer one (its transport's ``dropped``).
"""

import sys
import threading
import time

import numpy as np
import pytest

from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.connect.publishers import Publisher
from wrapyfi_like.connect.wrapper import MiddlewareCommunicator
from wrapyfi_like.exceptions import ClosedError, ConfigurationError

pytestmark = pytest.mark.timeout(60)

FLAT_OUT_SECONDS = 1.0
PAYLOAD = np.arange(256, dtype=np.int32)  # 1 KB


class SlowConsumer:
    """Listens on a thread, taking a little time per message, and records sequence numbers."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.seqs: list[int] = []
        self.corrupt = 0
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                seq, payload = self.listener.listen()
                if not np.array_equal(payload, PAYLOAD):
                    self.corrupt += 1
                with self._changed:
                    self.seqs.append(seq)
                    self._changed.notify_all()
                time.sleep(0.0005)  # the deliberate slowness being tested, not a wait for anything
        except ClosedError:
            pass

    def skipped(self) -> int:
        """Older "latest" messages the listener skipped for a newer one (counted, not missed)."""
        return self.listener._transport.statistics()["dropped"]

    def wait_for(self, count, timeout: float = 30.0) -> None:
        """Wait until ``count`` (a number, or a function giving one) messages arrived."""
        target = count if callable(count) else (lambda: count)
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.seqs) >= target(), timeout), (len(self.seqs), target())

    def stop(self) -> None:
        self.listener.close()
        self._thread.join(10)


def run_flat_out(topic: str, **policy) -> tuple[int, int, SlowConsumer]:
    consumer = SlowConsumer(Listener("Slow", topic, carrier="ipc", queue_depth=policy.get("queue_depth")))
    publisher = Publisher("Fast", topic, wait_timeout=10, **policy)
    try:
        seq = 0
        deadline = time.monotonic() + FLAT_OUT_SECONDS
        while time.monotonic() < deadline:
            publisher.publish((seq, PAYLOAD))
            seq += 1
        # Everything not dropped arrives; with "latest" one message may still be held back, and
        # goes out when the publisher closes (the listener has room by then).
        held_back = 1 if policy.get("backpressure") == "latest" else 0
        consumer.wait_for(lambda: seq - publisher.dropped - consumer.skipped() - held_back)
    finally:
        publisher.close()
    consumer.wait_for(lambda: seq - publisher.dropped - consumer.skipped())
    consumer.stop()
    return seq, publisher.dropped + consumer.skipped(), consumer


def check_in_order_without_duplicates(consumer: SlowConsumer) -> None:
    assert consumer.corrupt == 0
    assert consumer.seqs == sorted(set(consumer.seqs))


def test_block_by_default_loses_nothing(topic):
    sent, dropped, consumer = run_flat_out(topic)
    assert dropped == 0
    assert consumer.seqs == list(range(sent))
    assert consumer.corrupt == 0


def test_drop_misses_exactly_what_it_counts(topic):
    sent, dropped, consumer = run_flat_out(topic, backpressure="drop", queue_depth=10)
    check_in_order_without_duplicates(consumer)
    missing = set(range(sent)) - set(consumer.seqs)
    assert dropped > 0, "the listener kept up; the test did not exercise dropping"
    assert len(missing) == dropped
    assert len(consumer.seqs) == sent - dropped


def test_latest_misses_exactly_what_it_counts_and_delivers_the_last(topic):
    sent, dropped, consumer = run_flat_out(topic, backpressure="latest")
    check_in_order_without_duplicates(consumer)
    missing = set(range(sent)) - set(consumer.seqs)
    assert dropped > 0
    assert len(missing) == dropped
    assert consumer.seqs[-1] == sent - 1  # the newest message is never the one given up


def test_policy_and_depth_are_checked():
    with pytest.raises(ConfigurationError, match="backpressure"):
        Publisher("T", "/t", backpressure="conflate")
    with pytest.raises(ConfigurationError, match="queue_depth"):
        Publisher("T", "/t", backpressure="drop", queue_depth=0)


class Camera(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Camera", "$topic", should_wait=True,
                                     publisher_kwargs=dict(backpressure="drop", queue_depth=1, wait_timeout=10),
                                     listener_kwargs=dict(queue_depth=1))
    def frame(self, seq, topic):
        return (seq, PAYLOAD),


def test_stats_report_sent_received_and_dropped_per_method_and_topic(topic, in_thread):
    camera, viewer = Camera(), Camera()
    camera.activate_communication(Camera.frame, "publish")
    viewer.activate_communication(Camera.frame, "listen")
    try:
        first = in_thread(lambda: viewer.frame(None, topic))
        camera.frame(0, topic)
        assert first.result(timeout=10)[0][0] == 0
        # 12 MB to a viewer that does not read: more than the kernel's socket buffers hold (the
        # publisher's own outlet queues nothing more: the send buffer grows to net.ipv4.tcp_wmem's 4 MB)
        for seq in range(1, 12000):
            camera.frame(seq, topic)
        counts = camera.stats()["frame"][topic]
        assert counts["sent"] == 12000 and counts["received"] == 0 and counts["malformed"] == 0
        assert counts["dropped"] > 0
        assert viewer.stats() == {"frame": {topic: {"sent": 0, "received": 1, "dropped": 0, "malformed": 0,
                                                    "missed": 0, "duplicate": 0, "incomplete": 0}}}
    finally:
        camera.close()
        viewer.close()
    assert camera.stats() == {}


def wait_until_polling(thread: threading.Thread, timeout: float = 10.0) -> None:
    """Return once ``thread`` waits inside a ZeroMQ poll."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = sys._current_frames().get(thread.ident)
        while frame is not None:
            if frame.f_code.co_name == "poll" and "zmq" in frame.f_code.co_filename:
                return
            frame = frame.f_back
        time.sleep(0.005)
    pytest.fail("the thread never reached a ZeroMQ poll")


def test_a_latest_message_held_when_the_publisher_closes_reaches_a_listener_still_reading(topic):
    """``close()`` gave the message ``"latest"`` still held one try: a slow listener with no room
    at that instant lost the newest frame (tests/test_loss_latest.py, 1 run in 6 under load). It
    now goes out once the listener makes room, while the listener still acks."""
    listener = Listener("Slow", topic, carrier="ipc", queue_depth=1)
    publisher = Publisher("Fast", topic, wait_timeout=10, backpressure="latest")
    frame = np.zeros(1 << 20, np.uint8)
    try:
        intake = listener._transport._intake
        dropped_when_full = None
        for sent in range(1, 1000):
            publisher.publish((sent - 1, frame))
            if dropped_when_full is None and intake._full:  # the listener reads from no socket now
                dropped_when_full = publisher.dropped
            if (dropped_when_full is not None and publisher.dropped >= dropped_when_full + 3
                    and any(outlet.pending is not None for outlet in publisher._transport._outlets.values())):
                break  # held messages were replaced since: no room comes back, the newest is held
        closing = threading.Thread(target=publisher.close, daemon=True)
        closing.start()
        wait_until_polling(closing)  # close() waits, the newest message still held
        seqs: list[int] = []
        deadline = time.monotonic() + 10
        while (not seqs or seqs[-1] != sent - 1) and time.monotonic() < deadline:
            frames = listener._transport.recv(0.1)
            if frames is not None:
                seqs.append(listener._format.decode(frames)[0])
        closing.join(10)
        assert seqs[-1] == sent - 1, "the newest message was given up at close"
        assert seqs == sorted(set(seqs))
        skipped = listener._transport.statistics()["dropped"]
        assert sent - len(seqs) == publisher.dropped + skipped, "every message not delivered is counted"
    finally:
        publisher.close()
        listener.close()
