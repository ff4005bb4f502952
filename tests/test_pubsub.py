"""Publish/listen over real ZeroMQ sockets on 127.0.0.1, within one process."""

import os
import time

import msgpack
import numpy as np
import pytest
import zmq

from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.connect.publishers import Publisher
from wrapyfi_like.encoding import Codec
from wrapyfi_like.exceptions import ClosedError, WaitTimeout
from wrapyfi_like.middlewares import envelope
from wrapyfi_like.middlewares.ports import free_port
from wrapyfi_like.middlewares.zeromq import ListenerTransport as ZeroMQListenerTransport
from wrapyfi_like.middlewares.zeromq import PublisherTransport as ZeroMQPublisherTransport

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pair(topic):
    listener = Listener("Test", topic, should_wait=True)
    publisher = Publisher("Test", topic, should_wait=True, wait_timeout=10)
    yield publisher, listener
    publisher.close()
    listener.close()


def test_first_message_is_not_lost_and_arrives_exactly(pair, in_thread):
    publisher, listener = pair
    received = in_thread(listener.listen)
    value = {"text": "hi", "tuple": (1, (2,)), "array": np.arange(12, dtype=">f8").reshape(3, 4)}
    publisher.publish(value)
    result = received.result(timeout=10)
    assert result["text"] == "hi" and result["tuple"] == (1, (2,))
    np.testing.assert_array_equal(result["array"], value["array"])
    assert result["array"].dtype == np.dtype(">f8")


def test_messages_arrive_in_order(pair, in_thread):
    publisher, listener = pair
    received = in_thread(lambda: [listener.listen() for _ in range(200)])
    for index in range(200):
        publisher.publish(index)
    assert received.result(timeout=10) == list(range(200))


def test_large_array_arrives_intact_and_writable(pair, in_thread):
    publisher, listener = pair
    received = in_thread(listener.listen)
    array = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)
    publisher.publish(array)
    result = received.result(timeout=10)
    np.testing.assert_array_equal(result, array)
    assert result.flags.writeable


def test_listeners_of_prefix_topics_get_only_their_own(topic, in_thread):
    short, long = Listener("Test", topic + "/a"), Listener("Test", topic + "/ab")
    to_short = Publisher("Test", topic + "/a", wait_timeout=10)
    to_long = Publisher("Test", topic + "/ab", wait_timeout=10)
    try:
        received = in_thread(lambda: (short.listen(), long.listen(), short.listen()))
        to_long.publish("for /ab")
        to_short.publish("for /a")
        to_short.publish("for /a again")
        assert received.result(timeout=10) == ("for /a", "for /ab", "for /a again")
    finally:
        for communicator in (short, long, to_short, to_long):
            communicator.close()


def test_publisher_does_not_depend_on_the_listeners_thread(topic):
    first, second = Listener("Test", topic + "/1"), Listener("Test", topic + "/2")
    to_first = Publisher("Test", topic + "/1", wait_timeout=10)
    to_second = Publisher("Test", topic + "/2", wait_timeout=10)
    try:
        to_second.publish("second")
        to_first.publish("first")
        assert (first.listen(), second.listen()) == ("first", "second")
    finally:
        for communicator in (first, second, to_first, to_second):
            communicator.close()


def test_close_from_another_thread_ends_a_blocking_listen(topic, in_thread):
    listener = Listener("Test", topic)
    received = in_thread(listener.listen)
    listener.close()
    with pytest.raises(ClosedError):
        received.result(timeout=10)


def test_listener_without_wait_returns_none_when_nothing_arrived(topic):
    listener = Listener("Test", topic, should_wait=False)
    try:
        assert listener.listen() is None
    finally:
        listener.close()


def test_publisher_wait_timeout_gives_a_clear_error(topic):
    publisher = Publisher("Test", topic, should_wait=True, wait_timeout=0.2)
    try:
        with pytest.raises(WaitTimeout, match=topic):
            publisher.publish("nobody listens")
    finally:
        publisher.close()


class EverReadyWatch:
    """A discovery watch whose notice is always readable and never brings news."""

    endpoints = frozenset()

    def __init__(self, real) -> None:
        self._real = real
        self._read, self._write = os.pipe()
        os.write(self._write, b"!")

    def fileno(self) -> int:
        return self._read

    def consume(self) -> frozenset:
        return frozenset()

    def __getattr__(self, name):
        return getattr(self._real, name)


def test_publisher_wait_timeout_holds_while_something_keeps_waking_the_wait(topic):
    """A wait woken again and again (a stuck notice, a chatty socket) still ends at its deadline."""
    publisher = Publisher("Test", topic, should_wait=True, wait_timeout=0.3)
    transport = publisher._transport
    transport._watch = watch = EverReadyWatch(transport._watch)
    try:
        started = time.monotonic()
        with pytest.raises(WaitTimeout, match=topic):
            publisher.publish("nobody listens")
        assert time.monotonic() - started < 3
    finally:
        transport._watch = watch._real
        publisher.close()
        os.close(watch._read)
        os.close(watch._write)


