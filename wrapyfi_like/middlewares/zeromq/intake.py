"""A listener's intake: our own ZMTP reader, so no peer can make a listener hold more than its
byte budget.

libzmq applies ``ZMQ_MAXMSGSIZE`` per *frame* and buffers a whole multipart message before the
application sees its first frame, so any peer that can connect to a PULL socket could make it
hold gigabytes (six 300 MB frames of a message that never ends). libzmq has no per-message or
frame-count limit, so a listener does not let libzmq parse what peers send: :class:`ZmtpIntake`
accepts our publishers' unchanged libzmq DEALER sockets (and PUSH sockets) over plain TCP or ipc
sockets, speaking the small part of ZMTP in :mod:`.zmtp`, and checks every frame's size *before*
reading it:

- a message whose codec frames (everything after topic and envelope) would exceed
  ``max_message_size`` bytes, or that would have more than :data:`MAX_MESSAGE_FRAMES` frames, is
  refused when the frame that breaks the limit announces itself: what was read of it is let go,
  the rest is read and thrown away as it arrives (never held), and the refusal is reported once
  (the listener counts it as ``malformed`` and logs it). The connection stays in step and goes on:
  messages after it from the same peer still arrive, as with libzmq;
- a connection holds at most ``max_message_size`` bytes of frames at any time (its queued messages
  and the one being read): beyond that, it is not read until the listener takes its messages, so
  TCP backpressure reaches the publisher; the same happens to every connection while
  ``queue_depth`` messages wait;
- at most :data:`MAX_CONNECTIONS` peers at once; a peer that does not finish its handshake within
  :data:`HANDSHAKE_TIMEOUT` seconds is dropped; one that is not a ZMTP 3 DEALER or PUSH socket
  with the NULL mechanism, or breaks the grammar, is dropped and logged.

To a DEALER peer (a publisher's outlet) the intake writes acks back (:mod:`.acks`): the listener
tells :meth:`ZmtpIntake.delivered` each message it hands to its user, and the reader acks
them, per connection, every :data:`~.acks.ACK_EVERY` messages and within
:data:`~.acks.ACK_INTERVAL` seconds, so the publisher can count what a dead connection lost.

So what peers make an intake hold is at most ``max_message_size`` plus :data:`READ_SIZE` per
connection (and, for messages of many tiny frames, about 200 bytes of Python objects per frame),
whatever they send, plus the few buffers it keeps for large frames (:mod:`.frame_buffers`, at most
32 MiB). Large frames are read straight into a buffer of their size (one copy, kernel to user, as
libzmq does), one used again once nothing refers to it; small frames are cut from one read buffer (an ordinary message whole, in
one copy: :func:`_whole_message`; a peer's repeated message shape by its frame heads' layout,
without walking its frames: :class:`_Layout`).

Who reads (leader/follower). Exactly one thread at a time holds the *reader role* (the lock
``_role``) and reads, parses and acks for every connection; nobody else touches the sockets' read
side or the selectors. A caller waiting in :meth:`ZmtpIntake.receive` with an empty queue takes the
role and reads itself, so a message goes from the socket to its caller with no thread hop and no
GIL hand-off (at 1 KB that hop and hand-off cost more than everything else the intake does); a
message that its read brings whole and alone is not even queued (:meth:`~ZmtpIntake._caller_step`).
The intake's own thread reads only while no caller wants to: it takes the role once no caller has
been in :meth:`~ZmtpIntake.receive` for :data:`READER_LEASE` seconds, so handshakes, pings, acks,
byte budgets and TCP backpressure go on while the listener's thread is busy elsewhere, as libzmq's
I/O thread did; it gives the role up after a step that finds a caller back. A caller that finds the
thread reading asks for the role (``_wanted``, and the wake-up pipe cuts the thread's wait short);
the thread gives it up after the step it is in and signals the caller. Large messages
(:data:`BULK_FROM`) are the exception: while the latest message is large, the thread keeps the role
and reads the next message while the caller works on this one (the kernel's copy of a megabyte then
overlaps the caller's work, which is worth the hop). A caller's wait is cut into
:data:`~..deadlines.SIGNAL_CHECK` slices (Ctrl-C), and :meth:`~ZmtpIntake.close` wakes it through
the same pipe. ``receive(0)`` reads too, without waiting for the sockets (it asks the intake's
thread for the role if need be, and reads until a message is whole), so a ``"latest"`` listener
that drains with it sees every message that has arrived, whoever was reading.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import struct
import threading
import time
import weakref
from collections import deque
from typing import Callable, Optional

from wrapyfi_like.background import start_thread
from wrapyfi_like.exceptions import ClosedError, ConfigurationError
from wrapyfi_like.limits import MAX_FRAMES, MAX_TOPIC_LENGTH
from wrapyfi_like.logs import RateLimitedLog, truncate
from wrapyfi_like.middlewares.deadlines import SIGNAL_CHECK, slice_seconds
from wrapyfi_like.middlewares.handoff import Handoff
from wrapyfi_like.middlewares.zeromq import acks, connections, zmtp
from wrapyfi_like.middlewares.zeromq.frame_buffers import FrameBuffers
from wrapyfi_like.middlewares.zeromq.wakeup import Wakeup

logger = logging.getLogger("wrapyfi_like.zeromq")

READ_SIZE = 64 * 1024
"""Bytes of a connection's read buffer: small frames are cut from it."""
OWN_BUFFER_FROM = 32 * 1024
"""Frames of at least this many bytes are read straight into a buffer of their own."""
MAX_MESSAGE_FRAMES = MAX_FRAMES + 2
"""Frames a message may have: topic, envelope and the codec's :data:`~wrapyfi_like.limits.MAX_FRAMES`."""
MAX_HEAD_FRAME = MAX_TOPIC_LENGTH
"""Bytes the topic and the envelope frame may each take (they are not counted in ``max_message_size``)."""
MAX_CONNECTIONS = 256
"""Peers connected to one listener at once; more are closed as soon as they are accepted."""
HANDSHAKE_TIMEOUT = connections.HANDSHAKE_IVL_MS / 1000
"""Seconds a peer has from connecting to completing its ZMTP handshake."""
DEFAULT_QUEUE_DEPTH = 1000
"""Messages that may wait in the intake unless ``queue_depth`` says otherwise (libzmq's default)."""
BULK_FROM = 256 * 1024
"""Codec bytes from which a message is *large*: while the latest message is, the intake's thread
reads (the next message while the caller works on this one; the kernel's copy of a large message
then overlaps the caller's work, which is worth the thread hop); else the waiting caller does."""
READER_LEASE = acks.ACK_INTERVAL
"""Seconds after a caller last entered or left :meth:`ZmtpIntake.receive` before the intake's own
thread takes the reader role: long enough that a caller looping on ``receive`` keeps it, short
enough that acks and pongs of a busy listener are not late. While a caller is in ``receive`` the
thread does not poll: the caller wakes it as it leaves (once; the thread then checks every
``READER_LEASE`` until a caller is in again), so a listener waiting for rare messages costs
:data:`~..deadlines.SIGNAL_CHECK` wake-ups, not one every ``READER_LEASE``."""
LAYOUT_FRAMES = 16
"""Frames a message may have for its layout to be kept (:class:`_Layout`): what a connection keeps
between messages stays a few hundred bytes, whatever its peer sends."""
LAYOUT_PATIENCE = 64
"""Messages of one size walked in a row before a layout is built, at most: the first time one
is enough, and each layout that fails doubles it, so a peer whose messages keep the same size
but not the same frames (a failed check and a build each time) costs that once in this many
messages."""
_LONG_SIZE = struct.Struct(">Q")
_MORE, _LONG = zmtp.MORE, zmtp.LONG  # module constants read as globals: a lookup less per frame
_OUR_TYPE = {b"DEALER": b"ROUTER", b"PUSH": b"PULL"}
_EMPTY = memoryview(bytearray())  # every empty frame: nothing in it to share
_NO_BUFFER = bytearray()  # a dropped connection's read buffer: its own is let go

