"""A service's intake: the listener's own ZMTP reader (:mod:`.intake`) speaking as a ROUTER to
libzmq DEALER peers, and writing each reply back on the connection its request came over.

A libzmq ROUTER bounds each frame but holds a whole multipart message before the application
sees it, so a peer could make a reply server or the discovery directory hold gigabytes (six
300 MB frames of a request that never ends). :class:`ZmtpRouter` reads with the same limits as a
listener's intake, checked before any frame is read: a request over ``max_message_size`` or
:data:`~.intake.MAX_MESSAGE_FRAMES` is refused (reported once through ``refused``, with the
connection and the head frames read so far, so a server can still answer it with an error) and
the connection stays in step; one connection holds at most ``max_message_size`` bytes of queued
requests; at most :data:`~.intake.MAX_CONNECTIONS` connections, each with
:data:`~.intake.HANDSHAKE_TIMEOUT` to finish its handshake. Clients keep their libzmq DEALER
sockets: the wire does not change.

Replies never wait. :meth:`ZmtpRouter.send` writes at once with a non-blocking ``sendmsg`` from
the caller's thread (no hand-off on the usual path); what the kernel does not take waits in the
connection's outbox, which a writing thread (started the first time it is needed) flushes as the
peer reads. An outbox holds at most ``queued_replies`` replies and, besides the one being
written, ``max_message_size`` bytes: a reply beyond that, or to a connection that is gone, is
not sent and :meth:`~ZmtpRouter.send` says so, so the caller counts it as dropped. A client that
never reads therefore costs its own replies only, never another client's time. A write that fails
(any error but "would block") shuts the connection down: the reader drops it and the client's
DEALER connects again, so a connection whose replies go nowhere is never still read.

With ``serial`` (the discovery directory, whose clients keep one request in flight), a connection
has one request at a time: its next one is not read until the caller said it answered the
previous one (:meth:`~ZmtpRouter.done`) and no reply to it is left unwritten. Requests
that one read brought together wait in the connection's outlet, not in the shared queue, so the
queue holds at most one request per connection and serves connections in turn; and a client that
sends without reading is answered only as fast as it reads: once its replies fill the kernel's
buffers it is not read at all, and TCP holds its requests on its own side. Requests a dropped
connection had sent and the reader had read (held behind the one being answered) are still
served, their replies going nowhere, as with any request read before a drop; ``done()`` and the
writing thread wake the reader whenever a held connection becomes free (the wake-up protocol
above :meth:`ZmtpRouter._one_each`).
"""

from __future__ import annotations

import os
import select
import socket
import threading
import weakref
from collections import deque
from typing import Callable, Optional

from wrapyfi_like.background import start_thread
from wrapyfi_like.middlewares.zeromq import zmtp
from wrapyfi_like.middlewares.zeromq.intake import ZmtpIntake, _Connection
from wrapyfi_like.middlewares.zeromq.outlets import IPC_SEND_BUFFER
from wrapyfi_like.middlewares.zeromq.wakeup import Wakeup

RouterRefused = Callable[["Outlet", list, str], None]
"""Told ``(outlet, head_frames, problem)`` once for every request refused for its size or frame
count; ``head_frames`` are the request's head frames read before the refusal (maybe none). Called
on the reading thread; held weakly if it is a bound method, as :data:`~.intake.Refused`."""
_IOV_MAX = min(os.sysconf("SC_IOV_MAX"), 1024) if hasattr(os, "sysconf") else 1024


class Outlet:
    """The way back to one connection: its replies, and who it is (``identity`` as its DEALER
    announced it, or one we made up; ``address``: its network address, "" over ipc)."""

    __slots__ = ("connection", "identity", "address", "outbox", "out_bytes", "gone", "held", "busy", "__weakref__")

    def __init__(self, connection: _Connection, identity: bytes, address: str) -> None:
        self.connection = connection
        self.identity = identity
        self.address = address
        self.outbox: deque[memoryview] = deque()  # unsent replies, one buffer each
        self.out_bytes = 0  # bytes in the outbox
        self.gone = False
        self.held: deque[tuple] = deque()  # with ``serial``: requests read, not yet queued
        self.busy = False  # with ``serial``: a request queued or being answered (until done())


