"""One publisher → listener connection ("outlet") through libzmq, and whether it is up: the
publisher's outlet when it has CURVE keys (without, it writes ZMTP itself: :mod:`.zmtp_outlet`).

libzmq hides its connections, but a publisher must know when the one to a listener dies: a
``"block"`` publisher waits for room only while the listener is alive, and what a dead
connection took with it must be reported. A socket monitor tells us: every completed handshake
and every disconnect arrives as an event on an inproc socket. Events are read only when a send
finds no room (or discovery changes), so the common path costs nothing.

An outlet is closed only when its own connection is down *and* discovery no longer lists its
endpoint: a directory that was just rebuilt (its host died) may briefly not know a listener that
is alive and connected, and that must not cost the listener its messages.

An outlet is a DEALER socket: with its one peer it sends as a PUSH would (``SNDHWM``, no room =
``zmq.Again``), and it also reads what the listener writes back on the same connection, the acks
of :mod:`.acks`, which say what the listener delivered; what a dead connection took with it
unacked is counted as ``unconfirmed``.
"""

from __future__ import annotations

import itertools
import re
import socket
import struct
import time
from typing import Callable, Optional

import zmq

from wrapyfi_like.exceptions import DecodeError
from wrapyfi_like.middlewares.zeromq import acks
from wrapyfi_like.middlewares.zeromq.connections import data_connection
from wrapyfi_like.middlewares.zeromq.framing import try_send

ENDPOINT = re.compile(r"tcp://[A-Za-z0-9.\-]{1,253}:[0-9]{1,5}|tcp://\[[0-9A-Fa-f:.]{2,45}\]:[0-9]{1,5}|ipc:///[^\0]{1,200}")
"""Endpoints an outlet connects to: tcp to a host and port, or an ipc path. Anything else found
in discovery (another transport, junk) is refused before libzmq sees it."""
_EVENTS = zmq.EVENT_CONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
IPC_SEND_BUFFER = 4 * 1024 * 1024
"""Bytes of kernel send buffer asked for an ipc connection (the kernel caps it at
``net.core.wmem_max``). libzmq sets ``ZMQ_SNDBUF`` on tcp connections only; an ipc connection
keeps the default, ~200 KB, so a large message could leave libzmq only as fast as its listener
read it, and a ``zero_copy="safe"`` publisher waited for the slowest of its listeners to read
nearly all of it. With the larger buffer libzmq hands a 1 MB message to the kernel in one go.
A reply server's ipc connections get the same (:mod:`.router`): with the default every reply over
it waited for the server's writing thread, as many times over as it was larger; so does our own
outlet's socket (:mod:`.zmtp_outlet`), before it connects."""
_monitor_names = itertools.count()
_MONITOR_EVENT = struct.Struct("=Hi")
"""A monitor event's first frame (libzmq's ``zmq_socket_monitor``): the event id, then its value
(for ``EVENT_CONNECTED`` the connection's file descriptor). Read here rather than with
``zmq.utils.monitor``, whose import brings in asyncio: 20 ms of every process's start-up."""
_NOBLOCK = int(zmq.NOBLOCK)

Unconfirmed = Callable[["Outlet", int, str], None]
"""Told ``(outlet, count, why)`` when messages sent over the outlet are known never to be confirmed
(``count`` > 0), or ``(outlet, 0, problem)`` when the listener wrote something that is not an ack."""


def checked_endpoint(endpoint: str) -> None:
    """Refuse (``ValueError``) an endpoint from discovery that no outlet may connect to."""
    if not ENDPOINT.fullmatch(endpoint) or (endpoint.startswith("tcp:")
                                            and not 0 < int(endpoint.rsplit(":", 1)[1]) < 65536):
        raise ValueError("not a tcp://host:port or ipc:///path endpoint")