def test_ipc_carrier(topic, in_thread):
    listener = Listener("Test", topic, carrier="ipc")
    publisher = Publisher("Test", topic, carrier="ipc", wait_timeout=10)
    try:
        assert listener._transport.endpoint.startswith("ipc://")
        received = in_thread(listener.listen)
        publisher.publish(np.ones(5))
        np.testing.assert_array_equal(received.result(timeout=10), np.ones(5))
    finally:
        publisher.close()
        listener.close()


class RawPublisher:
    """A PUSH socket connected to a listener, so tests can send it any bytes after a valid envelope."""

    def __init__(self, listener):
        self.socket = zmq.Context.instance().socket(zmq.PUSH)
        self.socket.connect(listener._transport.endpoint)
        self.topic_frame = listener.in_topic.encode()
        self.publisher_id = envelope.new_publisher_id()
        self.seq = 0

    def envelope(self) -> bytes:
        self.seq += 1
        return envelope.pack(self.publisher_id, self.seq)

    def send(self, *frames):
        self.socket.send_multipart([self.topic_frame, self.envelope(), *frames])

    def close(self):
        self.socket.close(linger=0)


def test_frames_of_another_topic_are_counted_as_malformed(topic, in_thread):
    listener = Listener("Test", topic)
    received = in_thread(listener.listen)
    raw = RawPublisher(listener)
    codec = Codec()
    try:
        raw.socket.send_multipart([(topic + "b").encode(), raw.envelope(), *codec.encode("prefix topic")])
        raw.socket.send_multipart([topic[:-1].encode(), raw.envelope(), *codec.encode("shorter topic")])
        raw.send(*codec.encode("exact topic"))
        assert received.result(timeout=10) == "exact topic"
        assert listener._transport.statistics()["malformed"] == 2
    finally:
        raw.close()
        listener.close()


def test_malformed_messages_are_counted_logged_and_skipped(topic, caplog, in_thread):
    listener = Listener("Test", topic)
    received = in_thread(listener.listen)
    raw = RawPublisher(listener)
    codec = Codec()
    try:
        garbage = [
            [b"not msgpack at all"],
            [],
            [bytes([0x93, 0x07, 0x00, 0xC0])],
            [codec.encode(np.arange(4))[0]],
            [codec.encode({"a": 1})[0][:-1]],
            [bytes([0x93, 0x01, 0x00]) + msgpack.packb(msgpack.ExtType(15, msgpack.packb(["unknown.codec", 1])))],
        ]
        for frames in garbage:
            raw.send(*frames)
        raw.send(*codec.encode({"valid": (1, 2)}))
        assert received.result(timeout=10) == {"valid": (1, 2)}
        # a message without a header is the transport's to refuse; the rest reach the codec
        assert listener._transport.statistics()["malformed"] == 1
        assert listener.malformed == len(garbage) - 1
        assert caplog.text.count(f"malformed message on {topic}") == 1  # rate-limited: the first only
        assert "without a header" in caplog.text
    finally:
        raw.close()
        listener.close()


def _closing_wakes(call, close, in_thread) -> float:
    """Start ``call`` on a thread, wait until it is stuck, ``close()``: seconds until it raised."""
    started = in_thread(call)
    with pytest.raises(TimeoutError):
        started.result(timeout=0.5)  # still waiting: it is stuck, as intended
    closed_at = time.monotonic()
    close()
    with pytest.raises(ClosedError):
        started.result(timeout=5)
    return time.monotonic() - closed_at


def test_close_wakes_a_publisher_waiting_for_a_listener_within_half_a_second(topic, in_thread):
    transport = ZeroMQPublisherTransport(topic, should_wait=True)
    assert _closing_wakes(lambda: transport.send([b"\x93\x01\x00\xc0"]), transport.close, in_thread) < 0.5


@pytest.mark.parametrize("zero_copy", ["safe", "unsafe"])
def test_close_wakes_a_publisher_blocked_by_a_full_listener_within_half_a_second(topic, in_thread, zero_copy):
    listener = ZeroMQListenerTransport(topic, queue_depth=1)  # never read: its queue fills
    transport = ZeroMQPublisherTransport(topic, should_wait=True, queue_depth=1, zero_copy=zero_copy)
    payload = np.zeros(4 * 1024 * 1024, np.uint8)  # larger than the kernel's socket buffers

    def publish_until_stuck():
        while True:
            transport.send([b"\x93\x01\x01\xc4\x00", payload])

    try:
        assert _closing_wakes(publish_until_stuck, transport.close, in_thread) < 0.5
    finally:
        listener.close()