Refused = Callable[[str, str], None]
"""Told ``(peer, problem)`` once for every message refused for its size or frame count. A bound
method is held weakly, so the intake's thread does not keep its listener from being collected."""


class _Connection:
    """One peer's socket and where its byte stream stands."""

    __slots__ = ("sock", "peer", "buffer", "view", "start", "end", "greeted", "ready", "deadline",
                 "frames", "size", "refusing", "discard", "big", "big_filled", "big_more",
                 "queued", "over_budget", "acks", "first", "delivered", "acked", "unsent", "settled",
                 "layout", "shape", "same", "patience")

    def __init__(self, sock: socket.socket, peer: str) -> None:
        self.sock = sock
        self.peer = peer
        self.buffer = bytearray(READ_SIZE)
        self.view = memoryview(self.buffer)
        self.start = self.end = 0  # unparsed bytes are buffer[start:end]
        self.greeted = self.ready = False
        self.deadline = time.monotonic() + HANDSHAKE_TIMEOUT
        self.frames: list = []  # of the message being read
        self.size = 0  # its codec bytes so far
        self.refusing = False  # the message being read was refused: its frames are thrown away
        self.discard = 0  # bytes of the current frame still to throw away
        self.big: Optional[memoryview] = None  # a large frame being read into its own buffer
        self.big_filled = 0
        self.big_more = False
        self.queued = 0  # codec bytes of this connection's messages waiting in the intake
        self.over_budget = False  # not read until the listener takes some of its messages
        self.acks = False  # the peer reads acks (a DEALER)
        self.first = 0  # the first sequence number the listener delivered from this connection
        self.delivered = 0  # the latest one (written by the listener's thread)
        self.acked = 0  # the latest one acked
        self.unsent = b""  # the end of a frame the socket had no room for: goes out first
        self.settled = False  # at the last ack tick: nothing queued, everything delivered acked
        self.layout: Optional[_Layout] = None  # of this peer's recent messages (see _Layout)
        self.shape = 0  # bytes of the last message walked
        self.same = 0  # messages walked in a row since one of another shape
        self.patience = 1  # of them that make a layout: doubles at each layout that fails