class OutletState:
    """What the publisher keeps per listener connection, whichever outlet writes it: whether the
    connection is up, whether discovery lists it, the ``"latest"`` message held for it, and the
    sequence numbers sent over it that the listener has not acked yet."""

    borrowing = False
    """The unwritten rest of the last message refers to the caller's buffers (our own outlet;
    libzmq takes a message whole, its buffers copied or tracked by the publisher)."""
    closing = False
    """Set while the publisher closes: a listener that goes away meanwhile is not reported."""

    def __init__(self, endpoint: str, unconfirmed: Optional[Unconfirmed]) -> None:
        checked_endpoint(endpoint)
        self.endpoint = endpoint
        self.found_at = time.monotonic()
        self.up = False
        """The connection's handshake completed and it has not dropped since."""
        self.was_up = False
        """The connection completed a handshake at least once: the listener was there."""
        self.listed = True
        """Discovery lists the endpoint (as of the publisher's last look)."""
        self.pending: Optional[list] = None
        """``"latest"``: the newest message that found no room yet."""
        self.pending_seq = 0
        """The sequence number of :attr:`pending`."""
        self.disconnects = 0
        self.ledger = acks.SentLedger()
        self._unconfirmed = unconfirmed or (lambda outlet, count, why: None)
        self._sends_to_read = acks.READ_EVERY

    def sent(self, seq: int) -> None:
        """Message ``seq`` was sent (or begun): it stays unconfirmed until acked. Every
        :data:`~.acks.READ_EVERY` sends the acks that arrived are read, so neither the ledger
        nor the acks waiting to be read grow with the message rate."""
        self.ledger.sent(seq)
        self._sends_to_read -= 1
        if not self._sends_to_read:
            self._sends_to_read = acks.READ_EVERY
            self.read_acks()

    def read_acks(self) -> None:
        """Take in every ack the listener wrote back (never waits); each outlet reads its own way."""
        raise NotImplementedError


