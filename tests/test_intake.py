"""The listener's own ZMTP intake, in one process: libzmq PUSH sockets are understood, and what a
hand-written peer sends is refused at the frame header that breaks a limit, before it is read.

Every hostile shape here is sent by :class:`RawPeer`, a ZMTP 3 peer written over a plain socket,
so it can send what libzmq never would: a frame header alone, a frame count past the limit,
a wrong socket type, a silent connection.
"""

import logging
import os
import socket
import struct
import threading
import time

import numpy as np
import pytest
import zmq

from wrapyfi_like.exceptions import ClosedError
from wrapyfi_like.limits import MAX_FRAMES
from wrapyfi_like.middlewares import envelope
from wrapyfi_like.middlewares.zeromq import intake as intake_module
from wrapyfi_like.middlewares.zeromq import zmtp
from wrapyfi_like.middlewares.zeromq.intake import MAX_MESSAGE_FRAMES, ZmtpIntake
from wrapyfi_like.middlewares.zeromq.settings import ZeroMQSettings

pytestmark = pytest.mark.timeout(60)

LIMIT = 1024 * 1024


class Refusals:
    """The intake's ``refused`` callback: records, and lets a test wait for the n-th refusal."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self._changed = threading.Condition()

    def __call__(self, peer: str, problem: str) -> None:
        with self._changed:
            self.problems.append(problem)
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = 10) -> list[str]:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.problems) >= count, timeout), self.problems
            return list(self.problems)


def make_intake(carrier="tcp", max_message_size=LIMIT, queue_depth=None):
    refusals = Refusals()
    address = ZeroMQSettings.from_environment().bind_address(carrier)
    return ZmtpIntake(address, max_message_size, queue_depth, refusals), refusals


class RawPeer:
    """A ZMTP 3.0 peer over a plain socket; ``socket_type``/``mechanism`` may be wrong on purpose."""

    def __init__(self, endpoint: str, socket_type: bytes = b"PUSH", mechanism: bytes = b"NULL",
                 handshake: bool = True) -> None:
        if endpoint.startswith("ipc://"):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(endpoint[len("ipc://"):])
        else:
            host, port = endpoint[len("tcp://"):].rsplit(":", 1)
            self.sock = socket.create_connection((host, int(port)))
        self.sock.settimeout(10)
        if handshake:
            self.sock.sendall(b"\xff" + bytes(8) + b"\x7f\x03\x00" + mechanism.ljust(20, b"\0") + bytes(32))
            self.greeting = self._read(64)
            self.sock.sendall(zmtp.ready(socket_type))

    def _read(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def header(self, size: int, more: bool) -> None:
        self.sock.sendall(bytes([zmtp.LONG | (zmtp.MORE if more else 0)]) + struct.pack(">Q", size))

    def frame(self, data: bytes, more: bool = False) -> None:
        self.header(len(data), more)
        self.sock.sendall(data)

    def message(self, *frames: bytes) -> None:
        for index, data in enumerate(frames):
            self.frame(data, more=index < len(frames) - 1)

    def closed_by_listener(self, timeout: float = 10) -> bool:
        """True once the listener closed the connection (whatever it sent before, e.g. ERROR)."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except (ConnectionResetError, BrokenPipeError):
            pass
        except socket.timeout:
            return False
        return True

    def close(self) -> None:
        self.sock.close()


def push(endpoint: str, hwm: int = 1000) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.connect(endpoint)
    return sock


@pytest.mark.parametrize("carrier", ["tcp", "ipc"])
def test_libzmq_push_messages_arrive_whole_and_in_order(carrier):
    intake, refusals = make_intake(carrier, max_message_size=4 * LIMIT)
    sender = push(intake.endpoint)
    sizes = [0, 1, 255, 256, 4096, 40_000, 70_000, LIMIT, 3 * LIMIT]  # short and long frames, own buffers
    try:
        sent = []
        for number in range(60):
            size = sizes[number % len(sizes)]
            payload = np.full(size, number, np.uint8)
            frames = [b"/topic", struct.pack("<I", number), b"header", payload, b"tail" * (number % 3)]
            sender.send_multipart(frames)
            sent.append([bytes(frame) for frame in frames])
        for expected in sent:
            frames = intake.receive(10)
            assert frames is not None
            assert [bytes(frame) for frame in frames] == expected
            assert all(not frame.readonly for frame in frames)  # writable: torch.from_numpy works
        assert intake.receive(0) is None and not refusals.problems
    finally:
        sender.close()
        intake.close()
        intake.release()