class ZmtpIntake:
    """Binds ``address`` (``tcp://host:port`` with ``*`` for any port, or ``ipc:///path``) and
    queues the messages of DEALER (and PUSH) peers, as lists of writable memoryviews (one per frame)."""

    peer_types: tuple[bytes, ...] = (b"DEALER", b"PUSH")
    """The ZMTP socket types a peer may announce in its READY (we answer as ``ROUTER`` or ``PULL``)."""
    head_frames = 2
    """Leading frames of a message that are the transport's own (topic, envelope): each bounded
    by :data:`MAX_HEAD_FRAME`, not counted in ``max_message_size``."""
    head_name = "topic or envelope"
    max_connections: Optional[int] = None
    """Peers connected at once; None: :data:`MAX_CONNECTIONS`."""

    def __init__(self, address: str, max_message_size: int, queue_depth: Optional[int], refused: Refused) -> None:
        self._max_message_size = max_message_size
        self._queue_depth = queue_depth or DEFAULT_QUEUE_DEPTH
        self._resume_at = self._queue_depth // 2
        self._refused = weakref.WeakMethod(refused) if hasattr(refused, "__self__") else lambda: refused
        self._log = RateLimitedLog(logger)
        self._listen, self.endpoint, self._path = _bind(address)
        self._lock = threading.Lock()  # the queue, the flags below, each connection's ``queued``
        self._handoff = Handoff(self._lock)  # wakes a waiting receive (one at a time: the listener's lock)
        self._queue: deque[tuple[_Connection, int, list]] = deque()
        self._full = False  # more than queue_depth messages wait: no connection is read
        self._closed = False
        self._role = threading.Lock()  # held by the one thread that reads the sockets (see the module)
        self._caller_reads = False  # the caller holds the role: receive() lets it go, whatever interrupts it
        self._wanted = False  # a caller waits for the intake's thread to give the role up
        self._caller_in = False  # a caller is in a blocking receive()
        self._seen = float("-inf")  # when a caller last entered or left a blocking receive() (monotonic)
        self._bulk = False  # the latest message queued was large (BULK_FROM): the intake's thread reads
        self._idle = threading.Event()  # wakes the intake's thread from its wait for the role
        self._dozing = False  # the intake's thread waits out a caller's receive(): wake it when it leaves
        # a message may skip the queue (_caller_step) only where queuing does nothing else
        self._direct = type(self)._deliver is ZmtpIntake._deliver
        self._bytes_read = 0  # by whoever reads: a caller's receive(0) reads on while it grows
        self._buffers = FrameBuffers()  # for large frames (OWN_BUFFER_FROM); the reader's alone
        self._connections: dict[int, _Connection] = {}
        self.source: Optional[_Connection] = None
        """The connection of the message :meth:`receive` returned last (for :meth:`delivered`)."""
        self._owing: set[_Connection] = set()  # queued or unacked messages: ack ticks run
        self._write_lock = threading.Lock()  # writes to connections, and closing them
        self._ack_at = 0.0  # when acks are due next (monotonic)
        self._handshaking: set[_Connection] = set()
        self._stalled: set[_Connection] = set()  # stopped parsing with bytes left in their buffer
        self._wakeup = Wakeup()  # wakes whoever reads: room again, the role is wanted, or closed
        self._all = selectors.DefaultSelector()  # everything
        self._control = selectors.DefaultSelector()  # what is read while the queue is full
        for selector in (self._all, self._control):
            selector.register(self._listen, selectors.EVENT_READ, None)
            selector.register(self._wakeup.fileno(), selectors.EVENT_READ, self)
        self._thread = start_thread(self._run, f"wrapyfi_like intake {self.endpoint}")

    # -- the listener's side -------------------------------------------------------------------

    def receive(self, timeout: Optional[float]) -> Optional[list[memoryview]]:
        """The next message's frames, or None once ``timeout`` seconds passed (None: no limit;
        0: only one that has arrived already). :class:`ClosedError` once :meth:`close` was called.

        One thread at a time (the listener calls it under its own lock). With the queue empty,
        the caller reads the sockets itself (see the module's docstring); with ``timeout`` 0
        without waiting for the sockets (:meth:`_poll`)."""
        now = time.monotonic()
        entered = False
        try:
            with self._lock:
                if self._closed:
                    raise ClosedError(f"listener on {self.endpoint} is closed")
                if timeout != 0:
                    self._seen = now
                if self._queue:
                    return self._take()
                entered = self._caller_in = True
                # the usual blocking wait takes the role here, not in a second pass under the lock
                reading = timeout != 0 and not self._bulk and self._caller_takes_role()
            if timeout == 0:
                return self._poll(now + READER_LEASE)
            return self._lead(None if timeout is None else now + timeout, reading)
        finally:
            if entered:
                self._leave(timeout != 0)

    def _leave(self, waited: bool) -> None:
        """The caller leaves :meth:`receive`, also when a signal's exception interrupted it: the
        role is let go if it still holds it (or no thread would read the sockets again), and the
        intake's thread is told. After a wait, the thread reads the next message while the caller
        works on this one (bulk), or starts counting READER_LEASE from now (it was waiting for
        this caller to leave)."""
        if self._caller_reads:
            self._caller_reads = False
            self._role.release()
        with self._lock:
            self._caller_in = False
            if waited:
                self._seen = time.monotonic()
            bulk = waited and self._bulk
            dozing, self._dozing = self._dozing, False
        if bulk and not self._role.locked() or dozing:
            self._idle.set()

    def _caller_takes_role(self) -> bool:
        """Take the reader role for the caller if it is free; :meth:`_leave` lets it go if a
        step does not (the step's own ``finally`` does, in :meth:`_read_as_caller`)."""
        if not self._role.acquire(blocking=False):
            return False
        self._caller_reads = True
        return True

    def _lead(self, deadline: Optional[float], reading: bool) -> Optional[list[memoryview]]:
        """Wait for a message until ``deadline``, reading the sockets while holding the role
        (``reading``: the caller holds it already, with the queue empty)."""
        while True:
            if reading:
                frames = self._read_as_caller(_sooner(slice_seconds(deadline), self._until_next_deadline()))
                if frames is not None:
                    if self._closed:
                        raise ClosedError(f"listener on {self.endpoint} is closed")
                    return frames
            with self._lock:
                if self._closed:
                    raise ClosedError(f"listener on {self.endpoint} is closed")
                if self._queue:
                    return self._take()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                bulk = self._bulk
                reading = not bulk and self._caller_takes_role()
                if not reading:  # the intake's thread reads; unless bulk, it gives the role up when woken
                    self._wanted = not bulk
                    self._handoff.arm()
            if not reading:
                (self._idle if bulk else self._wakeup).set()
                self._handoff.wait(left)

    def _poll(self, until: float) -> Optional[list[memoryview]]:
        """``receive(0)`` with the queue empty: read what has arrived, without waiting for more.

        If the intake's thread holds the role it is asked for it, as in :meth:`_lead` (it gives
        the role up after the step it is in; ``_caller_in`` keeps it from taking it back), for at
        most until ``until``; what it read meanwhile is taken from the queue. Then the caller
        steps without waiting while a step reads bytes but completes no message (a large frame
        takes several reads). So a burst that has arrived is all seen by a caller that drains
        with ``receive(0)`` (a ``"latest"`` listener), not one message per call. While messages
        are large the thread keeps the role and queues them; the caller does not wait then."""
        while not self._caller_takes_role():
            with self._lock:
                if self._closed:
                    raise ClosedError(f"listener on {self.endpoint} is closed")
                if self._queue:
                    return self._take()
                left = until - time.monotonic()
                if self._bulk or left <= 0:
                    return None
                self._wanted = True
                self._handoff.arm()
            self._wakeup.set()
            self._handoff.wait(left)
        self._read_as_caller(0, until)
        with self._lock:
            return self._take() if self._queue and not self._closed else None

    def _read_as_caller(self, timeout: float, until: Optional[float] = None) -> Optional[list[memoryview]]:
        """A :meth:`_step` on the caller's thread, which holds the role; lets the role go. With
        ``until`` (``receive(0)``), more steps follow while a step reads bytes but completes no
        message (a large frame takes several reads), up to that time. Without, a blocking caller's
        step (:meth:`_caller_step`), which may return its message directly."""
        try:
            if until is None:
                return self._caller_step(timeout)
            while True:
                before = self._bytes_read
                self._step(timeout)
                if (until is None or self._queue or self._closed or self._bytes_read == before
                        or time.monotonic() >= until):
                    break
        except Exception:  # as on the intake's thread: a bug must not leave the listener half-read
            logger.exception("the intake of listener %s failed; it receives nothing more", self.endpoint)
            self.close()
        finally:
            self._caller_reads = False
            self._role.release()

    def _take(self) -> list[memoryview]:
        """Pop the next message (``_lock`` held); wake the reader if that made room to read again."""
        connection, size, frames = self._queue.popleft()
        self.source = connection
        connection.queued -= size
        resume = self._full and len(self._queue) <= self._resume_at
        if resume:
            self._full = False
        if resume or connection.over_budget:
            self._wakeup.set()
        return frames

    def delivered(self, source: _Connection, seq: int) -> None:
        """The listener handed message ``seq`` from ``source`` (a :attr:`source`) to its user.

        Costs two stores and a comparison. Every :data:`~.acks.ACK_EVERY` messages this thread
        writes the ack itself (the intake's thread, when it reads, may wait for the GIL for
        milliseconds, in which a fast listener delivers hundreds); the rest the reader acks on its
        :data:`~.acks.ACK_INTERVAL` ticks, which run while ``source`` has messages queued or
        unacked (it never needs waking for them: a message queued it)."""
        if not source.first:
            source.first = seq
        source.delivered = seq
        if seq - source.acked >= acks.ACK_EVERY and source.acks:
            self._ack(source)

    def queued(self) -> int:
        """Messages waiting to be received."""
        return len(self._queue)

    def close(self) -> None:
        """Stop: a :meth:`receive` in another thread raises :class:`ClosedError` at once, and
        the intake's thread closes every socket (and removes the ipc file)."""
        with self._lock:
            self._closed = True
            self._queue.clear()
            self._handoff.signal()
        self._wakeup.set()
        self._idle.set()

    def release(self) -> None:
        """Wait (briefly) until the intake's thread has closed the sockets."""
        self.close()
        if threading.current_thread() is not self._thread:
            self._thread.join(5)

    # -- the intake's thread, and the reader's work -------------------------------------------

    def _run(self) -> None:
        try:
            while not self._closed:
                if not self._follow():
                    continue
                try:  # until a caller asks, or is back (it then reads once the queue is empty)
                    while not (self._closed or self._wanted) and self._thread_reads():
                        self._step(self._until_next_deadline())
                finally:
                    with self._lock:
                        self._wanted = False
                        self._role.release()
                        self._handoff.signal()  # the caller that asked for the role
        except Exception:  # a bug here must not leave the listener waiting forever in silence
            logger.exception("the intake of listener %s failed; it receives nothing more", self.endpoint)
        finally:
            with self._lock:
                self._closed = True  # a receive waiting now, or later, raises ClosedError
                self._queue.clear()
                self._handoff.signal()
            self._wakeup.set()  # a caller reading leaves the role at once
            with self._role:
                self._shut()

    def _follow(self) -> bool:
        """Take the reader role if :meth:`_thread_reads` (True); else wait until that could have
        changed (False)."""
        with self._lock:
            if self._thread_reads() and not self._wanted and self._role.acquire(blocking=False):
                return True
            # while a caller is in receive() the role is its own: the caller wakes this thread
            # when it leaves, so a caller waiting long costs no wake-ups every READER_LEASE
            self._dozing = self._caller_in
            wait = SIGNAL_CHECK if self._caller_in else max(READER_LEASE - (time.monotonic() - self._seen), 0.001)
        self._idle.wait(wait)
        self._idle.clear()  # after close() set it, _closed is seen before the next wait
        return False

    def _thread_reads(self) -> bool:
        """Whether the intake's thread should hold the reader role: messages are large
        (:data:`BULK_FROM`), or no caller has been in :meth:`receive` (but for ``receive(0)``)
        for :data:`READER_LEASE`. Read without the lock between the thread's steps: a stale
        answer costs at most one more step."""
        if self._bulk:
            return True
        return not self._caller_in and time.monotonic() - self._seen >= READER_LEASE

    def _step(self, timeout: Optional[float]) -> None:
        """One wait for the sockets (``timeout`` seconds; None: no limit), and what it found to
        do: accept, read, parse, expire handshakes, ack. Only the holder of the role calls it."""
        self._handle((self._control if self._full else self._all).select(timeout))

    def _caller_step(self, timeout: float) -> Optional[list[memoryview]]:
        """:meth:`_step` for a caller that waits with the queue empty: a message that a read brings
        whole and alone (the usual one at 1 KB when messages come one at a time) goes straight to
        the caller, returned here, instead of through the queue (:meth:`_deliver` and
        :meth:`_take` under the lock, and the parser's layers: ~25 % of the intake's time for such
        a message). Anything else is read and queued as by :meth:`_step`; None then."""
        if self._full or not self._direct:
            self._step(timeout)
            return None
        events = self._all.select(timeout)
        frames = None
        if len(events) == 1 and not self._closed:
            c = events[0][0].data
            if (c is not None and c is not self and c.ready and c.start == c.end and c.big is None
                    and not (c.frames or c.refusing or c.discard or c.over_budget) and c.sock.fileno() >= 0):
                frames = self._read_direct(c)
                events = ()
        self._handle(events)
        return frames

    def _read_direct(self, c: _Connection) -> Optional[list[memoryview]]:
        """Read ``c`` (nothing of it unparsed, nothing of it queued: the queue is empty); its
        message if the read holds exactly one whole ordinary message, else None (parsed and
        queued as by :meth:`_read`)."""
        c.start = c.end = 0
        try:
            got = c.sock.recv_into(c.view)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as error:
            self._drop(c, f"its connection failed: {error}", log=False)
            return None
        if not got:
            self._drop(c, "", log=False)
            return None
        c.end = got  # the bytes are the connection's at once
        self._bytes_read += got
        try:
            whole = self._whole(c, 0, got)
        except BaseException:  # a signal's exception (Ctrl-C): the bytes go to the queue, not lost
            self._parse(c)
            raise
        if whole is None or whole[0] != got:
            self._parse(c)
            return None
        c.start = got
        if c.acks:
            self._owing.add(c)  # ack ticks run until it is delivered and acked
            c.settled = False  # nothing marks it queued: a tick before its delivery must not let it go
        self.source = c
        return whole[2]

    def _handle(self, events: list) -> None:
        """What a wait for the sockets found to do: accept, read, parse; then expire handshakes, ack."""
        for key, _ in events:
            if self._closed:
                break
            if key.data is None:
                self._accept()
            elif key.data is self:
                self._woken()
            elif (not self._full or not key.data.ready) and key.data.sock.fileno() >= 0:
                self._read(key.data)  # a handshake is read while the queue is full (_control's own)
        if self._handshaking:
            self._expire_handshakes()
        if self._owing and time.monotonic() >= self._ack_at:
            self._acknowledge()

    def _until_next_deadline(self) -> Optional[float]:
        if not self._handshaking:  # the usual case, on the path of every message
            return max(0.0, self._ack_at - time.monotonic()) if self._owing else None
        deadline = min(c.deadline for c in self._handshaking)
        if self._owing:
            deadline = min(deadline, self._ack_at)
        return max(0.0, deadline - time.monotonic())

    def _acknowledge(self) -> None:
        """Ack, per connection, what the listener delivered, when :data:`~.acks.ACK_INTERVAL` is up.

        A connection leaves ``_owing`` after two ticks in a row found nothing of it queued and
        everything it delivered acked: the listener's thread takes a message from the queue a
        moment before it records the delivery, and one tick could fall in between."""
        now = time.monotonic()
        if now < self._ack_at:
            return
        self._ack_at = now + acks.ACK_INTERVAL
        for c in list(self._owing):
            if c.acks:
                self._ack(c)
            else:
                with self._write_lock:
                    self._write(c, b"")  # the rest of a pong
            settled = not c.queued and (c.delivered == c.acked or not c.acks) and not c.unsent
            if settled and c.settled or c.sock.fileno() < 0:
                self._owing.discard(c)
                c.settled = False
            else:
                c.settled = settled

    def _ack(self, c: _Connection) -> None:
        """Write an ack of what the listener delivered from ``c`` (from either thread)."""
        with self._write_lock:
            delivered = c.delivered
            if delivered == c.acked and not c.unsent:
                return
            frame = acks.ZMTP_ACK + acks.pack(c.first, delivered) if delivered != c.acked else b""
            if self._write(c, frame):
                c.acked = delivered

    def _write(self, c: _Connection, frame: bytes) -> bool:
        """Write a whole frame to ``c`` without blocking, after what is left of an earlier one;
        False if none of ``frame`` went (a peer that reads nothing; acks are cumulative, so the
        next one replaces it). A frame begun is always finished first, so the stream stays in step.
        Called holding ``_write_lock``: both threads write, and :meth:`_drop` closes under it."""
        if c.sock.fileno() < 0:
            return False
        data = c.unsent + frame
        try:
            written = c.sock.send(data)
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError:
            return False  # the connection failed: reading it finds out and drops it
        if written < len(c.unsent):
            c.unsent = c.unsent[written:]
            return False
        c.unsent = data[written:]
        return written > len(data) - len(frame) or not frame

    def _expire_handshakes(self) -> None:
        if not self._handshaking:
            return
        now = time.monotonic()
        for connection in [c for c in self._handshaking if c.deadline <= now]:
            self._drop(connection, "it did not complete its handshake in time", log=False)

    def _woken(self) -> None:
        self._wakeup.clear()
        self._resume_stalled()

    def _resume_stalled(self) -> None:
        """Read again the connections that stopped with bytes left (the wake-up pipe is cleared
        first, by :meth:`_woken`: a wake-up sent while this runs is seen by the next wait)."""
        for connection in list(self._stalled):
            if connection.over_budget and connection.sock.fileno() >= 0:
                connection.over_budget = False
                self._all.register(connection.sock, selectors.EVENT_READ, connection)
            self._stalled.discard(connection)
            if connection.sock.fileno() >= 0:
                self._parse(connection)

    def _accept(self) -> None:
        try:
            sock, address = self._listen.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:  # out of file descriptors: leave it in the backlog for now
            self._log.warning(self.endpoint, "accept", "listener %s cannot accept a connection: %s",
                              self.endpoint, error)
            return
        peer = _peer_name(sock, address)
        limit = self.max_connections or MAX_CONNECTIONS
        if len(self._connections) >= limit:
            self._log.warning(self.endpoint, "connections", "listener %s refused a connection from %s: "
                              "it has %d already (the limit)", self.endpoint, peer, limit)
            sock.close()
            return
        try:
            sock.setblocking(False)
            if sock.family != socket.AF_UNIX:
                _keep_alive(sock)
                # acks go out at once, not held back by Nagle (a killed listener's kernel drops
                # what it still holds); libzmq sets this on its own TCP sockets too
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.send(zmtp.GREETING)
        except OSError:
            sock.close()
            return
        connection = _Connection(sock, peer)
        self._connections[sock.fileno()] = connection
        self._handshaking.add(connection)
        for selector in (self._all, self._control):
            selector.register(sock, selectors.EVENT_READ, connection)

    def _read(self, c: _Connection) -> None:
        try:
            if c.big is not None:
                while c.big_filled < len(c.big):
                    got = c.sock.recv_into(c.big[c.big_filled:])
                    if not got:
                        return self._drop(c, "", log=False)
                    c.big_filled += got
                    self._bytes_read += got
                c.frames.append(c.big)
                c.big = None
                if not c.big_more:
                    self._deliver([(c, c.size, c.frames)])
                    c.frames, c.size = [], 0
                return self._parse(c)
            if c.start == c.end:
                c.start = c.end = 0
            elif c.end == READ_SIZE:  # an unfinished frame header or small frame at the end
                c.buffer[:c.end - c.start] = c.view[c.start:c.end]
                c.start, c.end = 0, c.end - c.start
            got = c.sock.recv_into(c.view[c.end:])
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            return self._drop(c, f"its connection failed: {error}", log=False)
        if not got:
            return self._drop(c, "", log=False)
        c.end += got
        self._bytes_read += got
        self._parse(c)

    def _parse(self, c: _Connection) -> None:
        """Take every whole frame in ``c``'s buffer; stop at a partial one or when reading must
        pause (the queue is full, or ``c``'s byte budget is taken)."""
        while True:
            batch: list = []
            try:
                room = self._parse_some(c, batch, self._queue_depth + 1 - len(self._queue) if c.ready else 1)
            except (zmtp.ProtocolError, OSError) as error:
                self._drop(c, str(error))
                room = True
            finally:
                if batch:
                    self._deliver(batch)
            if room or self._full or c.sock.fileno() < 0:
                break  # else the listener took messages while we parsed: go on
        if (self._full or c.over_budget) and c.end > c.start:
            self._stalled.add(c)

    def _parse_some(self, c: _Connection, batch: list, room: int) -> bool:
        """Parse into ``batch`` up to ``room`` whole messages; False if it stopped for lack of room.

        The queue only shrinks while this runs (the listener takes from it), so ``room`` is
        never more than there is. The loop keeps ``start`` in a local: it runs per frame.
        """
        buffer = c.buffer
        start, end = c.start, c.end
        limit = self._max_message_size
        heads = self.head_frames
        held = c.queued
        try:
            while True:
                if (c.over_budget or self._full) and c.ready:  # a handshake goes on: it queues nothing
                    return True
                if len(batch) >= room:
                    return False
                if c.ready and not (c.frames or c.refusing or c.discard):
                    whole = self._whole(c, start, end)
                    if whole is not None and not (held and held + whole[1] > limit):
                        start, counted, frames = whole
                        batch.append((c, counted, frames))
                        held += counted
                        if start == end:  # the usual end of a read: nothing more to parse
                            return True
                        continue
                available = end - start
                if c.discard:
                    skipped = min(c.discard, available)
                    start += skipped
                    c.discard -= skipped
                    if c.discard:
                        return True
                    continue
                if available < 2:
                    return True
                if not c.greeted:
                    if available < zmtp.GREETING_SIZE:
                        return True
                    zmtp.check_greeting(buffer[start:start + zmtp.GREETING_SIZE])
                    start += zmtp.GREETING_SIZE
                    c.greeted = True
                    continue
                flags = buffer[start]
                if flags & zmtp.LONG:
                    if available < 9:
                        return True
                    (size,) = _LONG_SIZE.unpack_from(buffer, start + 1)
                    head = 9
                else:
                    size, head = buffer[start + 1], 2
                if flags > zmtp.MORE | zmtp.LONG:  # a command, or bits that must be zero
                    if flags & ~zmtp.FLAG_BITS:
                        raise zmtp.ProtocolError(f"a frame with flags {flags:#04x}")
                    if size > zmtp.MAX_COMMAND_SIZE:
                        raise zmtp.ProtocolError(f"a command of {size} bytes")
                    if available < head + size:
                        return True
                    body = bytes(buffer[start + head:start + head + size])
                    start += head + size
                    self._command(c, body)
                    continue
                if not c.ready:
                    raise zmtp.ProtocolError("a message before READY")
                more = flags & zmtp.MORE
                if c.refusing:
                    start += head
                    c.discard = size
                    c.refusing = more
                    continue
                frames = c.frames
                if len(frames) >= heads:
                    counted = c.size + size
                    over = counted > limit or len(frames) >= MAX_MESSAGE_FRAMES
                else:  # topic and envelope: not counted, bounded on their own
                    counted, over = 0, size > MAX_HEAD_FRAME
                if over:
                    self._refuse(c, counted, size)
                    start += head
                    c.discard = size
                    c.refusing = more
                    continue
                if held and held + counted > limit:
                    self._pause(c, batch)  # its byte budget is taken by messages not yet received
                    held = c.queued
                    continue
                if size >= OWN_BUFFER_FROM:
                    frame = self._buffers.take(size)
                    have = min(available - head, size)
                    frame[:have] = c.view[start + head:start + head + have]
                    start += head + have
                    if have < size:
                        c.big, c.big_filled, c.big_more = frame, have, bool(more)
                        c.size = counted
                        return True
                elif available < head + size:
                    return True
                elif size:
                    frame = memoryview(buffer[start + head:start + head + size])
                    start += head + size
                else:
                    frame = _EMPTY
                    start += head
                frames.append(frame)
                if more:
                    c.size = counted
                else:
                    batch.append((c, counted, frames))
                    held += counted
                    c.frames, c.size = [], 0
        finally:
            c.start = start

    def _whole(self, c: _Connection, start: int, end: int) -> Optional[tuple[int, int, list]]:
        """:func:`_whole_message` of ``c``'s buffer at ``start``, checked against the layout of
        ``c``'s recent messages first (:class:`_Layout`): a peer sends the same kind of message
        again and again, and then the frame heads need not be walked one by one."""
        layout = c.layout
        if layout is not None and end - start >= layout.size:  # else the rest is still to come
            whole = layout.match(c.buffer, start)
            if whole is not None:
                return whole
            c.layout = None  # the peer's messages change: walk them until enough agree again
            c.same, c.patience = 0, min(2 * c.patience, LAYOUT_PATIENCE)
        whole = _whole_message(c.buffer, start, end, self._max_message_size, self.head_frames)
        if whole is not None:
            size = whole[0] - start
            if size != c.shape:
                c.shape, c.same = size, 0
            else:
                c.same += 1
                if c.same >= c.patience:
                    c.layout = _Layout.of(c.buffer, start, whole)
                    if c.layout is None:  # a message no layout is kept for: try again less often
                        c.same, c.patience = 0, min(2 * c.patience, LAYOUT_PATIENCE)
        return whole

    def _deliver(self, batch: list) -> None:
        """Queue whole messages ``[(connection, size, frames)]`` for the listener."""
        with self._lock:
            if self._closed:
                return
            self._queue.extend(batch)
            self._bulk = batch[-1][1] >= BULK_FROM
            for connection, size, _ in batch:
                connection.queued += size
                if connection.acks:
                    self._owing.add(connection)  # ack ticks run until it is delivered and acked
            if len(self._queue) > self._queue_depth:
                self._full = True
            self._handoff.signal()

    def _refuse(self, c: _Connection, size: int, frame: int) -> None:
        problem = self._problem(c, size, frame)
        c.frames, c.size = [], 0
        refused = self._refused()
        if refused is not None:
            refused(c.peer, problem)

    def _problem(self, c: _Connection, size: int, frame: int) -> str:
        """Why the message being read on ``c`` is refused at a ``frame``-byte frame (``size``: its counted bytes)."""
        if len(c.frames) >= MAX_MESSAGE_FRAMES:
            return f"a message of more than {MAX_MESSAGE_FRAMES} frames (the limit)"
        if len(c.frames) < self.head_frames:
            return f"a {self.head_name} frame of {frame} bytes (the limit is {MAX_HEAD_FRAME})"
        return f"a message of more than {size} bytes; max_message_size is {self._max_message_size}"

    def _pause(self, c: _Connection, batch: list) -> None:
        """Stop reading ``c`` until the listener takes its messages (``batch`` is queued first)."""
        if batch:
            self._deliver(batch)
            batch.clear()
        with self._lock:
            if c.queued:  # the listener may have taken them meanwhile
                c.over_budget = True
        if c.over_budget:
            self._all.unregister(c.sock)

    def _command(self, c: _Connection, body: bytes) -> None:
        if not c.ready:
            peer_type = zmtp.check_ready(body, self.peer_types)
            c.sock.send(zmtp.ready(_OUR_TYPE[peer_type]))
            c.acks = peer_type == b"DEALER"
            c.ready = True
            self._handshaking.discard(c)
            self._control.unregister(c.sock)
            return
        name, data = zmtp.split_command(body)
        if name == b"PING":
            with self._write_lock:
                self._write(c, zmtp.pong(data))  # no room: the peer misses a pong, nothing else
            if c.unsent:
                self._owing.add(c)  # the rest of it goes out with the next acks
        elif name == b"ERROR":
            raise zmtp.ProtocolError("the peer sent ERROR")

    def _drop(self, c: _Connection, reason: str, log: bool = True) -> None:
        """Close ``c``; its unfinished message goes with it, its queued messages stay."""
        if c.sock.fileno() < 0:
            return
        if log:
            self._log.warning(c.peer, "protocol", "listener %s dropped the connection from %s: %s",
                              self.endpoint, c.peer, truncate(reason))
            if c.greeted:
                try:
                    c.sock.send(zmtp.error(reason))
                except OSError:
                    pass
        for selector in (self._all, self._control):
            try:
                selector.unregister(c.sock)
            except (KeyError, ValueError):
                pass
        self._connections.pop(c.sock.fileno(), None)
        self._stalled.discard(c)
        self._owing.discard(c)
        self._handshaking.discard(c)
        with self._write_lock:  # the listener's thread may be writing an ack to it
            c.sock.close()
        # what is unparsed goes with it; a listener may keep this object (publisher ids) a while
        c.frames, c.big, c.layout = [], None, None
        c.buffer, c.view, c.start, c.end = _NO_BUFFER, _EMPTY, 0, 0

    def _shut(self) -> None:
        for connection in list(self._connections.values()):
            self._drop(connection, "", log=False)
        self._buffers.clear()
        self._all.close()
        self._control.close()
        self._listen.close()
        if self._path is not None:
            try:
                os.unlink(self._path)
            except OSError:
                pass
        self._wakeup.close()