class Outlet(OutletState):
    """A DEALER socket connected to one listener's endpoint, with its connection state and the
    sequence numbers sent over it that the listener has not acked yet. Used with CURVE keys; without,
    the publisher writes ZMTP itself (:class:`~.zmtp_outlet.ZmtpOutlet`, the same methods)."""

    def __init__(self, context: zmq.Context, endpoint: str, queue_depth: int, linger_ms: int,
                 keys=None, unconfirmed: Optional[Unconfirmed] = None) -> None:
        super().__init__(endpoint, unconfirmed)
        self.socket = context.socket(zmq.DEALER)
        self.monitor: Optional[zmq.Socket] = None
        try:
            self.socket.setsockopt(zmq.LINGER, linger_ms)
            self.socket.setsockopt(zmq.SNDHWM, queue_depth)
            data_connection(self.socket)
            if keys is not None:
                keys.apply(self.socket)
            # our own inproc name: pyzmq's default is derived from the socket's file descriptor,
            # which a new outlet may reuse before libzmq has let go of the old name
            monitor = f"inproc://wrapyfi_like-outlet-monitor-{next(_monitor_names)}"
            self.socket.monitor(monitor, _EVENTS)
            self.monitor = context.socket(zmq.PAIR)
            self.monitor.connect(monitor)
        except BaseException:
            self.close(0)
            raise
        try:
            self.socket.connect(endpoint)
        except zmq.ZMQError as error:
            self.close(0)
            raise ValueError(f"libzmq refuses it: {error}") from None
        self._room_poller: Optional[tuple[tuple[int, ...], zmq.Poller]] = None
        self.tuned = not endpoint.startswith("ipc:")
        """The connection has its send buffer (:data:`IPC_SEND_BUFFER`; tcp needs none): until
        then the publisher reads the monitor's news before each send, to find the connection."""

    def room_poller(self, *fds: int) -> zmq.Poller:
        """A poller for waiting for room: this outlet's socket (room, and acks), its monitor and
        the publisher's ``fds``. Kept between waits: a flat-out publisher waits on almost every
        send, and building a poller costs more than the rest of the wait's bookkeeping."""
        if self._room_poller is None or self._room_poller[0] != fds:
            poller = zmq.Poller()
            poller.register(self.socket, zmq.POLLOUT | zmq.POLLIN)
            poller.register(self.monitor, zmq.POLLIN)
            for fd in fds:
                poller.register(fd, zmq.POLLIN)
            self._room_poller = (fds, poller)
        return self._room_poller[1]

    def try_send(self, message: list) -> bool:
        """Queue ``message`` without waiting; False if the socket has no room for it."""
        return try_send(self.socket, message)

    def write_rest(self) -> bool:
        return True  # libzmq never leaves a message half queued

    def keep_rest(self) -> None:
        pass

    def has_rest(self) -> bool:
        return False

    def drop(self, why: str) -> None:
        """Nothing to drop: libzmq owns the connection and never leaves a message half written
        (the publisher lets go of the message it held, if any)."""

    def news(self) -> bool:
        """Whether the monitor has connection news not read yet."""
        return bool(self.monitor.poll(0))

    def register(self, poller: zmq.Poller, room: bool, news: bool = True) -> None:
        """Add what wakes a wait on this outlet to ``poller``: its monitor (with ``news``: a waiter
        that does not read it must leave it out, or its unread events wake it again and again),
        its acks, and (with ``room``, or once up: its pipe is being attached) room in its queue."""
        if news:
            poller.register(self.monitor, zmq.POLLIN)
        if room or self.up:
            poller.register(self.socket, zmq.POLLOUT | zmq.POLLIN)

    def mark_up(self) -> None:
        """A send succeeded: the connection is up (the monitor's event may still be on its way)."""
        self.up = self.was_up = True

    def read_acks(self) -> None:
        """Take in every ack the listener wrote back (never waits)."""
        sock = self.socket
        while True:
            try:
                frame = sock.recv(_NOBLOCK)
            except zmq.Again:
                return
            if sock.getsockopt(zmq.RCVMORE):
                while sock.getsockopt(zmq.RCVMORE):
                    sock.recv()  # the rest of a message that is no ack: let it go
                self._unconfirmed(self, 0, "wrote back a message of several frames instead of an ack")
                continue
            try:
                since, upto = acks.unpack(frame)
            except DecodeError as error:
                self._unconfirmed(self, 0, f"wrote back something that is not an ack: {error}")
                continue
            lost = self.ledger.acked(since, upto)
            if lost:
                self._unconfirmed(self, lost, "an earlier connection to it dropped")

    def check(self) -> int:
        """Read the monitor's news; returns how many disconnects happened since the last check.

        If the connection dropped and has not come back, every message still unacked was sent
        over it (a new connection takes messages only after its handshake, whose event comes
        first) and is counted unconfirmed now; if it came back, the new connection's first ack
        tells which ones were sent over the dead one (:meth:`.SentLedger.acked`).
        """
        self.read_acks()
        before = self.disconnects
        connected = None
        while True:
            try:
                event, value = _MONITOR_EVENT.unpack(self.monitor.recv_multipart(zmq.NOBLOCK)[0])
            except zmq.Again:
                break
            if event == zmq.EVENT_CONNECTED:
                connected = value
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.up = self.was_up = True
            elif event == zmq.EVENT_DISCONNECTED:
                self.up = False
                self.disconnects += 1
                self.tuned = not self.endpoint.startswith("ipc:")
                connected = None
        if connected is not None and not self.tuned:
            _widen_send_buffer(connected)
            self.tuned = True  # done, or found impossible: not tried again for this connection
        if self.disconnects != before and not self.up:
            lost = self.ledger.forget()
            if lost:
                self._unconfirmed(self, lost, "its connection dropped")
        return self.disconnects - before

    def room(self) -> bool:
        """Whether a message can be sent now (reading ZMQ_EVENTS also takes in libzmq's news)."""
        return bool(self.socket.getsockopt(zmq.EVENTS) & zmq.POLLOUT)

    def close(self, linger_ms: Optional[int] = None) -> None:
        if self.monitor is not None:
            self.socket.disable_monitor()
            self.monitor.close(linger=0)
        self.socket.close(linger=linger_ms)


def _widen_send_buffer(fd: int) -> None:
    """Give the ipc connection ``fd`` (from the monitor's connected event) a send buffer of
    :data:`IPC_SEND_BUFFER`. The descriptor is libzmq's, so it is borrowed, never closed. The
    event is read after the fact: if the connection closed meanwhile, its disconnect read in the
    same pass cancels this, and a number already reused for something else is at worst another
    socket whose buffer grows (anything that is no Unix socket is left alone)."""
    try:
        borrowed = socket.socket(fileno=fd)
    except OSError:
        return
    try:
        if borrowed.family == socket.AF_UNIX:
            borrowed.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, IPC_SEND_BUFFER)
    except OSError:
        pass
    finally:
        borrowed.detach()
