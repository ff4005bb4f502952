"""The caller owns its buffers again when ``publish()`` returns.

A publisher process reuses one 16 MiB buffer for every message, filling it with the message's
number before each publish (what a camera loop does); the listener process checks every byte.
Before, ``publish()`` returned while libzmq still referenced the array, and 16.1 of 16.8 MB of a
message were replaced by the next message's bytes in flight.
"""

import json
import signal
import time

import numpy as np
import pytest
import zmq

from loss_nodes import LossNode
from node_processes import event_is
from wrapyfi_like.exceptions import ConfigurationError
from wrapyfi_like.middlewares.zeromq import PublisherTransport as ZeroMQPublisherTransport

pytestmark = pytest.mark.timeout(60)

SIZE = 16 * 1024 * 1024
COUNT = 20


@pytest.mark.parametrize("policy", [{}, {"backpressure": "drop", "queue_depth": 2},
                                    {"backpressure": "latest"}])
def test_a_reused_buffer_never_changes_a_message_in_flight(topic, policy, private_discovery):
    env = private_discovery
    listener = LossNode("listen", topic, "--count", str(COUNT), "--idle", "3", env=env)
    publisher = None
    try:
        listener.wait_for(event_is("ready"))
        publisher = LossNode("publish", topic, "--count", str(COUNT), "--size", str(SIZE),
                             "--kwargs", json.dumps(policy), env=env)
        summary = listener.wait_for(event_is("summary"), timeout=40)
        assert summary["received"] > 0
        assert summary["corrupt"] == 0, f"{summary['corrupt']} of {summary['received']} messages changed in flight"
        if not policy:
            assert summary["received"] == COUNT
    finally:
        for node in (listener, publisher):
            if node is not None:
                if node.process.poll() is None:
                    node.process.send_signal(signal.SIGCONT)
                node.stop()


def test_zero_copy_mode_is_checked(topic):
    with pytest.raises(ConfigurationError, match="zero_copy"):
        ZeroMQPublisherTransport(topic, zero_copy="yes please")