def _sooner(first: float, second: Optional[float]) -> float:
    return first if second is None else min(first, second)


class _Layout:
    """Where the frame heads of one ordinary message (:func:`_whole_message`) are, and what they
    say: a message whose heads say the same at the same places has the same frames, sizes and
    flags, so it is within every limit that one was, and is cut without walking its frames.

    One ``struct`` call reads every head at once and one comparison checks them, so a 4-frame
    1 KB message takes ~2.0 µs instead of ~3.2. Built once a peer sent two messages of the same
    size in a row; dropped at the first message that does not match, and rebuilt after ever more
    messages of one size (:data:`LAYOUT_PATIENCE`), so a peer whose messages keep changing costs
    a failed check and a build (~8 µs) only now and then.
    """

    __slots__ = ("_heads", "_expected", "size", "counted", "_spans")

    def __init__(self, heads: struct.Struct, expected: tuple, size: int, counted: int, spans: list) -> None:
        self._heads = heads.unpack_from
        self._expected = expected
        self.size = size
        self.counted = counted
        self._spans = spans

    @classmethod
    def of(cls, buffer: bytearray, start: int, whole: tuple[int, int, list]) -> Optional[_Layout]:
        """The layout of the message ``whole`` (from :func:`_whole_message`) at ``start``; None
        if it has an empty frame (shared as ``_EMPTY``, never cut from the message) or more than
        :data:`LAYOUT_FRAMES` frames."""
        position, counted, frames = whole
        if len(frames) > LAYOUT_FRAMES:
            return None
        layout, expected, spans = ["<"], [], []
        at = after = start
        for frame in frames:
            length = len(frame)
            if not length:
                return None
            head = 9 if buffer[at] & _LONG else 2
            layout.append(f"{at - after}x{head}s")
            expected.append(bytes(buffer[at:at + head]))
            after = at + head
            spans.append((after - start, after - start + length))
            at = after + length
        return cls(struct.Struct("".join(layout)), tuple(expected), position - start, counted, spans)

    def match(self, buffer: bytearray, start: int) -> Optional[tuple[int, int, list]]:
        """As :func:`_whole_message` for a message of this layout at ``start`` (the buffer holds
        :attr:`size` bytes from there); None if the heads there say anything else."""
        if self._heads(buffer, start) != self._expected:
            return None
        size = self.size
        whole = memoryview(buffer[start:start + size])
        return start + size, self.counted, [whole[first:last] for first, last in self._spans]


