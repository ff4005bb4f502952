"""Our own outlet: a plain non-blocking socket that speaks ZMTP to one listener, without libzmq.

Why: a libzmq DEALER hands every message to its I/O thread through a pipe and wakes that thread;
at 1 KB that hop is most of what a publish costs (a notice took 62–75 µs under load, against
19–28 µs over a plain socket), and each frame is a separate call into libzmq. This outlet writes a
whole message with one ``sendmsg`` of frame heads and buffers: no copy of large buffers in Python,
no other thread (a message under :data:`JOIN_WHOLE_BELOW` is joined and written with one ``send``,
see :class:`Framer`). The kernel copies the buffers, so once ``sendmsg`` has taken a message
whole, the caller owns its buffers again (no tracker, no copy below a threshold).

It speaks what :mod:`.zmtp` describes, as a DEALER with the NULL mechanism (so a listener's intake,
or any libzmq ROUTER, reads it unchanged): greeting and ``READY`` on connect, the peer's greeting and
``READY`` back (the connection is *up* then), then messages as frames. What the listener writes
back is read whenever the outlet is touched: acks (:mod:`.acks`) feed the :class:`~.acks.SentLedger`,
``PING`` is answered with ``PONG``, ``ERROR`` and anything that breaks the grammar drop the
connection (reported, never raised). With CURVE keys the libzmq :class:`~.outlets.Outlet` is used
instead; both offer the same methods to the publisher.

A listener is not trusted with the publisher's thread: one call reads at most
:data:`READS_PER_CALL` × :data:`READ_SIZE` bytes of what it wrote; more than
:data:`NOT_ACKS_ALLOWED` frames that serve nothing drop it as flooding; a ``PING`` gets one
``PONG``, written after parsing and only when nothing else waits to be written. Whatever fails or
is interrupted (a write, a signal's exception between ``sendmsg`` and the bookkeeping of what it
took) drops the connection, so the stream is never resumed in the middle of a frame.

Room. The kernel's send buffer is the queue: a message goes whole into it, or partly (the kernel
took only part of it), or not at all (no room). A partly written message cannot be abandoned in
the middle of a frame, so its unwritten rest is kept and written before anything else; while a
rest is kept, the outlet has no room. The rest refers to the caller's buffers (:attr:`borrowing`)
until :meth:`keep_rest` copies it; the publisher either writes it out before ``send`` returns
(``"block"``) or copies it (a flusher writes it later). So beyond the kernel's buffer an outlet
holds at most one message; ``queue_depth`` does not apply to it.

Liveness is the kernel's, as :mod:`.connections` explains for data connections: TCP keepalive and
``TCP_USER_TIMEOUT`` set on the socket itself; a killed listener shows as end of file or a reset
at once; a busy or stopped one is waited for. A connection that drops is opened again after
:data:`RECONNECT_IVL` (when the outlet is next touched), as libzmq reconnects, as long as the
publisher keeps the outlet (while discovery lists the endpoint).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
import time
from typing import Optional

import zmq

from wrapyfi_like.exceptions import DecodeError
from wrapyfi_like.middlewares.zeromq import acks, connections, zmtp
from wrapyfi_like.middlewares.zeromq.outlets import IPC_SEND_BUFFER, OutletState, Unconfirmed

RECONNECT_IVL = 0.1
"""Seconds between attempts to connect (libzmq's ``ZMQ_RECONNECT_IVL``): a listener that is
gone costs a refused connect this often at most, never a busy loop."""
HANDSHAKE_TIMEOUT = connections.HANDSHAKE_IVL_MS / 1000
"""Seconds a connection has to complete its handshake before it is dropped and tried again."""
MAX_BACK_FRAME = zmtp.MAX_COMMAND_SIZE
"""Bytes a frame from the listener may take: acks are 20, commands far below. Anything larger is
not a listener of ours, and the connection is dropped before the frame is held."""
READ_SIZE = 64 * 1024
READS_PER_CALL = 4
"""Reads of :data:`READ_SIZE` one call takes in at most (256 KiB): a listener that floods the
back-channel costs each publish a bounded slice of work, never a stall for as long as it floods
(what is left stays readable, and the next call or poll takes it)."""
NOT_ACKS_ALLOWED = 16
"""Frames a listener may write back that serve nothing (the parts of a message of several frames,
acks that do not decode, a ``PING`` while the last one's ``PONG`` is still unwritten) before its
connection is dropped: a listener of ours writes none, and a peer writing many is flooding the
back-channel (parsing them costs the publisher's thread ~0.4 µs a byte)."""
_IOV_MAX = 1024
JOIN_BELOW = 64 * 1024
"""A message of more pieces than ``sendmsg`` takes has its buffers below this size joined (see :func:`_joined_small`)."""
JOIN_WHOLE_BELOW = 8 * 1024
"""A message of fewer bytes than this is written as one joined buffer (:class:`Framer`). Measured
on the 2-core machine over a unix socket: joining and ``send`` took 2.97 µs against 4.19 for
``sendmsg`` of the eight pieces of a 1 KiB message, 4.01 against 5.13 at 4 KiB; at 16 KiB they
were level (6.56 against 7.00, within noise), at 64 KiB the copy lost (16.75 against 14.94)."""
_LONG_SIZE = struct.Struct(">Q")
_HELLO = zmtp.GREETING + zmtp.ready(b"DEALER")
_PEER_TYPES = (b"ROUTER",)
_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)
_POLLIN, _POLLOUT = int(zmq.POLLIN), int(zmq.POLLOUT)
_head = zmtp.frame_head
_SHORT_HEADS = [_head(size, more) for more in (False, True) for size in range(256)]
_long_head = struct.Struct(">BQ").pack
_LONG_MORE = zmtp.LONG | zmtp.MORE


class ZmtpOutlet(OutletState):
    """One listener's connection, written by us; the same state and methods as
    :class:`~.outlets.Outlet`, which the publisher uses for CURVE connections."""

    tuned = True  # the send buffer is set before connecting (ipc), or left to the kernel (tcp)

    def __init__(self, endpoint: str, unconfirmed: Optional[Unconfirmed] = None) -> None:
        super().__init__(endpoint, unconfirmed)  # up: the listener's READY arrived
        self._sock: Optional[socket.socket] = None
        self._rest: list = []  # what the kernel has not taken yet of the message (or handshake) begun
        self._in = bytearray()  # bytes from the listener not parsed yet
        self._greeted = False
        self._multipart = False  # inside a message of several frames from the listener (no ack)
        self._not_acks = 0  # frames of this connection that were neither acks nor commands
        self._pong: Optional[bytes] = None  # the answer to the listener's last PING, not written yet
        self._news = 0  # drops since the publisher last called check()
        self._why = ""  # what ended the connection last
        self._retry_at = 0.0
        self._handshake_until = 0.0
        self._open()

    # -- the publisher's side ---------------------------------------------------------------------

    def try_send(self, message: list) -> bool:
        """Write ``message`` without waiting; False if there is no room (nothing of it written)
        or no live connection. True if the kernel took all of it, or part of it: then the rest
        is kept (:attr:`borrowing`) and goes out before anything else."""
        if self._rest and not self.write_rest():
            return False
        if not self.up:
            self._pump()
            if not self.up or self._rest:
                return False
        buffers, total = message.wire if type(message) is Framed else _framed(message)
        try:
            sent = (self._sock.send(buffers[0], _NOSIGNAL) if len(buffers) == 1
                    else self._sock.sendmsg(buffers, (), _NOSIGNAL))
            if sent < total:
                self._rest = _after(buffers, sent)
                self.borrowing = True
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as error:
            self._down(f"writing failed: {error}")
            return False
        except BaseException:  # a signal's exception (Ctrl-C) before the rest was recorded
            self._down("a message was interrupted part-written")
            raise
        return True

    def mark_up(self) -> None:
        """A send succeeded (the connection is up already: nothing to learn)."""

    def write_rest(self) -> bool:
        """Write what the kernel has room for of the kept rest; True when nothing is left."""
        rest = self._rest
        if not rest:
            return True
        try:
            sent = self._sock.sendmsg(rest, (), _NOSIGNAL)
            if sent == sum(map(_nbytes, rest)):
                self._rest = []
                self.borrowing = False
                return True
            self._rest = _after(rest, sent)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as error:
            self._down(f"writing failed: {error}")
            return True
        except BaseException:  # a signal's exception before what was written was recorded
            self._down("the rest of a message was interrupted part-written")
            raise
        return False

    def keep_rest(self) -> None:
        """Copy the unwritten rest, so the caller may have its buffers back before it is written."""
        if self.borrowing:
            try:
                self._rest = [b"".join(self._rest)]
                self.borrowing = False
            except BaseException:  # a signal's exception: the rest would go on borrowing the caller's buffers
                self.drop("a message's rest was interrupted before it was copied")
                raise

    def drop(self, why: str) -> None:
        """Drop the connection (counted as any drop; a new one is opened later): for a publisher
        that can no longer vouch for what this connection was sent."""
        self._down(why)

    def has_rest(self) -> bool:
        return bool(self._rest)

    def read_acks(self) -> None:
        """Take in everything the listener wrote back (never waits)."""
        if self._sock is not None:
            self._read()

    def check(self) -> int:
        """Read the listener's news, reconnect if due; returns how many times the connection
        dropped since the last check. As with libzmq's monitor, a drop is reported here, not where
        it was seen: if the connection is still down, everything unacked went with it and is
        counted now; if it is up again, the new connection's first ack tells (:meth:`.SentLedger.acked`).
        A publisher that is closing leaves the news unread: a listener of the same process closed
        first at exit is no loss to report."""
        self._pump()
        news, self._news = self._news, 0
        if news and not self.up:
            lost = self.ledger.forget()
            if lost:
                self._unconfirmed(self, lost, self._why)
        return news

    def room(self) -> bool:
        return self.up and not self._rest

    def news(self) -> bool:
        """Whether the connection changed (dropped) since the last :meth:`check`."""
        self.read_acks()
        return bool(self._news)

    def register(self, poller: zmq.Poller, room: bool, news: bool = True) -> None:
        """Add what wakes a wait on this outlet to ``poller``: the listener's writes (acks, the
        handshake, its going away), and room in the kernel's buffer if ``room`` is wanted or a rest
        or the handshake waits to be written (``news`` is the libzmq outlet's; the listener's
        going away arrives here as a read). A connection that is down adds nothing: the
        caller's slices (:func:`~..deadlines.slice_ms`) bring the next attempt."""
        if self._sock is not None:
            want_out = self._rest or (room and self.up)
            poller.register(self._sock.fileno(), _POLLIN | _POLLOUT if want_out else _POLLIN)

    def room_poller(self, *fds: int) -> zmq.Poller:
        """A poller for waiting for room: this outlet (:meth:`register`) and the publisher's ``fds``
        (built anew each time: the socket changes with every reconnect)."""
        poller = zmq.Poller()
        self.register(poller, room=True)
        for fd in fds:
            poller.register(fd, _POLLIN)
        return poller

    def close(self, linger_ms: Optional[int] = None) -> None:
        """Close without waiting: what the kernel holds it still delivers; a kept rest gets one
        last write (the publisher's ``close`` has waited for room and acks already, and libzmq's
        linger, ``linger_ms``, went on in the background where nobody could wait for it)."""
        if self._sock is None:
            return
        self.closing = True
        self.write_rest()
        if self._sock is not None:
            self._read()  # an unread ack at close would make the kernel reset the connection, not end it
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_WR)  # the end goes after what the kernel still holds
            except OSError:
                pass  # already reset: nothing left to end
        self._close_socket()

    # -- the connection ---------------------------------------------------------------------------

    def _open(self) -> None:
        """Start connecting (never waits); a refusal leaves the outlet down until the next try."""
        ipc = self.endpoint.startswith("ipc://")
        sock = None
        try:
            if ipc:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            else:
                host, port = self.endpoint[len("tcp://"):].rsplit(":", 1)
                host = host.strip("[]")
                sock = socket.socket(_family(host), socket.SOCK_STREAM)
            sock.setblocking(False)
            if ipc:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, IPC_SEND_BUFFER)
                address = self.endpoint[len("ipc://"):]
            else:
                _data_connection(sock)
                address = (host, int(port))
            error = sock.connect_ex(address)
        except OSError as failure:  # out of file descriptors, say: try again later, never raise
            if sock is not None:
                sock.close()
            self._retry_at = time.monotonic() + RECONNECT_IVL
            if not self.closing:
                self._unconfirmed(self, 0, f"cannot open a connection: {failure}")
            return
        if error not in (0, errno.EINPROGRESS):
            sock.close()
            self._retry_at = time.monotonic() + RECONNECT_IVL
            return
        self._sock = sock
        self._rest = [_HELLO]
        self._handshake_until = time.monotonic() + HANDSHAKE_TIMEOUT
        self.write_rest()

    def _pump(self) -> None:
        if self._sock is None:
            if time.monotonic() >= self._retry_at and not self.closing:
                self._open()
            return
        if self._rest:
            self.write_rest()
        if self._sock is not None:
            self._read()
        if self._sock is not None and not self.up and time.monotonic() >= self._handshake_until:
            self._down("no handshake within %.0f s" % HANDSHAKE_TIMEOUT)

    def _read(self) -> None:
        """Take in what the listener wrote, up to :data:`READS_PER_CALL` reads; answer its last PING."""
        for _ in range(READS_PER_CALL):
            try:
                data = self._sock.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as error:
                return self._down(f"the connection failed: {error}")
            if not data:
                return self._down("the listener closed the connection")
            self._in += data
            try:
                self._parse()
            except zmtp.ProtocolError as error:
                if not self.closing:
                    self._unconfirmed(self, 0, f"broke ZMTP: {error}; the connection is dropped")
                return self._down(f"the listener broke ZMTP: {error}")
            if len(data) < READ_SIZE:
                break
        if self._pong is not None:
            self._answer_ping()

    def _answer_ping(self) -> None:
        """Write the pending PONG if nothing else waits to be written; else skip it (as the
        listener's intake does): a listener that pings while it reads nothing misses pongs, and
        never makes the outlet hold more than one message's rest."""
        pong, self._pong = self._pong, None
        if not self._rest:
            self._rest = [pong]
            if not self.write_rest() and self._rest and self._rest[0] is pong:
                self._rest = []  # the kernel took none of it: no room

    def _parse(self) -> None:
        data = self._in
        position = 0
        if not self._greeted:
            if len(data) < zmtp.GREETING_SIZE:
                return
            zmtp.check_greeting(bytes(data[:zmtp.GREETING_SIZE]))
            self._greeted = True
            position = zmtp.GREETING_SIZE
        end = len(data)
        while end - position >= 2:
            flags = data[position]
            if flags & ~zmtp.FLAG_BITS:
                raise zmtp.ProtocolError(f"a frame with unknown flags {flags:#04x}")
            if flags & zmtp.LONG:
                if end - position < 9:
                    break
                (size,) = _LONG_SIZE.unpack_from(data, position + 1)
                start = position + 9
            else:
                size = data[position + 1]
                start = position + 2
            if size > MAX_BACK_FRAME:
                raise zmtp.ProtocolError(f"a frame of {size} bytes from a listener (at most {MAX_BACK_FRAME})")
            if end - start < size:
                break
            body = bytes(data[start:start + size])
            position = start + size
            if flags & zmtp.COMMAND:
                self._command(body)
            elif not self.up:
                raise zmtp.ProtocolError("a message before READY")
            elif flags & zmtp.MORE or self._multipart:
                self._not_ack()
                if not flags & zmtp.MORE:
                    self._unconfirmed(self, 0, "wrote back a message of several frames instead of an ack")
                self._multipart = bool(flags & zmtp.MORE)
            else:
                self._ack(body)
        del data[:position]

    def _not_ack(self) -> None:
        self._not_acks += 1
        if self._not_acks > NOT_ACKS_ALLOWED:
            raise zmtp.ProtocolError(f"more than {NOT_ACKS_ALLOWED} frames that are not acks (flooding)")

    def _command(self, body: bytes) -> None:
        if not self.up:
            zmtp.check_ready(body, _PEER_TYPES)
            self.up = self.was_up = True
            return
        name, data = zmtp.split_command(body)
        if name == b"PING":
            if self._pong is not None:
                self._not_ack()  # PINGs faster than the pongs go out: flooding, not heartbeats
            self._pong = zmtp.pong(data)  # written once parsing is done (a write may drop the connection)
        elif name == b"ERROR":
            raise zmtp.ProtocolError(f"the listener sent ERROR: {data[1:1 + (data[0] if data else 0)]!r}")

    def _ack(self, frame: bytes) -> None:
        try:
            since, upto = acks.unpack(frame)
        except DecodeError as error:
            self._not_ack()
            self._unconfirmed(self, 0, f"wrote back something that is not an ack: {error}")
            return
        lost = self.ledger.acked(since, upto)
        if lost:
            self._unconfirmed(self, lost, "an earlier connection to it dropped")

    def _down(self, why: str) -> None:
        """The connection is gone (reported by :meth:`check`); a new one is tried later."""
        was_up = self.up
        self._close_socket()
        self._retry_at = time.monotonic() + RECONNECT_IVL
        if was_up:
            self.disconnects += 1
            self._news += 1
            self._why = f"its connection dropped: {why}"

    def _close_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self.up = False
        self._rest = []
        self.borrowing = False
        self._in.clear()
        self._greeted = self._multipart = False
        self._not_acks = 0
        self._pong = None


