"""What a hostile or broken listener can do to a publisher's own outlet (middlewares/zeromq/zmtp_outlet.py),
and what it cannot: a PING it cannot be answered, a flood of PINGs or junk, bytes left unread at close,
running out of file descriptors, a signal in the middle of a write, a flusher that hits a bug. Each case
is one the outlet once got wrong: it raised out of ``send``/``close``, stalled the publisher, tore the
stream, or lost the tail of it."""

import errno
import fcntl
import select
import socket
import termios
import threading
import time

import numpy as np
import pytest

from wrapyfi_like.middlewares.zeromq import ListenerTransport, PublisherTransport, acks, zmtp, zmtp_outlet
from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent
from wrapyfi_like.middlewares.zeromq.keys import listener_key
from wrapyfi_like.middlewares.zeromq.zmtp_outlet import ZmtpOutlet

from test_zmtp_outlet import HEADER, FakeListener, connected, up, wait_until

pytestmark = pytest.mark.timeout(60)

PING = zmtp.command(b"PING", b"\x00\x0a")


@pytest.fixture
def fake(tmp_path):
    listener = FakeListener(tmp_path / "listener")
    yield listener
    listener.close()


def fill(outlet: ZmtpOutlet) -> int:
    """Send 1 KB messages until the kernel's buffer has no room (the listener reads nothing)."""
    count = 0
    while outlet.try_send([b"topic", b"envelope", b"x" * 1000]):
        count += 1
        outlet.sent(count)
        assert count < 100_000, "the send buffer never filled"
    return count


def test_a_ping_whose_pong_cannot_be_written_drops_the_connection_and_raises_nothing(fake):
    told = []
    outlet, peer = connected(fake, told)
    try:
        peer.sendall(PING + acks.ZMTP_ACK + acks.pack(1, 1))  # a PING and more in one read
        peer.close()  # gone: the PONG's write fails while the ack is still to be parsed
        outlet.read_acks()
        assert outlet.check() == 1 and not outlet.up
        assert not outlet.try_send([b"topic", b"envelope", HEADER])
    finally:
        outlet.close()


def test_a_publisher_closes_every_outlet_after_a_listener_pinged_and_left(fake, topic):
    announcement = NodeAgent.get().announce(listener_key(topic), f"ipc://{fake.path}", {})
    publisher = PublisherTransport(topic, should_wait=True, wait_timeout=10)
    peers = []
    threading.Thread(target=lambda: peers.append(fake.accept()), daemon=True).start()
    try:
        for _ in range(3):
            publisher.send([HEADER, b"x"])
        wait_until(lambda: peers)
        outlets = list(publisher._outlets.values())
        peers[0].sendall(PING + acks.ZMTP_ACK + acks.pack(1, 1))
        peers[0].close()
    finally:
        publisher.close()  # reads the PING while closing: once raised IndexError and left the outlet open
        NodeAgent.get().withdraw(announcement)
    assert publisher._outlets == {} and all(outlet._sock is None for outlet in outlets)


def test_pings_from_a_listener_that_reads_nothing_get_at_most_one_pong_and_keep_the_connection(fake):
    told = []
    outlet, peer = connected(fake, told)
    try:
        fill(outlet)
        for _ in range(1100):  # each read alone: no flood, but never room for a pong
            peer.sendall(PING)
            outlet.read_acks()
        assert up(outlet) and outlet.disconnects == 0, told
    finally:
        outlet.close()
        peer.close()


def test_a_listener_flooding_junk_back_is_dropped_and_reported(fake):
    told = []
    outlet, peer = connected(fake, told)
    try:
        peer.sendall(bytes([zmtp.MORE, 0]) * 1000)  # frames of a message that never ends: no ack
        outlet.read_acks()
        assert outlet.check() == 1 and not outlet.up
        assert any("flooding" in why for _, why in told), told
    finally:
        outlet.close()
        peer.close()


def test_a_flood_of_pings_is_dropped_as_junk(fake):
    told = []
    outlet, peer = connected(fake, told)
    try:
        peer.sendall(PING * 1000)
        outlet.read_acks()
        assert outlet.check() == 1 and any("flooding" in why for _, why in told), told
    finally:
        outlet.close()
        peer.close()