def _whole_message(buffer: bytearray, start: int, end: int, limit: int,
                   heads: int) -> Optional[tuple[int, int, list]]:
    """``(next start, codec bytes, frames)`` of the message at ``start`` if the buffer holds all of
    it and it is an ordinary one: ``heads`` head frames (topic and envelope, or a request id),
    then data frames only, each smaller than :data:`OWN_BUFFER_FROM`, within every limit.
    Anything else (None) is left to the frame-by-frame parser, which then starts from the same
    place: nothing is consumed or changed here.

    The common small message (1 KB arrays at tens of thousands a second) takes this path: one
    copy of the whole message out of the read buffer, its frames views into that copy (a user's
    array then keeps the message's ~100 bytes of topic, envelope and header alive with it), and
    per frame only the checks a frame needs (a 4-frame 1 KB message: 4.3 -> 4.1 µs at low load;
    most of what is left is allocating the copy and one view per frame). A short frame (under
    256 bytes) is within both per-frame size limits, so only a long frame's size is checked
    (3.5 -> 3.2 µs thread CPU under load).
    """
    spans: list = []  # (first byte, end) of each frame's data, from start
    position = start
    counted = 0
    while True:
        if end - position < 2:
            return None
        flags = buffer[position]
        if flags <= _MORE:  # a short frame, the usual: under 256 bytes, so within both size limits
            size = buffer[position + 1]
            position += 2
        elif flags <= _MORE | _LONG:
            if end - position < 9:
                return None
            (size,) = _LONG_SIZE.unpack_from(buffer, position + 1)
            position += 9
            if size >= OWN_BUFFER_FROM or size > MAX_HEAD_FRAME and len(spans) < heads:
                return None
        else:  # a command, or bits that must be zero
            return None
        last = position + size
        if last > end:
            return None
        spans.append((position - start, last - start))
        position = last
        if len(spans) > heads:
            counted += size
            if counted > limit or len(spans) > MAX_MESSAGE_FRAMES:
                return None
        if not flags & _MORE:
            break
    whole = memoryview(buffer[start:position])
    return position, counted, [whole[first:last] if first != last else _EMPTY for first, last in spans]