class Framed(list):
    """A message's frames with their ZMTP heads worked out once (:attr:`wire`: the buffers
    ``sendmsg`` writes, and their bytes in all), for every listener it goes to."""

    __slots__ = ("wire",)


class Framer:
    """Frames one topic's messages ``[topic, envelope, *body]`` for :class:`ZmtpOutlet`.

    Why: at 1 KB, working out the frame heads cost more than writing the message (3.0 µs of a
    ~21 µs publish, against 2.3 µs for the ``sendmsg``). The heads of the topic and the envelope
    never change (the envelope's size is fixed), so they are worked out once, with the topic
    frame, into one piece; only the body's heads are computed per message. A message below
    :data:`JOIN_WHOLE_BELOW` bytes is joined into one buffer and written with ``send``: the copy
    costs less than ``sendmsg``'s handling of each piece.
    """

    __slots__ = ("_topic_frame", "_prefix", "_prefix_size")

    def __init__(self, topic_frame: bytes, envelope_size: int) -> None:
        self._topic_frame = topic_frame
        self._prefix = _head(len(topic_frame), True) + topic_frame + _head(envelope_size, True)
        self._prefix_size = len(self._prefix) + envelope_size

    def __call__(self, envelope: bytes, body: list) -> Framed:
        pieces = [self._prefix, envelope]
        append = pieces.append
        total = self._prefix_size
        left = len(body)
        for frame in body:
            kind = type(frame)
            size = len(frame) if kind is bytes else frame.nbytes if kind is memoryview else memoryview(frame).nbytes
            left -= 1
            if size < 256:
                append(_SHORT_HEADS[size + 256 if left else size])
                total += size + 2
            else:
                append(_long_head(_LONG_MORE if left else zmtp.LONG, size))
                total += size + 9
            append(frame)
        if total < JOIN_WHOLE_BELOW:
            pieces = [b"".join(pieces)]
        elif len(pieces) > _IOV_MAX:
            pieces = _joined_small(pieces)
        message = Framed((self._topic_frame, envelope, *body))
        message.wire = (pieces, total)
        return message