def test_one_call_takes_in_a_bounded_amount_of_what_the_listener_writes(fake):
    """However fast a listener writes (here: valid acks, which are never junk), a call reads at most
    READS_PER_CALL × READ_SIZE bytes and returns: the rest waits for the next call."""
    told = []
    outlet, peer = connected(fake, told)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    budget = zmtp_outlet.READS_PER_CALL * zmtp_outlet.READ_SIZE
    flood = (acks.ZMTP_ACK + acks.pack(1, 1)) * (2 * budget // 22)
    writer = threading.Thread(target=peer.sendall, args=(flood,))
    writer.start()
    try:
        wait_until(lambda: unread(outlet._sock) >= budget + zmtp_outlet.READ_SIZE)
        before = unread(outlet._sock)
        outlet.read_acks()
        assert outlet.up and before - unread(outlet._sock) <= budget
    finally:
        outlet.close()
        writer.join(10)
        peer.close()


def unread(sock: socket.socket) -> int:
    """Bytes waiting in ``sock``'s receive queue."""
    return int.from_bytes(fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4), "little")


def test_closing_with_an_ack_unread_still_delivers_everything_written(topic):
    """Linux resets a connection closed with unread bytes, throwing away what it still had to send;
    the outlet reads what is readable and ends its side first."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # a slow reader: most stays with the sender
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    outlet = ZmtpOutlet(f"tcp://127.0.0.1:{server.getsockname()[1]}")
    peer, _ = server.accept()
    try:
        peer.sendall(zmtp.GREETING + zmtp.ready(b"ROUTER"))
        wait_until(lambda: up(outlet))
        written = 0
        while written < 100 and not outlet.has_rest() and outlet.try_send([b"t", b"e", b"z" * 10_000]):
            written += 1  # (one taken in part is finished by close, or not: counted below either way)
        peer.sendall(acks.ZMTP_ACK + acks.pack(1, 1))
        assert select.select([outlet._sock], [], [], 10)[0], "the ack never arrived"
        whole = written - outlet.has_rest()
        outlet.close()
        received = bytearray()
        peer.settimeout(10)
        while chunk := peer.recv(1 << 20):
            received += chunk
        assert whole <= received.count(b"z" * 10_000) <= written and received.count(b"z" * 10_000) > 50
    finally:
        peer.close()
        server.close()


class NoSockets:
    """The socket module, except that no socket can be made (the process is out of file descriptors)."""

    def __getattr__(self, name):
        return getattr(socket, name)

    def socket(self, *args):
        raise OSError(errno.EMFILE, "Too many open files")


def test_out_of_file_descriptors_on_reconnect_is_reported_and_retried_never_raised(fake, monkeypatch):
    told = []
    outlet, peer = connected(fake, told)
    try:
        peer.close()
        wait_until(lambda: not up(outlet))
        monkeypatch.setattr(zmtp_outlet, "socket", NoSockets())
        wait_until(lambda: outlet.check() >= 0 and any("Too many open files" in why for _, why in told), 5)
        assert not outlet.try_send([b"topic", b"envelope", HEADER])
        monkeypatch.undo()
        peers = []
        threading.Thread(target=lambda: peers.append(fake.accept()), daemon=True).start()
        wait_until(lambda: up(outlet))  # descriptors again: the next attempt connects
        wait_until(lambda: peers)
        peers[0].close()
    finally:
        outlet.close()


def test_a_signal_while_a_message_is_part_written_drops_the_connection_instead_of_tearing_it(topic, monkeypatch):
    """Ctrl-C raised between ``sendmsg`` and the bookkeeping of its rest: the outlet cannot tell
    what the listener got, so it drops the connection (counted); the listener sees no torn frame."""
    monkeypatch.setattr(zmtp_outlet, "IPC_SEND_BUFFER", 8 * 1024)
    listener = ListenerTransport(topic, carrier="ipc", queue_depth=1000)
    publisher = PublisherTransport(topic, should_wait=True, wait_timeout=10)  # block: rests written here
    payload = np.zeros(64 * 1024, np.int32)
    original = zmtp_outlet._after
    signals = []

    def interrupted(buffers, sent):
        if not signals and threading.current_thread() is threading.main_thread():
            signals.append(sent)
            raise KeyboardInterrupt
        return original(buffers, sent)

    try:
        publisher.send([HEADER, payload])  # connected first: the interrupt lands mid-stream
        monkeypatch.setattr(zmtp_outlet, "_after", interrupted)
        try:
            with pytest.raises(KeyboardInterrupt):
                for seq in range(1, 50):
                    payload[:] = seq
                    publisher.send([HEADER, payload])
        finally:
            monkeypatch.setattr(zmtp_outlet, "_after", original)
        assert signals, "no message was part-written: the test proved nothing"
        deadline = time.monotonic() + 20
        seq, latest = 100, 0
        while latest < 100:  # a new connection: whole messages again
            assert time.monotonic() < deadline, "nothing arrived over a new connection"
            payload[:] = seq
            publisher.send([HEADER, payload])
            seq += 1
            while (frames := listener.recv(0.05)) is not None:
                received = np.frombuffer(frames[1], np.int32)
                assert (received == received[0]).all(), "a message arrived torn"
                latest = int(received[0])
        assert listener.statistics()["malformed"] == 0
        assert publisher.statistics()["disconnects"] == 1, "the interrupted connection is counted as dropped"
    finally:
        publisher.close()
        listener.close()


def test_the_flusher_outlives_a_failure_and_flushes_what_is_held_later(fake, topic):
    announcement = NodeAgent.get().announce(listener_key(topic), f"ipc://{fake.path}", {})
    publisher = PublisherTransport(topic, should_wait=True, wait_timeout=10, backpressure="latest")
    peers = []
    threading.Thread(target=lambda: peers.append(fake.accept()), daemon=True).start()
    try:
        publisher.send([HEADER, b"first"])
        wait_until(lambda: peers)
        outlet = next(iter(publisher._outlets.values()))
        failures = []

        def failing_once():
            if not failures and threading.current_thread().name.startswith("wrapyfi_like-flusher"):
                failures.append(1)
                raise RuntimeError("a bug in the flusher's path")
            return type(outlet).write_rest(outlet)

        outlet.write_rest = failing_once
        big = np.zeros(1 << 20, np.uint8)
        while outlet.pending is None:  # the listener reads nothing: the flusher takes over
            publisher.send([HEADER, big])
        wait_until(lambda: failures)
        peers[0].close()
        threading.Thread(target=lambda: peers.append(fake.accept()), daemon=True).start()
        marker = b"held for the flusher"
        publisher.send([HEADER, marker])  # no connection at this moment: held for the flusher
        wait_until(lambda: len(peers) == 2)
        peers[1].settimeout(10)
        received = b""
        while marker not in received:  # no further publish: only the flusher can write it
            chunk = peers[1].recv(1 << 16)
            assert chunk, "the connection closed before the held message arrived"
            received += chunk
    finally:
        publisher.close()
        NodeAgent.get().withdraw(announcement)
        for peer in peers:
            peer.close()


def test_a_bracketed_ipv4_endpoint_connects():
    listener_socket = socket.socket()
    listener_socket.bind(("127.0.0.1", 0))
    listener_socket.listen(1)
    outlet = ZmtpOutlet(f"tcp://[127.0.0.1]:{listener_socket.getsockname()[1]}")
    try:
        listener_socket.settimeout(5)
        peer, _ = listener_socket.accept()
        peer.close()
    finally:
        outlet.close()
        listener_socket.close()


def test_a_message_of_many_frames_copies_only_its_small_ones():
    large = [np.full(70_000, index, np.uint8) for index in range(3)]
    message = [b"t", b"e"] + [b"s" * 10] * 600 + large + [b"s" * 10] * 600
    buffers, total = zmtp_outlet._framed(message)
    assert len(buffers) <= 1024
    assert sum(buffer is frame for buffer in buffers for frame in large) == 3, "a large frame was copied"
    assert total == sum(zmtp_outlet._nbytes(buffer) for buffer in buffers)
    expected = b"".join(zmtp.frame_head(len(memoryview(frame).cast("B")), index < len(message) - 1)
                        + bytes(memoryview(frame)) for index, frame in enumerate(message))
    assert b"".join(bytes(memoryview(buffer)) for buffer in buffers) == expected