def _bind(address: str) -> tuple[socket.socket, str, Optional[str]]:
    """A listening non-blocking socket for ``address``, its endpoint, and its ipc path if any."""
    if address.startswith("ipc://"):
        path = address[len("ipc://"):]
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
        except OSError:
            sock.close()
            raise  # the caller names the setting at fault (settings.ZeroMQSettings.bind)
        endpoint = address
    elif address.startswith("tcp://"):
        host, _, port = address[len("tcp://"):].rpartition(":")
        host = host[1:-1] if host.startswith("[") else host
        # as libzmq without ZMQ_IPV6 (our publishers' setting): IPv4 unless the address is IPv6
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            family, kind, proto, _, socket_address = socket.getaddrinfo(
                None if host == "*" else host, 0 if port == "*" else int(port), family,
                socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        except ValueError as error:
            raise ConfigurationError(f"cannot bind {address}: {error}") from None
        sock = socket.socket(family, kind, proto)
        # as libzmq does: a fixed port whose earlier connections linger in TIME_WAIT can be bound again
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(socket_address)
        except OSError:
            sock.close()
            raise  # the caller names the setting at fault (settings.ZeroMQSettings.bind)
        bound = sock.getsockname()
        endpoint = f"tcp://[{bound[0]}]:{bound[1]}" if family == socket.AF_INET6 else f"tcp://{bound[0]}:{bound[1]}"
        path = None
    else:
        raise ConfigurationError(f"cannot bind {address}: a listener binds tcp:// or ipc:// addresses")
    sock.listen(MAX_CONNECTIONS)
    sock.setblocking(False)
    return sock, endpoint, path


def _keep_alive(sock: socket.socket) -> None:
    """The kernel's liveness probes (values of :mod:`.connections`), so a publisher whose host
    vanished does not keep its connection, and its place among :data:`MAX_CONNECTIONS`, forever."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", connections.TCP_KEEPALIVE_IDLE_S),
                          ("TCP_KEEPINTVL", connections.TCP_KEEPALIVE_INTVL_S),
                          ("TCP_KEEPCNT", connections.TCP_KEEPALIVE_CNT)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def _peer_name(sock: socket.socket, address) -> str:
    """Who a peer is, for log lines and their rate limit: its host (not its port, which changes
    with every reconnect), or for ipc its process id."""
    if sock.family == socket.AF_UNIX:
        try:
            pid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
            return f"local process {pid}"
        except (OSError, AttributeError):
            return "a local process"
    return str(address[0])