def _framed(message: list) -> tuple[list, int]:
    """The buffers ``sendmsg`` writes for ``message`` (each frame's head, then the frame) and
    their bytes in all."""
    buffers: list = []
    total = 0
    last = len(message) - 1
    for index, frame in enumerate(message):
        size = len(frame) if type(frame) is bytes else memoryview(frame).nbytes
        head = _head(size, index < last)
        buffers += (head, frame)
        total += len(head) + size
    if len(buffers) > _IOV_MAX:
        buffers = _joined_small(buffers)
    return buffers, total


def _joined_small(buffers: list) -> list:
    """``buffers`` in at most :data:`_IOV_MAX` pieces (``sendmsg``'s limit): runs of small ones
    joined, large ones (≥ :data:`JOIN_BELOW`) left as they are, so a message of many frames copies
    only its small frames and heads; all joined only if even that is too many pieces."""
    pieces: list = []
    small: list = []
    for buffer in buffers:
        if _nbytes(buffer) < JOIN_BELOW:
            small.append(buffer)
            continue
        if small:
            pieces.append(b"".join(small))
            small = []
        pieces.append(buffer)
    if small:
        pieces.append(b"".join(small))
    return pieces if len(pieces) <= _IOV_MAX else [b"".join(buffers)]


def _after(buffers: list, sent: int) -> list:
    """What is left of ``buffers`` after the kernel took their first ``sent`` bytes."""
    for index, buffer in enumerate(buffers):
        size = _nbytes(buffer)
        if sent < size:
            first = memoryview(buffer).cast("B")[sent:] if sent else buffer
            return [first, *buffers[index + 1:]]
        sent -= size
    return []


