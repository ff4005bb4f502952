"""Our own outlet (middlewares/zeromq/zmtp_outlet.py): a publisher's connection to a listener that
writes ZMTP itself. Partial writes keep order and lose nothing (``block``) or are counted (``drop``),
the caller owns its buffers when ``send`` returns, a dropped connection comes back, a listener that
writes garbage back is dropped and reported, and no file descriptor is left behind."""

import os
import socket
import threading
import time

import numpy as np
import pytest

from wrapyfi_like.middlewares.zeromq import ListenerTransport, PublisherTransport, acks, connections, zmtp, zmtp_outlet
from wrapyfi_like.middlewares.zeromq.zmtp_outlet import ZmtpOutlet

pytestmark = pytest.mark.timeout(60)

HEADER = b"\x93\x01\x01\xc4\x00"
SMALL_BUFFER = 8 * 1024
"""The send buffer asked for in the partial-write tests (the kernel doubles it): far below a message."""


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


@pytest.fixture
def partial_writes(monkeypatch):
    """Tiny ipc send buffers, and a count of the messages the kernel took only part of."""
    monkeypatch.setattr(zmtp_outlet, "IPC_SEND_BUFFER", SMALL_BUFFER)
    cut = []
    original = zmtp_outlet._after
    monkeypatch.setattr(zmtp_outlet, "_after", lambda buffers, sent: cut.append(sent) or original(buffers, sent))
    return cut


def publish_reusing_one_buffer(publisher, listener, payload, count: int) -> None:
    """Publish ``count`` messages from one buffer the sender overwrites as soon as ``send``
    returns (as a camera loop does), and check each arrives whole, in order and unchanged."""
    def publish():
        for seq in range(count):
            payload[:] = seq
            publisher.send([HEADER, payload])
            payload[:] = -1  # the caller's again as soon as send returned: never seen by the listener

    sending = threading.Thread(target=publish)
    sending.start()
    for seq in range(count):
        frames = listener.recv(20)
        assert frames is not None, f"message {seq} never arrived"
        received = np.frombuffer(frames[1], np.int32)
        assert received.size == payload.size and (received == seq).all(), f"message {seq} arrived changed"
    sending.join(20)
    assert publisher.statistics()["dropped"] == 0 and publisher.statistics()["sent"] == count


def test_block_writes_partly_taken_messages_whole_and_in_order_and_returns_the_buffer(topic, partial_writes):
    listener = ListenerTransport(topic, carrier="ipc", queue_depth=2)
    publisher = PublisherTransport(topic, should_wait=True, wait_timeout=30)
    payload = np.zeros(64 * 1024, np.int32)  # 256 KB a message: many times the send buffer
    count = 30
    try:
        publish_reusing_one_buffer(publisher, listener, payload, count)
        assert partial_writes, "the kernel took every message whole: the test proved nothing"
    finally:
        publisher.close()
        listener.close()


def test_block_finishes_a_partly_taken_joined_small_message_before_send_returns(topic, partial_writes,
                                                                                 monkeypatch):
    """A message under JOIN_WHOLE_BELOW goes out as one joined buffer; when the kernel takes only
    part of it, the rest is still written before ``send`` returns, in order, nothing changed."""
    monkeypatch.setattr(zmtp_outlet, "IPC_SEND_BUFFER", 1)  # the kernel's least: a 6 KB write is split
    listener = ListenerTransport(topic, carrier="ipc", queue_depth=2)
    publisher = PublisherTransport(topic, should_wait=True, wait_timeout=30)
    payload = np.zeros(1500, np.int32)  # 6 KB: joined, and most of the tiny send buffer
    assert payload.nbytes < zmtp_outlet.JOIN_WHOLE_BELOW
    count = 300
    try:
        publish_reusing_one_buffer(publisher, listener, payload, count)
        assert partial_writes, "the kernel took every message whole: the test proved nothing"
    finally:
        publisher.close()
        listener.close()


def test_drop_keeps_a_partly_taken_message_whole_and_counts_what_it_drops(topic, partial_writes):
    listener = ListenerTransport(topic, carrier="ipc", queue_depth=1)  # not read until the end
    publisher = PublisherTransport(topic, should_wait=True, wait_timeout=30, backpressure="drop")
    payload = np.zeros(16 * 1024, np.int32)
    count = 200
    try:
        for seq in range(count):
            payload[:] = seq
            publisher.send([HEADER, payload])
            payload[:] = -1  # a kept rest is the publisher's own copy
        assert partial_writes and publisher.dropped > 0
        seqs = []
        while (frames := listener.recv(1.0)) is not None:
            received = np.frombuffer(frames[1], np.int32)
            assert (received == received[0]).all() and received[0] >= 0, "a message arrived changed"
            seqs.append(int(received[0]))
        assert seqs == sorted(set(seqs)), "in order, none twice"
        assert len(seqs) + publisher.dropped == count, "every message arrived or was counted"
        assert listener.statistics()["malformed"] == 0
    finally:
        publisher.close()
        listener.close()