class ZmtpRouter(ZmtpIntake):
    """Binds ``address`` and queues the requests of DEALER peers; :meth:`take` returns each with
    the :class:`Outlet` its reply goes to.

    ``head_frames``: the request's leading frames that are the protocol's own (a request id),
    each bounded by :data:`~.intake.MAX_HEAD_FRAME` and not counted in ``max_message_size``.
    ``handover``: a new connection announcing the identity of a live one replaces it (libzmq's
    ``ZMQ_ROUTER_HANDOVER``). ``notify``: set whenever requests are queued, for a caller that polls.
    ``max_connections``: peers at once (None: :data:`~.intake.MAX_CONNECTIONS`). ``serial``: one
    request of a connection at a time, the caller telling :meth:`done` (see the module's docstring).
    """

    peer_types = (b"DEALER",)
    head_name = "request id"

    def __init__(self, address: str, max_message_size: int, queue_depth: int, queued_replies: int,
                 refused: RouterRefused, *, head_frames: int, handover: bool = False,
                 notify: Optional[Wakeup] = None, max_connections: Optional[int] = None,
                 serial: bool = False) -> None:
        self.head_frames = head_frames
        self.max_connections = max_connections
        self._queued_replies = queued_replies
        self._handover = handover
        self._notify = notify
        self._outlets: dict[_Connection, Outlet] = {}
        self._identities: dict[bytes, Outlet] = {}
        self._made_up = 0
        self._router_refused = weakref.WeakMethod(refused) if hasattr(refused, "__self__") else lambda: refused
        self._out_lock = threading.Lock()  # every outbox and the writing thread's set
        self._drained = threading.Condition(self._out_lock)  # notified when no outbox holds bytes
        self._writing: set[Outlet] = set()  # outlets with bytes in their outbox
        self._writer: Optional[threading.Thread] = None
        self._writer_wakeup: Optional[Wakeup] = None
        self._serial = serial
        self._holding: set[_Connection] = set()  # with serial: not read for now (changed by the reader only)
        self._holding_lock = threading.Lock()  # _holding's changes and other threads' looks at it
        super().__init__(address, max_message_size, queue_depth, _unused)

    # -- the caller's side ---------------------------------------------------------------------

    def take(self, timeout: Optional[float]) -> Optional[tuple[Outlet, list[memoryview]]]:
        """The next request as ``(outlet, frames)``, or None (as :meth:`~.ZmtpIntake.receive`)."""
        frames = self.receive(timeout)
        if frames is None:
            return None
        return frames.pop(), frames  # _deliver put the outlet last

    def send(self, outlet: Outlet, frames: list) -> bool:
        """Write one message to ``outlet`` without waiting; False if it was not sent (the peer is
        gone, or its outbox is full: see the module's docstring). Thread-safe."""
        buffers: list = []
        size = heads = 0
        last = len(frames) - 1
        for index, frame in enumerate(frames):
            view = frame if type(frame) is bytes else memoryview(frame).cast("B")
            head = zmtp.frame_head(len(view), index < last)
            buffers.append(head)
            buffers.append(view)
            size += len(view)
            heads += len(head)
        return self._write_out(outlet, buffers, size, size + heads)

    def _write_out(self, outlet: Outlet, buffers: list, size: int, total: int) -> bool:
        """Write ``buffers`` (whole frames, ``size`` bytes of frame bodies, ``total`` bytes in all)
        to ``outlet`` after whatever its outbox holds, so the stream stays in step; False if not sent."""
        with self._out_lock:
            if outlet.gone:
                return False
            if outlet.outbox:
                if len(outlet.outbox) >= self._queued_replies or outlet.out_bytes + size > self._max_message_size:
                    return False
                self._queue_out(outlet, b"".join(buffers))
                return True
            if len(buffers) > _IOV_MAX:
                buffers = [b"".join(buffers)]
            try:
                sent = outlet.connection.sock.sendmsg(buffers)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._fail(outlet)
                return False
            if sent < total:
                self._queue_out(outlet, memoryview(b"".join(buffers))[sent:])
            return True

    def done(self, outlet: Outlet) -> None:
        """With ``serial``: the request last taken from ``outlet`` is answered (its reply about to
        be sent, or none due), so its connection's next request is read once no reply to it is
        unwritten (one read between this call and the reply's :meth:`send` may queue one more
        request, which is served after that reply). Thread-safe (the wake-up protocol above
        :meth:`_one_each`)."""
        outlet.busy = False
        self._freed(outlet)

    def _freed(self, outlet: Outlet) -> None:
        """``outlet`` may have become free (:meth:`_free`): wake the reader if it holds its connection."""
        with self._holding_lock:
            held = outlet.connection in self._holding
        if held:
            self._wakeup.set()

    def _fail(self, outlet: Outlet) -> None:
        """A write to ``outlet`` failed (under ``_out_lock``): its replies go nowhere from now on, and
        its socket is shut down so the reader drops the connection (woken, if it does not read it
        now): ``gone`` always ends in a drop, never leaves a live connection unanswered. A
        transient error (``ENOBUFS``) costs the peer its connection; its DEALER reconnects."""
        outlet.gone = True
        try:
            outlet.connection.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # closed or shut already: dropped or being dropped
        self._wakeup.set()

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every outbox to be written out (as libzmq's
        ``ZMQ_LINGER``: a reply sent just before closing still goes out); False if some was not."""
        with self._out_lock:
            return self._drained.wait_for(lambda: not self._writing, timeout)

    def connections(self) -> int:
        """Connections open now, their handshake done or not (read from any thread: a snapshot)."""
        return len(self._connections)

    def outlet(self, identity: bytes) -> Optional[Outlet]:
        """The live connection that announced ``identity`` (only with ``handover``)."""
        return self._identities.get(identity)

    def close(self) -> None:
        super().close()
        with self._out_lock:
            for outlet in self._outlets.values():
                outlet.gone = True
            if self._writer_wakeup is not None:
                self._writer_wakeup.set()

    # -- the writing thread --------------------------------------------------------------------

    def _queue_out(self, outlet: Outlet, data) -> None:
        """Hold ``data`` in ``outlet``'s outbox and have the writing thread flush it (under ``_out_lock``)."""
        outlet.outbox.append(data)
        outlet.out_bytes += len(data)
        self._writing.add(outlet)
        if self._writer is None:
            self._writer_wakeup = Wakeup()
            self._writer = start_thread(self._write, f"wrapyfi_like replies {self.endpoint}")
        else:
            self._writer_wakeup.set()

    def _write(self) -> None:
        wakeup = self._writer_wakeup
        try:
            while not self._closed:
                poller = select.poll()
                poller.register(wakeup.fileno(), select.POLLIN)
                with self._out_lock:
                    by_fd = {outlet.connection.sock.fileno(): outlet for outlet in self._writing}
                by_fd.pop(-1, None)
                for fd in by_fd:
                    poller.register(fd, select.POLLOUT)
                for fd, _ in poller.poll():
                    if fd == wakeup.fileno():
                        wakeup.clear()
                    elif fd in by_fd:
                        self._flush(by_fd[fd])
        finally:
            wakeup.close()

    def _flush(self, outlet: Outlet) -> None:
        with self._out_lock:
            sock = outlet.connection.sock
            while outlet.outbox and not outlet.gone:
                head = outlet.outbox[0]
                try:
                    sent = sock.send(head)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    self._fail(outlet)
                    break
                outlet.out_bytes -= sent
                if sent < len(head):
                    outlet.outbox[0] = memoryview(head)[sent:]
                    return
                outlet.outbox.popleft()
            self._forget_outbox(outlet)

    def _forget_outbox(self, outlet: Outlet) -> None:
        outlet.outbox.clear()
        outlet.out_bytes = 0
        self._writing.discard(outlet)
        if not self._writing:
            self._drained.notify_all()
        self._freed(outlet)  # serial: its next request may go now

    # -- the reading thread (overrides) --------------------------------------------------------

    def _command(self, c: _Connection, body: bytes) -> None:
        if not c.ready:
            super()._command(c, body)  # checks the READY: a DEALER's
            c.acks = False  # a request client reads replies, not a listener's acks
            identity = zmtp.properties(zmtp.split_command(body)[1]).get("identity") or b""
            if identity[:1] in (b"", b"\0"):  # a zero byte first is ours to give: never another's by handover
                identity = self._make_identity()
            if c.sock.family == socket.AF_UNIX:  # as much room as TCP's autotuning gives (tcp_wmem),
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, IPC_SEND_BUFFER)  # a 1 MB reply in one write
            outlet = Outlet(c, identity, _address(c.sock))
            with self._out_lock:
                self._outlets[c] = outlet
                if self._handover:
                    previous = self._identities.get(identity)
                    self._identities[identity] = outlet
                else:
                    previous = None
            if previous is not None:
                self._drop(previous.connection, "", log=False)
            return
        name, data = zmtp.split_command(body)
        if name == b"PING":  # the pong goes behind a reply being written, never into it
            pong = zmtp.pong(data)
            self._write_out(self._outlets.get(c) or _gone(c), [pong], len(pong), len(pong))  # no room: a missed pong
            return
        super()._command(c, body)

    def _make_identity(self) -> bytes:
        """An identity for a peer that set none: as libzmq's, a zero byte then a number."""
        self._made_up += 1
        return b"\0" + self._made_up.to_bytes(4, "big")

    def _deliver(self, batch: list) -> None:
        if self._serial:
            batch = self._one_each(batch)
            if not batch:
                return
        for connection, _, frames in batch:
            frames.append(self._outlets.get(connection) or _gone(connection))  # take() hands it out with the frames
        super()._deliver(batch)
        if self._notify is not None:
            self._notify.set()

    # -- serial: one request of a connection at a time (the reading thread's) -----------------

    # The wake-up protocol. A connection is in ``_holding`` while it has requests held or is not
    # read (unregistered); only the reader changes ``_holding``, under ``_holding_lock``. Two
    # things free a connection from other threads: done() (busy cleared) and the writer or
    # _drop (outbox emptied); each first frees it, then, under the lock, looks whether its
    # connection is in ``_holding`` and if so sets the wake-up pipe (_freed). The reader, on
    # every path that holds a connection (_one_each, _read), adds it under the lock and looks
    # at busy and outbox in the same locked section, and sets the pipe itself if it is free:
    # whichever of the two takes the lock second sees the other's change, so a freeing is never
    # missed. The reader, when woken, clears the pipe *before* it scans ``_holding`` (_woken):
    # a freeing before the clear is seen by the scan, one after it sets the pipe again. A
    # failed write (_fail) sets the pipe too, so a held connection marked gone is dropped. An
    # honest client's request (free again before its next one comes) costs no wake-up.

    def _one_each(self, batch: list) -> list:
        """Of ``batch``, the first request of each connection that is free (:meth:`_free`); the
        others wait in their outlet, and their connection is not read until they are queued."""
        passed = []
        for item in batch:
            c = item[0]
            outlet = self._outlets.get(c)
            if outlet is None:
                passed.append(item)  # gone: served, its reply goes nowhere
            elif self._free(outlet):
                outlet.busy = True
                passed.append(item)
            else:
                outlet.held.append(item)
                self._hold(c, outlet)
        return passed

    def _hold(self, c: _Connection, outlet: Outlet) -> None:
        """Put ``c`` in ``_holding``; wake the reader (this thread) if it was freed meanwhile."""
        with self._holding_lock:
            self._holding.add(c)
            freed = not (outlet.busy or outlet.outbox)
        if freed:
            self._wakeup.set()

    @staticmethod
    def _free(outlet: Outlet) -> bool:
        """Nothing of ``outlet``'s connection is waiting or being answered, no reply is unwritten."""
        return not (outlet.busy or outlet.held or outlet.outbox)

    def _read(self, c: _Connection) -> None:
        outlet = self._outlets.get(c)
        if self._serial and outlet is not None and (c in self._holding or not self._free(outlet)):
            if not c.over_budget:
                c.over_budget = True  # as the intake's own pause: unregistered while set
                self._all.unregister(c.sock)
            self._hold(c, outlet)  # not now: _woken lets it be read again once it is free
            return
        super()._read(c)

    def _woken(self) -> None:
        self._wakeup.clear()  # before the scan: see the wake-up protocol above
        for c in list(self._holding):
            outlet = self._outlets.get(c)
            if outlet is None or c.sock.fileno() < 0:
                self._let_go(c)
            elif outlet.gone:  # a write failed: what it sent is served (_drop), what it did not is not read
                self._drop(c, "", log=False)
            elif outlet.busy or outlet.outbox:
                self._stalled.discard(c)  # the intake must not read it again yet
            elif outlet.held:
                item = outlet.held.popleft()
                item[2].append(outlet)
                outlet.busy = True
                super()._deliver([item])
                if self._notify is not None:
                    self._notify.set()
                self._stalled.discard(c)
            else:
                self._let_go(c)
                if c.over_budget or c.end > c.start:
                    self._stalled.add(c)  # the intake reads it again, and parses what its buffer holds
        self._resume_stalled()

    def _let_go(self, c: _Connection) -> None:
        """Take ``c`` out of ``_holding`` (under the lock other threads look at it with)."""
        with self._holding_lock:
            self._holding.discard(c)

    def _refuse(self, c: _Connection, size: int, frame: int) -> None:
        problem = self._problem(c, size, frame)
        heads = c.frames[:self.head_frames]
        c.frames, c.size = [], 0
        refused = self._router_refused()
        if refused is not None:
            refused(self._outlets.get(c) or _gone(c), heads, problem)

    def _drop(self, c: _Connection, reason: str, log: bool = True) -> None:
        """Close ``c``. With ``serial``, its held requests are served, as requests it sent before
        any drop are (a handed-over agent's last bye counts): their replies go nowhere."""
        held: list = []
        with self._out_lock:
            outlet = self._outlets.pop(c, None)
            if outlet is not None:
                outlet.gone = True
                held = list(outlet.held)
                outlet.held.clear()
                self._forget_outbox(outlet)
                if self._identities.get(outlet.identity) is outlet:
                    del self._identities[outlet.identity]
        self._let_go(c)
        super()._drop(c, reason, log)
        if held:
            for item in held:
                item[2].append(outlet)
            super()._deliver(held)
            if self._notify is not None:
                self._notify.set()


def _gone(connection: _Connection) -> Outlet:
    """The outlet of a connection dropped while its last messages were being parsed (a peer that
    broke the grammar right after them): they are still served; their replies go nowhere."""
    outlet = Outlet(connection, b"", "")
    outlet.gone = True
    return outlet


def _unused(peer: str, problem: str) -> None:
    """The intake's own refusal report, which :meth:`ZmtpRouter._refuse` replaces."""


def _address(sock: socket.socket) -> str:
    """The network address a connection comes from ("" over ipc, or if it is gone already)."""
    if sock.family == socket.AF_UNIX:
        return ""
    try:
        return str(sock.getpeername()[0])
    except OSError:
        return ""