def _nbytes(buffer) -> int:
    return len(buffer) if type(buffer) is bytes else memoryview(buffer).nbytes


def names_no_host(endpoint: str) -> bool:
    """Whether ``endpoint`` is an ipc path or a tcp address by number, which this outlet connects to
    without a lookup. A host name would be resolved in the publisher's thread, by a blocking DNS
    query: a discovery entry naming a host that never resolves would stall every publish. Such an
    endpoint gets libzmq's outlet, which resolves in its I/O thread."""
    if endpoint.startswith("ipc://"):
        return True
    try:
        ipaddress.ip_address(endpoint[len("tcp://"):].rsplit(":", 1)[0].strip("[]"))
    except ValueError:
        return False
    return True


def _family(host: str) -> int:
    """The address family of ``host`` (a number, :func:`names_no_host`), by the address itself:
    ``tcp://[1.2.3.4]:p`` is IPv4 whatever its brackets say."""
    return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET


def _data_connection(sock: socket.socket) -> None:
    """The TCP liveness of :func:`.connections.data_connection`, set on our own socket; and no
    Nagle delay (libzmq sets ``TCP_NODELAY`` on its connections too)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", connections.TCP_KEEPALIVE_IDLE_S),
                          ("TCP_KEEPINTVL", connections.TCP_KEEPALIVE_INTVL_S),
                          ("TCP_KEEPCNT", connections.TCP_KEEPALIVE_CNT),
                          ("TCP_USER_TIMEOUT", connections.TCP_MAXRT_MS)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