class FakeListener:
    """A listening ipc socket that plays a listener's side of ZMTP by hand."""

    def __init__(self, path) -> None:
        self.path = str(path)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(8)
        self.server.settimeout(10)

    def accept(self) -> socket.socket:
        """Take the next connection and complete its handshake as a ROUTER."""
        peer, _ = self.server.accept()
        peer.settimeout(10)
        peer.sendall(zmtp.GREETING + zmtp.ready(b"ROUTER"))
        hello, size = b"", zmtp.GREETING_SIZE + len(zmtp.ready(b"DEALER"))
        while len(hello) < size:  # no further: a message may follow at once
            hello += peer.recv(size - len(hello))
        assert hello[zmtp.GREETING_SIZE:] == zmtp.ready(b"DEALER")
        return peer

    def close(self) -> None:
        self.server.close()
        os.unlink(self.path)


def up(outlet: ZmtpOutlet) -> bool:
    outlet.check()
    return outlet.up


def connected(fake: FakeListener, told: list) -> tuple[ZmtpOutlet, socket.socket]:
    """An outlet to ``fake``, its handshake done, telling ``told`` what it reports; and the peer's socket."""
    outlet = ZmtpOutlet(f"ipc://{fake.path}", lambda outlet, count, why: told.append((count, why)))
    try:
        peer = fake.accept()
        wait_until(lambda: up(outlet))
    except BaseException:
        outlet.close()
        raise
    return outlet, peer


def test_a_dropped_connection_is_counted_and_opened_again_without_a_busy_loop(tmp_path, monkeypatch):
    told = []
    fake = FakeListener(tmp_path / "listener")
    outlet, first = connected(fake, told)
    try:
        for seq in (1, 2, 3):
            assert outlet.try_send([b"topic", b"envelope", HEADER])
            outlet.sent(seq)
        first.sendall(acks.ZMTP_ACK + acks.pack(1, 1))
        first.close()
        wait_until(lambda: not up(outlet))
        assert outlet.disconnects == 1 and [count for count, _ in told] == [2], "2 and 3 were never acked"
        assert not outlet.try_send([b"topic", b"envelope", HEADER]), "no connection: no room"

        fake.close()  # nobody listens: the outlet tries again every RECONNECT_IVL, no faster
        attempts = []
        original = ZmtpOutlet._open
        monkeypatch.setattr(ZmtpOutlet, "_open", lambda self: attempts.append(1) or original(self))
        started = time.monotonic()
        while time.monotonic() - started < 0.5:
            outlet.check()
            time.sleep(0.001)
        assert 3 <= len(attempts) <= 0.5 / zmtp_outlet.RECONNECT_IVL + 1, attempts

        fake = FakeListener(tmp_path / "listener")  # back at the same endpoint
        wait_until(lambda: outlet.check() >= 0 and outlet._sock is not None and outlet._rest == [])
        second = fake.accept()
        wait_until(lambda: up(outlet))
        assert outlet.try_send([b"topic", b"envelope", HEADER])
        assert second.recv(4096).startswith(zmtp.frame_head(5, True) + b"topic")
        second.close()
    finally:
        outlet.close()
        fake.close()


@pytest.mark.parametrize("garbage", [b"\xff\x01x", bytes([zmtp.LONG]) + (1 << 40).to_bytes(8, "big"),
                                     zmtp.error("go away")], ids=["flags", "huge-frame", "error"])
def test_a_listener_writing_garbage_back_is_dropped_and_reported(tmp_path, garbage):
    told = []
    fake = FakeListener(tmp_path / "listener")
    outlet, peer = connected(fake, told)
    try:
        peer.sendall(garbage)
        wait_until(lambda: not up(outlet))
        assert outlet.disconnects == 1
        assert told and told[0][0] == 0 and "dropped" in told[0][1], told
        peer.close()
    finally:
        outlet.close()
        fake.close()