@pytest.mark.parametrize("carrier", ["tcp", "ipc"])
def test_small_messages_kept_by_the_caller_are_never_overwritten(carrier):
    """Small messages are cut out of a read buffer that is reused for the next reads: the frames
    a caller keeps (its arrays) must be copies of their own, whole, writable and unchanged however
    many messages follow, whether a message came whole in one read or split across reads."""
    intake, refusals = make_intake(carrier)
    sender = push(intake.endpoint, hwm=0)
    peer = RawPeer(intake.endpoint)
    try:
        sent = []
        for number in range(400):  # ~1.1 KB each: about 60 per 64 KiB read, so the buffer is reused
            frames = [b"/topic", struct.pack("<Q", number), b"h" * (number % 40), np.full(1024, number % 251, np.uint8)]
            sender.send_multipart(frames)
            sent.append([bytes(frame) for frame in frames])
        kept = [intake.receive(10) for _ in range(400)]
        for data in (b"split", b"across", b"many reads"):  # frame headers and bodies sent apart
            peer.frame(b"/topic", more=True)
            peer.header(len(data), more=False)
            peer.sock.sendall(data)
        split = [intake.receive(10) for _ in range(3)]
        assert [[bytes(frame) for frame in frames] for frames in kept] == sent
        assert [[bytes(frame) for frame in frames] for frames in split] == [
            [b"/topic", b"split"], [b"/topic", b"across"], [b"/topic", b"many reads"]]
        kept[0][3][:] = b"\0" * 1024  # writable, and its own: no other message changes
        assert [bytes(frame) for frame in kept[1]] == sent[1] and bytes(kept[0][2]) == sent[0][2]
        assert intake.receive(0) is None and not refusals.problems
    finally:
        sender.close()
        peer.close()
        intake.close()
        intake.release()


def test_the_ipc_file_is_removed_on_close():
    intake, _ = make_intake("ipc")
    path = intake.endpoint[len("ipc://"):]
    assert os.path.exists(path)
    intake.release()
    assert not os.path.exists(path)


def test_waits_that_time_out_as_messages_arrive_lose_none_and_a_later_wait_is_woken(in_thread):
    """The receiving thread waits on a bare lock released by the reading thread: a wait that
    times out just as a message is queued must still find it, and leave the lock as it found it,
    so the next unbounded wait is woken by the next message (not before, nor never)."""
    intake, _ = make_intake()
    sender = push(intake.endpoint)
    got: list[int] = []
    timeouts = [0]
    progress = threading.Condition()

    def receive_with_tiny_timeouts() -> None:
        while len(got) < 300:
            frames = intake.receive(0.0002)
            with progress:
                if frames is None:
                    timeouts[0] += 1
                else:
                    got.append(struct.unpack("<I", frames[1])[0])
                progress.notify_all()

    try:
        receiving = in_thread(receive_with_tiny_timeouts)
        for number in range(300):  # one at a time, each sent while the receiver cycles through short waits
            with progress:
                seen = timeouts[0]
                assert progress.wait_for(lambda: timeouts[0] > seen, 10), "the receiver's waits never time out"
            sender.send_multipart([b"/topic", struct.pack("<I", number), b"x" * number])
            with progress:
                assert progress.wait_for(lambda: len(got) > number, 10), f"message {number} never received"
        receiving.result(timeout=10)
        assert got == list(range(300))
        assert intake.receive(0) is None
        waiting = in_thread(lambda: intake.receive(None))
        sender.send_multipart([b"/topic", b"envelope", b"last"])
        assert bytes(waiting.result(timeout=10)[2]) == b"last"
    finally:
        sender.close()
        intake.release()