def test_close_wakes_a_blocking_receive_within_half_a_second(topic, in_thread):
    listener = ZeroMQListenerTransport(topic)
    assert _closing_wakes(lambda: listener.recv(None), listener.close, in_thread) < 0.5


HEADER_ONLY = [b"\x93\x01\x00\xc0"]  # a codec message holding None


def test_bad_discovery_entries_never_make_publish_raise_nor_hide_the_honest_listener(topic, caplog):
    """The directory refuses such entries itself; a publisher must not depend on that (an older or
    foreign directory may list them), so they are given to its watch directly."""
    junk = ["garbage", "tcp://", "tcp://a b:1", "inproc://elsewhere", "tcp://127.0.0.1:99999",
            "ipc://relative", "tcp://" + "x" * 5000 + ":1", "tcp://127.0.0.1:1\0"]
    from wrapyfi_like.middlewares.zeromq.discovery.watch import Watch

    listener = ZeroMQListenerTransport(topic)
    publisher = ZeroMQPublisherTransport(topic, should_wait=True, wait_timeout=10)
    # a watch of its own: the node's agent keeps reporting the real listing to the publisher's watch
    # and would replace the junk before _follow reads it
    discovered, publisher._watch = publisher._watch, Watch(topic)
    try:
        with publisher._lock:
            publisher._watch.update(frozenset(junk) | {listener.endpoint})
            publisher._follow()
        publisher.send(HEADER_ONLY)
        assert listener.recv(10) is not None
        assert publisher.statistics()["outlets"] == 1
        assert caplog.text.count("skipped listener endpoint") == len(junk)
    finally:
        publisher._watch.close()
        publisher._watch = discovered
        publisher.close()
        listener.close()


def test_fake_entries_beyond_max_outlets_are_skipped_and_the_honest_listener_gets_its_turn(topic):
    from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent
    from wrapyfi_like.middlewares.zeromq.keys import listener_key

    agent = NodeAgent.get()
    announcements = [agent.announce(listener_key(topic), f"tcp://127.0.0.1:{free_port()}", {})
                     for _ in range(60)]
    listener = ZeroMQListenerTransport(topic)
    publisher = ZeroMQPublisherTransport(topic, should_wait=False)
    publisher.max_outlets = 16
    try:
        deadline = time.monotonic() + 30
        while listener.recv(0.05) is None:
            assert time.monotonic() < deadline, "the honest listener never got a place"
            publisher.send(HEADER_ONLY)
            assert publisher.statistics()["outlets"] <= 16
    finally:
        publisher.close()
        listener.close()
        for announcement in announcements:
            agent.withdraw(announcement)


def test_listener_counts_gaps_skips_repeats_and_reports_per_publisher(topic, caplog):
    listener = Listener("Test", topic)
    raw = RawPublisher(listener)
    codec = Codec()
    try:
        for seq in (1, 2, 5, 4, 5, 6):  # 3 and 4 lost on the way; a late 4 and a repeated 5 arrive
            raw.socket.send_multipart([raw.topic_frame, envelope.pack(raw.publisher_id, seq), *codec.encode(seq)])
        got = []
        for _ in range(4):
            got.append(listener.listen())
            assert listener._transport.last_envelope.seq == got[-1]
        assert got == [1, 2, 5, 6]
        assert listener._transport.recv(0.2) is None  # the late 4 and the repeated 5 never come out
        stats = listener._transport.statistics()
        assert (stats["received"], stats["missed"], stats["duplicate"]) == (4, 2, 2)
        assert listener._transport.per_publisher() == {
            raw.publisher_id.hex(): {"received": 4, "missed": 2, "duplicate": 2, "dropped": 0}}
        assert "2 messages from publisher" in caplog.text
    finally:
        raw.close()
        listener.close()


def test_a_latest_listener_returns_the_newest_waiting_message_and_counts_the_skipped(topic):
    listener = ZeroMQListenerTransport(topic)
    raw = zmq.Context.instance().socket(zmq.PUSH)
    raw.connect(listener.endpoint)
    codec, publisher = Codec(), envelope.new_publisher_id()
    try:
        for seq in range(1, 11):
            raw.send_multipart([topic.encode(), envelope.pack(publisher, seq, envelope.LATEST), *codec.encode(seq)])
        deadline = time.monotonic() + 10
        while listener.statistics()["dropped"] + 1 < 10:  # until all ten were read at once
            frames = listener.recv(1)
            if frames is not None and codec.decode(frames) == 10:
                break
            assert time.monotonic() < deadline
        assert listener.last_envelope.seq == 10
        assert listener.statistics()["missed"] == 0
        assert listener.statistics()["dropped"] + listener.statistics()["received"] == 10
    finally:
        raw.close(linger=0)
        listener.close()