def test_an_ack_that_is_not_one_is_reported_and_the_connection_kept(tmp_path):
    told = []
    fake = FakeListener(tmp_path / "listener")
    outlet, peer = connected(fake, told)
    try:
        peer.sendall(bytes([0, 3]) + b"abc" + zmtp.command(b"PING", b"\x00\x0aHI"))
        wait_until(lambda: outlet.check() >= 0 and bool(told))
        assert told[0][0] == 0 and "ack" in told[0][1]
        assert peer.recv(4096) == zmtp.pong(b"\x00\x0aHI"), "a PING is answered"
        assert up(outlet) and outlet.disconnects == 0
        peer.close()
    finally:
        outlet.close()
        fake.close()


def test_fifty_outlets_opened_and_closed_leave_no_file_descriptor(topic):
    listener = ListenerTransport(topic, carrier="ipc")
    try:
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(50):
            outlet = ZmtpOutlet(listener.endpoint)
            wait_until(lambda: up(outlet))
            outlet.close()
        # the listener's side of each connection closes when its thread reads the end of it
        wait_until(lambda: len(os.listdir("/proc/self/fd")) == before)
    finally:
        listener.close()


def test_the_outlet_sets_tcp_liveness_and_the_ipc_send_buffer_on_its_own_socket(topic):
    tcp, ipc = ListenerTransport(topic, carrier="tcp"), ListenerTransport(topic + "/ipc", carrier="ipc")
    outlets = [ZmtpOutlet(tcp.endpoint), ZmtpOutlet(ipc.endpoint)]
    try:
        for outlet in outlets:
            wait_until(lambda: up(outlet))
        sock = outlets[0]._sock
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == connections.TCP_KEEPALIVE_IDLE_S
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == connections.TCP_KEEPALIVE_INTVL_S
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == connections.TCP_KEEPALIVE_CNT
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == connections.TCP_MAXRT_MS
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as plain:  # what the kernel grants (wmem_max)
            plain.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, zmtp_outlet.IPC_SEND_BUFFER)
            granted = plain.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        assert outlets[1]._sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == granted
    finally:
        for outlet in outlets:
            outlet.close()
        tcp.close()
        ipc.close()


@pytest.mark.parametrize("endpoint, ours", [
    ("ipc:///tmp/wrapyfi_like/x", True), ("tcp://127.0.0.1:5000", True), ("tcp://[::1]:5000", True),
    ("tcp://localhost:5000", False), ("tcp://listener.example:5000", False),
])
def test_only_endpoints_without_a_host_name_get_our_outlet(endpoint, ours):
    """A host name would be looked up in the publisher's thread (a blocking DNS query); such an
    endpoint goes to libzmq's outlet, which resolves it in its I/O thread."""
    assert zmtp_outlet.names_no_host(endpoint) is ours


def test_a_listener_listed_by_host_name_gets_libzmqs_outlet():
    publisher = PublisherTransport("/names/host", should_wait=False)
    try:
        publisher._watch.endpoints = frozenset({"tcp://localhost:1", "tcp://127.0.0.1:1"})  # as if listed
        publisher._follow()
        assert {endpoint: type(outlet).__name__ for endpoint, outlet in publisher._outlets.items()} == {
            "tcp://localhost:1": "Outlet", "tcp://127.0.0.1:1": "ZmtpOutlet"}
    finally:
        publisher.close()


@pytest.mark.parametrize("body", [
    [HEADER, np.arange(256, dtype=np.float32)],  # the 1 KB case: a short head and a long one
    [HEADER, memoryview(np.arange(256, dtype=np.float32)).cast("B")],
    [HEADER],
    [b"h" * 255, b"", b"b" * 256, bytearray(3)],  # the edges of the short head
    [HEADER, np.zeros(zmtp_outlet.JOIN_WHOLE_BELOW, np.uint8)],  # above the join: written piece by piece
])
def test_the_framer_writes_the_bytes_of_the_generic_framing(body):
    topic_frame = b"/some/topic\x00"
    envelope = bytes(range(36))
    message = zmtp_outlet.Framer(topic_frame, len(envelope))(envelope, body)
    generic, generic_total = zmtp_outlet._framed([topic_frame, envelope, *body])
    pieces, total = message.wire
    assert list(message) == [topic_frame, envelope, *body], "the frames, as the latest policy holds them"
    assert total == generic_total == sum(zmtp_outlet._nbytes(piece) for piece in pieces)
    assert b"".join(bytes(memoryview(piece)) for piece in pieces) == b"".join(bytes(memoryview(piece)) for piece in generic)
    if total < zmtp_outlet.JOIN_WHOLE_BELOW:
        assert len(pieces) == 1, "a small message is one buffer, written with one send"
    else:
        assert any(piece is body[-1] for piece in pieces), "a large buffer was copied"