def test_a_message_over_the_limit_is_refused_at_the_header_that_breaks_it_and_the_connection_goes_on():
    intake, refusals = make_intake()
    peer = RawPeer(intake.endpoint)
    try:
        for data in (b"/topic", b"envelope", bytes(LIMIT // 2)):
            peer.frame(data, more=True)
        peer.header(LIMIT // 2 + 1, more=True)  # one byte too many: refused before its bytes arrive
        assert "max_message_size" in refusals.wait_for(1)[0]
        peer.sock.sendall(bytes(LIMIT // 2 + 1))  # the rest of the refused message is thrown away
        peer.frame(bytes(LIMIT), more=False)
        peer.message(b"/topic", b"envelope", b"honest")
        assert [bytes(f) for f in intake.receive(10)] == [b"/topic", b"envelope", b"honest"]
        assert len(refusals.problems) == 1 and intake.receive(0) is None
    finally:
        peer.close()
        intake.release()


def test_a_frame_announcing_a_terabyte_is_refused_without_allocating_it():
    intake, refusals = make_intake()
    peer = RawPeer(intake.endpoint)
    try:
        peer.frame(b"/topic", more=True)
        peer.frame(b"envelope", more=True)
        peer.header(1 << 40, more=False)
        peer.sock.sendall(bytes(4 * LIMIT))  # read and thrown away, never held
        assert "max_message_size" in refusals.wait_for(1)[0]
        assert intake.receive(0.1) is None
    finally:
        peer.close()
        intake.release()


def test_a_topic_or_envelope_frame_over_a_kilobyte_is_refused():
    intake, refusals = make_intake()
    peer = RawPeer(intake.endpoint)
    try:
        peer.header(LIMIT // 2, more=True)  # a topic frame: not counted in max_message_size, so bounded alone
        assert "topic or envelope" in refusals.wait_for(1)[0]
    finally:
        peer.close()
        intake.release()


def test_a_message_of_too_many_frames_is_refused_at_the_first_frame_past_the_limit():
    intake, refusals = make_intake()
    peer = RawPeer(intake.endpoint)
    try:
        peer.message(b"/topic", b"envelope", *([b""] * MAX_FRAMES))  # exactly the limit: delivered
        assert len(intake.receive(10)) == MAX_MESSAGE_FRAMES
        peer.sock.sendall(b"\x01\x00" * (MAX_MESSAGE_FRAMES + 1))  # unfinished: refused at the last
        assert "frames" in refusals.wait_for(1)[0]
        peer.sock.sendall(b"\x00\x00")  # its end, thrown away
        peer.message(b"/topic", b"envelope", b"next")
        assert [bytes(f) for f in intake.receive(10)] == [b"/topic", b"envelope", b"next"]
        assert len(refusals.problems) == 1
    finally:
        peer.close()
        intake.release()


@pytest.mark.parametrize("shape", ["PUB socket", "CURVE mechanism", "not ZMTP", "reserved flag bits",
                                   "message before READY"])
def test_a_peer_that_is_not_a_zmtp_push_socket_is_dropped_and_others_go_on(shape):
    intake, refusals = make_intake()
    sender = push(intake.endpoint)
    try:
        if shape == "PUB socket":
            peer = RawPeer(intake.endpoint, socket_type=b"PUB")
        elif shape == "CURVE mechanism":
            peer = RawPeer(intake.endpoint, mechanism=b"CURVE")
        elif shape == "not ZMTP":
            peer = RawPeer(intake.endpoint, handshake=False)
            peer.sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(64))
        elif shape == "reserved flag bits":
            peer = RawPeer(intake.endpoint)
            peer.sock.sendall(b"\x80\x01x")
        else:
            peer = RawPeer(intake.endpoint, handshake=False)
            peer.sock.sendall(b"\xff" + bytes(8) + b"\x7f\x03\x00" + b"NULL".ljust(20, b"\0") + bytes(32))
            peer.sock.sendall(b"\x00\x01x")
        assert peer.closed_by_listener()
        sender.send_multipart([b"/topic", b"envelope", b"honest"])
        assert [bytes(f) for f in intake.receive(10)] == [b"/topic", b"envelope", b"honest"]
        assert not refusals.problems  # not messages: logged, not counted
        peer.close()
    finally:
        sender.close()
        intake.release()


def test_a_ping_is_answered_with_a_pong():
    intake, _ = make_intake()
    peer = RawPeer(intake.endpoint)
    try:
        ready = peer._read(2)
        peer._read(ready[1])  # the intake's READY
        peer.sock.sendall(zmtp.command(b"PING", b"\x00\x0aabc"))
        assert peer._read(2 + 5 + 3) == zmtp.command(b"PONG", b"abc")
    finally:
        peer.close()
        intake.release()


def test_a_peer_silent_during_the_handshake_is_dropped(monkeypatch):
    monkeypatch.setattr(intake_module, "HANDSHAKE_TIMEOUT", 0.3)
    intake, _ = make_intake()
    peer = RawPeer(intake.endpoint, handshake=False)
    try:
        started = time.monotonic()
        assert peer.closed_by_listener(timeout=5)
        assert time.monotonic() - started < 3
    finally:
        peer.close()
        intake.release()


def test_connections_past_the_limit_are_closed_at_once(monkeypatch):
    monkeypatch.setattr(intake_module, "MAX_CONNECTIONS", 3)
    intake, _ = make_intake()
    peers = [RawPeer(intake.endpoint) for _ in range(3)]
    try:
        extra = RawPeer(intake.endpoint, handshake=False)
        assert extra.closed_by_listener()
        extra.close()
        peers[0].message(b"/topic", b"envelope", b"still served")
        assert [bytes(f) for f in intake.receive(10)][2] == b"still served"
    finally:
        for peer in peers:
            peer.close()
        intake.release()


def fill_until_blocked(sender: zmq.Socket, payload: bytes, limit: int = 10_000) -> int:
    """Send until the sender finds no room for a whole second: only a listener that stopped
    reading makes that happen. Returns how many messages were sent."""
    sent = 0
    poller = zmq.Poller()
    poller.register(sender, zmq.POLLOUT)
    while sent < limit:
        if not poller.poll(1000):
            return sent
        sender.send_multipart([b"/topic", struct.pack("<Q", sent), payload])
        sent += 1
    raise AssertionError("the intake never stopped reading")


def test_a_full_queue_stops_reading_so_the_publisher_waits_and_nothing_is_lost():
    intake, _ = make_intake(queue_depth=4)
    sender = push(intake.endpoint, hwm=1)
    try:
        sent = fill_until_blocked(sender, bytes(256 * 1024))
        assert intake.queued() <= 4 + 1  # queue_depth, plus the one that filled it (as libzmq)
        for number in range(sent):
            assert struct.unpack("<Q", intake.receive(10)[1])[0] == number
    finally:
        sender.close()
        intake.release()


def test_one_connection_holds_at_most_max_message_size_of_queued_messages():
    intake, _ = make_intake(queue_depth=1000)
    sender = push(intake.endpoint, hwm=1)
    try:
        sent = fill_until_blocked(sender, bytes(LIMIT * 3 // 10))  # three fit in LIMIT, a fourth does not
        assert intake.queued() == 3
        for number in range(sent):
            assert struct.unpack("<Q", intake.receive(10)[1])[0] == number
    finally:
        sender.close()
        intake.release()



@pytest.mark.parametrize("address, host", [("tcp://127.0.0.1:*", "127.0.0.1"), ("tcp://*:*", "0.0.0.0"),
                                           ("tcp://localhost:*", "127.0.0.1")])
def test_tcp_addresses_bind_as_libzmq_binds_them(address, host):
    """IPv4 unless the address is IPv6 (our publishers' libzmq sockets do not enable IPv6), and
    the endpoint announced in libzmq's ``LAST_ENDPOINT`` form."""
    intake = ZmtpIntake(address, LIMIT, None, Refusals())
    try:
        assert intake.endpoint.startswith(f"tcp://{host}:") and int(intake.endpoint.rsplit(":", 1)[1]) > 0
    finally:
        intake.release()


def test_a_listener_counts_each_refusal_and_logs_once_per_peer(topic, caplog):
    from wrapyfi_like.middlewares.zeromq import ListenerTransport as ZeroMQListenerTransport

    listener = ZeroMQListenerTransport(topic, max_message_size=LIMIT)
    peer = RawPeer(listener.endpoint)
    try:
        with caplog.at_level(logging.WARNING, logger="wrapyfi_like.zeromq"):
            for _ in range(3):
                peer.message(topic.encode(), b"envelope", bytes(LIMIT // 2), bytes(LIMIT // 2 + 1))
            peer.message(topic.encode(), envelope.pack(b"honest!!", 1), b"\x93\x01\x00\xc0")
            assert listener.recv(10) is not None  # after the refused ones, from the same connection
        assert listener.statistics()["malformed"] == 3
        lines = [r.getMessage() for r in caplog.records if "max_message_size" in r.getMessage()]
        assert len(lines) == 1 and topic in lines[0] and "127.0.0.1" in lines[0], lines
    finally:
        peer.close()
        listener.close()


class NoKeys:
    """Stands in for CURVE keys: :class:`PullIntake`'s own behaviour does not depend on them."""

    def apply(self, sock: zmq.Socket) -> None:
        pass


def test_the_curve_intake_reports_an_oversized_message_and_goes_on(in_thread):
    from wrapyfi_like.middlewares.zeromq.pull_intake import PullIntake

    refusals = Refusals()
    intake = PullIntake(ZeroMQSettings.from_environment().bind_address("tcp"), LIMIT, None, refusals, NoKeys())
    sender = zmq.Context.instance().socket(zmq.DEALER)  # what publishers' outlets are
    sender.setsockopt(zmq.LINGER, 0)
    sender.connect(intake.endpoint)
    try:
        sender.send_multipart([b"/topic", b"envelope", bytes(LIMIT // 2), bytes(LIMIT // 2 + 1)])
        sender.send_multipart([b"/topic", b"envelope", b"next"])
        assert intake.receive(10) == []  # refused, already reported
        assert "max_message_size" in refusals.wait_for(1)[0]
        assert [bytes(f) for f in intake.receive(10)] == [b"/topic", b"envelope", b"next"]
        waiting = in_thread(lambda: intake.receive(None))
        intake.close()
        with pytest.raises(ClosedError):
            waiting.result(timeout=0.5)
    finally:
        sender.close()
        intake.release()


def _wire(frames: list[bytes], long_from: int = 256) -> bytes:
    """ZMTP frames of one message; frames of ``long_from`` bytes or more get an 8-byte size."""
    out = b""
    for index, frame in enumerate(frames):
        more = zmtp.MORE if index < len(frames) - 1 else 0
        if len(frame) >= long_from:
            out += bytes([zmtp.LONG | more]) + struct.pack(">Q", len(frame)) + frame
        else:
            out += bytes([more, len(frame)]) + frame
    return out


@pytest.mark.parametrize("sizes", [
    [10, 36, 28, 1024], [10, 36, 0, 255, 256, 0], [0, 0], [1024, 36, 5], [1025, 36, 5], [10, 1025, 5],
    [10, 36, intake_module.OWN_BUFFER_FROM - 1], [10, 36, intake_module.OWN_BUFFER_FROM], [10, 36] + [1] * 40,
])
@pytest.mark.parametrize("long_from", [256, 0])  # libzmq sends short sizes; a peer may send long ones
def test_whole_message_takes_exactly_the_ordinary_messages(sizes, long_from):
    """The fast path returns a message only if the frame-by-frame parser would take it unchanged
    (head frames within MAX_HEAD_FRAME, data frames under OWN_BUFFER_FROM, within max_message_size
    and MAX_MESSAGE_FRAMES), with every frame's bytes; anything else, or a message the buffer
    does not hold whole, is None (left to that parser)."""
    frames = [bytes([index % 251]) * size for index, size in enumerate(sizes)]
    wire = _wire(frames, long_from)
    after = b"\x01\x05hello"  # the next message's first bytes follow in the buffer
    buffer = bytearray(b"xx" + wire + after)
    just_under = max(sum(sizes[2:]) - 1, 0)
    for limit, max_frames in ((1 << 20, MAX_MESSAGE_FRAMES), (just_under, MAX_MESSAGE_FRAMES), (1 << 20, 10)):
        ordinary = (all(size <= intake_module.MAX_HEAD_FRAME for size in sizes[:2])
                    and all(size < intake_module.OWN_BUFFER_FROM for size in sizes[2:])
                    and sum(sizes[2:]) <= limit and len(sizes) <= max_frames)
        old = intake_module.MAX_MESSAGE_FRAMES
        intake_module.MAX_MESSAGE_FRAMES = max_frames
        try:
            found = intake_module._whole_message(buffer, 2, len(buffer), limit, 2)
            for cut in range(2, 2 + len(wire), max(1, len(wire) // 50)):  # never a message not all there
                assert intake_module._whole_message(buffer, 2, cut, limit, 2) is None
        finally:
            intake_module.MAX_MESSAGE_FRAMES = old
        if not ordinary:
            assert found is None, (sizes, limit, max_frames)
            continue
        assert found is not None, (sizes, limit, max_frames)
        position, counted, views = found
        assert position == 2 + len(wire) and counted == sum(sizes[2:])
        assert [bytes(view) for view in views] == frames


@pytest.mark.parametrize("long_from", [256, 0])
def test_a_cached_layout_cuts_only_messages_whose_every_frame_head_is_the_same(long_from):
    """A peer's repeated message shape is cut by its layout (no walk over the frames), but only a
    message whose heads all say the same: the same total size and frame count split differently,
    or a frame's MORE flag changed, is left to the walk; a layout is never built with an empty frame,
    nor for more than LAYOUT_FRAMES frames (what a connection keeps stays small)."""
    sizes = [10, 36, 28, 1024]
    first = [bytes([index]) * size for index, size in enumerate(sizes)]
    buffer = bytearray(_wire(first, long_from))
    found = intake_module._whole_message(buffer, 0, len(buffer), LIMIT, 2)
    layout = intake_module._Layout.of(buffer, 0, found)
    again = [bytes([7 + index]) * size for index, size in enumerate(sizes)]  # same heads, new bytes
    buffer = bytearray(b"xyz" + _wire(again, long_from))
    position, counted, views = layout.match(buffer, 3)
    assert (position, counted) == (len(buffer), 28 + 1024)
    assert [bytes(view) for view in views] == again and all(not view.readonly for view in views)
    resplit = [b"a" * 10, b"b" * 36, b"c" * 29, b"d" * 1023]  # as many bytes and frames
    assert len(_wire(resplit, long_from)) == len(_wire(first, long_from))
    assert layout.match(bytearray(_wire(resplit, long_from)), 0) is None
    more_moved = _wire(first[:2], long_from) + _wire(first[2:3], long_from) + _wire(first[3:], long_from)
    assert len(more_moved) == len(_wire(first, long_from))
    assert layout.match(bytearray(more_moved), 0) is None  # the envelope frame without MORE
    with_empty = [b"t" * 10, b"e" * 36, b"", b"d" * 1024]
    many = [b"t" * 10, b"e" * 36] + [b"f"] * (intake_module.LAYOUT_FRAMES - 1)  # one frame too many to keep
    for frames in (with_empty, many):
        buffer = bytearray(_wire(frames, long_from))
        whole = intake_module._whole_message(buffer, 0, len(buffer), LIMIT, 2)
        assert whole is not None and intake_module._Layout.of(buffer, 0, whole) is None
    at_most = many[:-1]
    buffer = bytearray(_wire(at_most, long_from))
    assert intake_module._Layout.of(buffer, 0, intake_module._whole_message(buffer, 0, len(buffer), LIMIT, 2))


@pytest.mark.parametrize("carrier", ["tcp", "ipc"])
def test_after_a_repeated_shape_other_shapes_and_refusals_arrive_exactly(carrier):
    """Once a peer's messages share a layout, a message of the same size split differently
    arrives with its own frames, one over the limit is still refused at its header, and the
    stream goes on in order."""
    intake, refusals = make_intake(carrier, max_message_size=4096)
    peer = RawPeer(intake.endpoint)
    try:
        messages = [[b"/topic", b"e" * 36, b"h" * 28, bytes([n]) * 1024] for n in range(4)]
        messages.append([b"/topic", b"e" * 36, b"h" * 29, b"d" * 1023])  # same size and frame count
        messages.append([b"/topic", b"e" * 36, b"h" * 28, bytes([9]) * 1024])
        for frames in messages[:5]:
            peer.message(*frames)
        peer.message(b"/topic", b"e" * 36, b"h" * 28, bytes(4096))  # over max_message_size
        peer.message(*messages[5])
        for expected in messages:
            assert [bytes(frame) for frame in intake.receive(10)] == expected
        assert len(refusals.wait_for(1)) == 1 and intake.receive(0) is None
    finally:
        peer.close()
        intake.release()


def test_a_layout_that_keeps_failing_is_rebuilt_ever_less_often():
    """A peer whose messages keep their size but not their frames would cost a failed check and
    a layout build per message: each layout that fails doubles the messages of one size walked
    before the next is built (up to LAYOUT_PATIENCE), and every message is still cut exactly."""
    intake, _ = make_intake()
    ours, theirs = socket.socketpair()
    connection = intake_module._Connection(ours, "test")
    try:
        splits = ([b"t" * 10, b"e" * 36, b"h" * 28, b"d" * 1024], [b"t" * 10, b"e" * 36, b"h" * 29, b"d" * 1023])
        builds = []
        for number in range(400):
            frames = splits[number // 2 % 2]  # two of one split, two of the other, ...
            wire = _wire(frames, 256)
            connection.buffer[:len(wire)] = wire
            had = connection.layout
            position, _, views = intake._whole(connection, 0, len(wire))
            assert position == len(wire) and [bytes(view) for view in views] == frames
            if connection.layout is not None and connection.layout is not had:
                builds.append(number)
        assert connection.patience == intake_module.LAYOUT_PATIENCE
        # patience 1, 2, 4, ... 64, then 64 each time; without the backoff: one build every two messages
        assert len(builds) <= 7 + 400 // intake_module.LAYOUT_PATIENCE, builds
    finally:
        ours.close()
        theirs.close()
        intake.release()