def test_safe_mode_tracks_large_buffers_copies_smaller_ones_and_copies_all_for_drop_and_latest():
    from wrapyfi_like.middlewares.zeromq.publisher import COPY_BELOW, TRACK_FROM, _copied, _copied_or_tracked

    array = np.arange(1 << 20, dtype=np.uint8)
    header = b"header"
    body, trackers = _copied_or_tracked([header, memoryview(array), memoryview(array[:10])])
    assert len(trackers) == 1 and body[0] is header and body[2].nbytes == 10
    assert type(body[1]) is zmq.Frame and body[1].tracker is trackers[0]
    # below COPY_BELOW in all: copied once, untracked; the caller's reuse cannot reach the copy
    middle = array[:COPY_BELOW // 2]
    body, trackers = _copied_or_tracked([header, memoryview(middle), memoryview(array[:TRACK_FROM - 1])])
    expected = middle.tobytes()
    middle[:] = 0
    assert trackers == [] and body[0] is header and type(body[1]) is zmq.Frame and body[1].bytes == expected
    assert type(body[2]) is memoryview  # small: pyzmq copies it when sending
    # two buffers that reach COPY_BELOW together are tracked, not copied
    halves = [memoryview(array[:COPY_BELOW // 2]), memoryview(array[COPY_BELOW // 2:COPY_BELOW])]
    body, trackers = _copied_or_tracked([header, *halves])
    assert len(trackers) == 2
    assert _copied_or_tracked([header, b"x" * TRACK_FROM]) == ([header, b"x" * TRACK_FROM], [])  # bytes: immutable
    array = np.arange(1 << 20, dtype=np.uint8)
    copied, none = _copied([header, memoryview(array)])
    expected = array.tobytes()
    array[:] = 0  # the caller reuses its buffer: the copy (one libzmq-owned frame for every listener) keeps the message
    assert none == [] and copied[0] is header and type(copied[1]) is zmq.Frame and copied[1].bytes == expected


def connect_all(publisher, listeners: list, message: bytes) -> None:
    """Publish ``message`` until every listener got one: each connection is complete."""
    warmed, deadline = set(), time.monotonic() + 20
    while len(warmed) < len(listeners) and time.monotonic() < deadline:
        publisher.send([message])
        warmed |= {index for index, listener in enumerate(listeners) if listener.recv(0.05) is not None}
    assert len(warmed) == len(listeners), "not every listener connected within 20 s"


def test_unsafe_fan_out_delivers_every_large_message_whole_to_every_listener(topic):
    """With ``zero_copy="unsafe"`` a large buffer is wrapped once and that one frame is sent to
    every listener (libzmq shares its buffer); each listener still gets each message whole."""
    from wrapyfi_like.middlewares.zeromq import ListenerTransport
    from wrapyfi_like.middlewares.zeromq.publisher import _shared

    array = np.arange(1 << 20, dtype=np.uint8)
    body, trackers = _shared([b"header", memoryview(array), memoryview(array[:10])])
    assert trackers == [] and type(body[1]).__name__ == "Frame" and type(body[2]) is memoryview

    listeners = [ListenerTransport(topic) for _ in range(3)]
    publisher = ZeroMQPublisherTransport(topic, should_wait=True, zero_copy="unsafe")
    try:
        connect_all(publisher, listeners, b"\x93\x01\x00\xc0")
        payloads = [np.full(1 << 20, number, np.uint8) for number in range(1, 6)]
        for payload in payloads:
            publisher.send([b"large", payload])
        for listener in listeners:
            received = []
            while len(received) < len(payloads):
                frames = listener.recv(10.0)
                assert frames is not None, f"a listener got {len(received)} of {len(payloads)} large messages"
                if bytes(frames[0]) == b"large":
                    received.append(np.frombuffer(frames[1], np.uint8))
            for payload, got in zip(payloads, received):
                np.testing.assert_array_equal(got, payload)
    finally:
        publisher.close()
        for listener in listeners:
            listener.close()


@pytest.mark.parametrize("carrier, size, listeners", [("tcp", 1 << 20, 3), ("ipc", 1 << 20, 3), ("ipc", 1 << 20, 1),
                                                      ("tcp", 128 << 10, 3), ("ipc", 128 << 10, 1)])
def test_a_reused_buffer_fanned_out_to_listeners_is_delivered_as_published(topic, carrier, size, listeners):
    """One frame serves every listener (``zero_copy="safe"``, ``"block"``): at 1 MiB a tracked
    one, so ``send`` must return only once libzmq let go of it for the *last* listener; at 128 KiB
    (below ``COPY_BELOW``) a copy. Either way each listener gets every message of a reused buffer
    as it was when it was published."""
    from wrapyfi_like.middlewares.zeromq import ListenerTransport

    listeners = [ListenerTransport(topic, carrier=carrier) for _ in range(listeners)]
    publisher = ZeroMQPublisherTransport(topic, carrier=carrier, should_wait=True)
    try:
        connect_all(publisher, listeners, b"warm")
        buffer = np.empty(size, np.uint8)
        count = 30
        for number in range(1, count + 1):
            buffer[:] = number  # the camera loop writing its next frame into the one buffer
            publisher.send([b"large", buffer])
        for index, listener in enumerate(listeners):
            numbers = []
            while len(numbers) < count:
                frames = listener.recv(10.0)
                assert frames is not None, f"listener {index} got {len(numbers)} of {count} large messages"
                if bytes(frames[0]) != b"large":
                    continue
                got = np.frombuffer(frames[1], np.uint8)
                changed = np.count_nonzero(got != got[0])
                assert changed == 0, f"listener {index}: message {got[0]} had {changed} bytes changed in flight"
                numbers.append(int(got[0]))
            assert numbers == list(range(1, count + 1))
    finally:
        publisher.close()
        for listener in listeners:
            listener.close()
