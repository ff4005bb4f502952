"""ZeroMQ listener transport: binds an intake per topic, announces it, receives frames.

The intake is our own ZMTP reader (:mod:`.intake`), which bounds what any peer can make it hold;
with CURVE it is libzmq's ROUTER socket (:mod:`.pull_intake`), which authenticates peers first.
Either one acks to each publisher what this listener delivered (:meth:`recv` tells it), so a
publisher can count what a connection that drops took with it (:mod:`.acks`).

Every message is ``[topic, envelope, header, *buffers]`` (docs/wire.md). The listener checks the
topic and the envelope of each one before the codec sees it: a message that is not one of ours is
*malformed* (counted, logged at most once per 10 s per kind, skipped); the envelope's sequence
number tells a gap (*missed*: counted exactly, logged) from a repeat (*duplicate*: counted, never
returned), so neither loss nor reordering reaches the user unnoticed. A publisher id counts only
from the connection that used it first while that connection is open (:mod:`.senders`): another
peer's message under it is malformed, so no peer can move a publisher's sequence. Each message is
counted once: when that peer turns out to be the publisher itself, reconnected while its old
connection was half-open, the gap its refused messages leave is not counted again as missed.

``backpressure="latest"`` publishers flag their messages :data:`~..envelope.LATEST`: when such a
message is read, the listener also reads what else is already waiting and returns the newest
message of that publisher, counting the older ones it skipped as *dropped* (the publisher chose
that; they are not *missed*), also among the messages a reconnect's deferral releases at once.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from typing import Optional

import zmq

from wrapyfi_like.exceptions import ClosedError, DecodeError
from wrapyfi_like.limits import DEFAULT_MAX_MESSAGE_SIZE, MAX_SKIPPED_WITHOUT_WAIT
from wrapyfi_like.logs import RateLimitedLog, truncate
from wrapyfi_like.middlewares import envelope as envelopes
from wrapyfi_like.middlewares.base import ListenerTransport
from wrapyfi_like.middlewares.deadlines import deadline_after, remaining_seconds, slice_seconds
from wrapyfi_like.middlewares.envelope import (DEFERRED, FOREIGN, LATEST, SHM, BoundSequenceCheck, Envelope,
                                               ListenerCounts)
from wrapyfi_like.middlewares.zeromq import lifecycle
from wrapyfi_like.middlewares.zeromq.curve import Key, consumer_keys
from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent
from wrapyfi_like.middlewares.zeromq.errors import MapsZMQErrors, maps_own_errors, raise_mapped
from wrapyfi_like.middlewares.zeromq.discovery.waiting import expect_peer
from wrapyfi_like.middlewares.zeromq.intake import ZmtpIntake
from wrapyfi_like.middlewares.zeromq.keys import listener_key, topic_frame
from wrapyfi_like.middlewares.zeromq.pull_intake import PullIntake
from wrapyfi_like.middlewares.zeromq.senders import ConnectionBinding
from wrapyfi_like.middlewares.zeromq.settings import ZeroMQSettings
from wrapyfi_like.middlewares.zeromq.shm_intake import ShmIntake

logger = logging.getLogger("wrapyfi_like.zeromq")

LATEST_HOLD = 4
"""Messages a listener holds while it looks for the newest ``"latest"`` message: reading stops
once this many messages (from different publishers, or not flagged ``LATEST``) are held, so a
peer cannot make it hold more than ``LATEST_HOLD + 1`` messages this way."""
LATEST_READS = 1024
"""Messages one call reads ahead at most while looking for the newest: a publisher faster than
the reader cannot keep a call from returning."""
MAX_DEFERRED = 256
"""Messages a listener holds back while a reconnected publisher's old connection still delivers
(:data:`~..envelope.DEFERRED`); past this many it stops waiting: a message under an id whose sender
is still there is refused (malformed), and what an old connection delivers after its successor's
messages counts as duplicate. A sender it stopped waiting for is not waited for again while it
stays (:attr:`~..envelope.BoundSequenceCheck.waiting`)."""
MAX_DEFERRED_BYTES = 64 * 1024 * 1024
"""Bytes of messages a listener holds back at most; past this it stops waiting as past
:data:`MAX_DEFERRED` (a deferral must not pin hundreds of large messages)."""
DEFER_TIMEOUT = 1.0
"""Seconds a deferral lasts at most without progress: since the first message held back, or since
a message of a sender the deferred ones wait for last came through (was released, or taken by the
caller). An old connection's tail keeps coming as fast as the listener reads (a 100 Hz reader takes
2 s for 200 messages, and loses none), while a sender that stops in the middle of a message would
otherwise keep every message (``hold`` is per listener: every publisher's) waiting for as long as
it likes. Past it the listener stops waiting as past :data:`MAX_DEFERRED`."""
MAX_DEFER_AGE = 10.0
"""Seconds a deferral lasts at most, progress or not: a sender the deferred messages wait for can
keep sending while its connection stays open (a forger that finishes one message and begins the
next), and a forged message can be made to wait for a busy honest publisher, whose every message
is progress. An honest reconnect's tail of a few hundred messages takes seconds only for a reader
at a slow application pace (200 messages at 10 ms: 2 s). Past it the listener stops waiting as
past :data:`MAX_DEFERRED`."""


class ZeroMQListenerTransport(MapsZMQErrors, ListenerCounts, ListenerTransport, role="listener"):
    """Binds a socket for one topic and announces it to ``session`` (this process's discovery
    agent), so publishers of that topic connect to it.

    ``max_message_size`` bounds what one message may make this process hold (see
    :mod:`~wrapyfi_like.middlewares.zeromq.intake`); ``queue_depth`` is how many messages may
    wait here unread (None: 1000, libzmq's default). ``bind_port`` is the tcp port to bind (else
    one of ``WRAPYFI_LIKE_BIND_PORTS``, else one the system picks; see :mod:`.settings`).
    """

    def __init__(self, topic: str, carrier: str = "tcp", info: Optional[dict] = None,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE, queue_depth: Optional[int] = None,
                 curve_server_key: Optional[Key] = None, *, bind_port: Optional[int] = None,
                 session: NodeAgent) -> None:
        self.topic = topic
        self._topic_frame = topic_frame(topic)
        self._max_message_size = max_message_size
        self._lock = threading.Lock()  # held while receiving; close() takes it to close the socket
        self._close_lock = threading.Lock()
        self._count_lock = threading.Lock()  # the intake's thread reports refusals while we count
        self._closing = False
        self._start_counting()
        # read ahead while looking for the newest "latest": (envelope, body, the intake's source)
        self._held: deque[tuple[Envelope, list, object]] = deque()
        # held back for a publisher's previous connection, and everything read after them, in order
        self._deferred: deque[tuple[Envelope, list, object]] = deque()
        self._deferred_since = 0.0  # the first message held back, or the last one of a sender it waits for
        self._deferred_first = 0.0  # when the first message now in _deferred was held back (MAX_DEFER_AGE)
        self._log = RateLimitedLog(logger)
        keys = consumer_keys(curve_server_key)

        def open_intake(address: str) -> str:
            if keys is None:
                self._intake = ZmtpIntake(address, max_message_size, queue_depth, self._refused)
            else:
                self._intake = PullIntake(address, max_message_size, queue_depth, self._refused, keys)
            return self._intake.endpoint

        self.endpoint = ZeroMQSettings.from_environment().bind(open_intake, carrier, bind_port)
        if keys is None:  # each publisher id belongs to the connection that used it first (nothing received yet)
            self._sequence = BoundSequenceCheck(ConnectionBinding(), _reclaimed_log(self._log, topic))
        weakref.finalize(self, self._intake.close)  # a listener nobody closed stops reading when collected
        self._agent = session
        # the inbox is announced first, so a publisher never sees this listener without it
        self._shm = ShmIntake(self, carrier, session)
        self._announcement = self._agent.announce(listener_key(topic), self.endpoint, info or {})
        self._peer_check = expect_peer("listener", topic)  # a WARNING if no publisher ever shows up
        lifecycle.track(self)

    @maps_own_errors  # per message: the generic wrapper would cost ~0.5 µs a call
    def recv(self, timeout: Optional[float]) -> Optional[list[memoryview]]:
        """The next message's ``[header, *buffers]``, or None if ``timeout`` seconds pass first.

        ``timeout=None`` waits as long as it takes; :meth:`close` from another thread ends the wait
        with :class:`ClosedError`. The buffers are the received frames themselves (zero-copy,
        writable). Malformed messages and duplicates are skipped here (counted); right after a
        message is returned, :attr:`last_envelope` is its envelope.
        """
        try:
            with self._lock:
                if self._closing:
                    raise ClosedError(f"listener on {self.topic} is closed")
                deadline = deadline_after(timeout)  # one for the whole call, however it goes
                if self._held or self._deferred:
                    held = self._next_held(deadline)
                    if held is None:
                        return self._timed_out()
                    envelope, body, source = held
                    if envelope[2] & LATEST:  # read while others waited: a newer one may be there
                        envelope, body, source = self._newest(held, deadline)
                else:
                    if timeout is None:
                        message = self._check(self._intake.receive(None))
                        while message is None and not self._held and not self._deferred:
                            message = self._check(self._intake.receive(None))  # skipped: counted
                    else:
                        message = self._receive_within(deadline)
                    if message is None:  # timed out, or read into _held or _deferred
                        held = self._next_held(deadline) if self._held or self._deferred else None
                        if held is None:
                            return self._timed_out()
                        envelope, body, source = held
                        if envelope[2] & LATEST:
                            envelope, body, source = self._newest(held, deadline)
                    else:
                        envelope, body = message
                        source = self._intake.source
                        if envelope[2] & LATEST:  # flags
                            envelope, body, source = self._newest((envelope, body, source), deadline)
                self._intake.delivered(source, envelope[1])  # the publisher hears of it (acks)
                self.received += 1
                self.last_envelope = envelope
                return body
        except zmq.ZMQError as error:  # from libzmq's intake (CURVE); mapped here, not by a wrapper
            raise_mapped(self, error)

    def _timed_out(self) -> None:
        """Nothing to return: a wait that read nothing lets previous senders that are done go."""
        self._sequence.settle()
        return None

    def _receive_within(self, deadline: float) -> Optional[tuple[Envelope, list]]:
        """The next message not skipped, or None once ``deadline`` has passed.

        Skipped messages end the wait too once the deadline has passed and
        :data:`~wrapyfi_like.limits.MAX_SKIPPED_WITHOUT_WAIT` were skipped, so a peer sending bad
        messages faster than they are refused cannot hold a bounded wait (or ``recv(0)``) forever.
        """
        skipped = 0
        while True:
            frames = self._intake.receive(remaining_seconds(deadline))
            if frames is None:
                return None
            message = self._check(frames)
            if message is not None or self._held or self._deferred:
                return message
            skipped += 1
            if skipped >= MAX_SKIPPED_WITHOUT_WAIT and time.monotonic() >= deadline:
                return None

    def _newest(self, message: tuple[Envelope, list, object],
                deadline: Optional[float]) -> tuple[Envelope, list, object]:
        """Read what is already waiting; keep only the newest message of each ``LATEST`` publisher.

        ``message`` is the first to deliver (it goes before anything in ``_held``). Returns the
        first message to deliver; the others stay in ``_held`` in arrival order. While messages are
        deferred (each read then offers them again) it reads no further once ``deadline`` passed.
        """
        self._held.appendleft(message)
        for _ in range(LATEST_READS):
            if len(self._held) > LATEST_HOLD:
                break
            if self._deferred and deadline is not None and time.monotonic() >= deadline:
                break
            frames = self._intake.receive(0)
            if frames is None:
                break
            checked = self._check(frames)  # what a deferral releases meanwhile goes through _hold
            if checked is not None:
                self._hold((*checked, self._intake.source))
        return self._take_held()

    def _hold(self, message: tuple[Envelope, list, object]) -> None:
        """Put ``message`` last in ``_held``; a ``LATEST`` one replaces the older ``LATEST`` message
        of its publisher held there (counted ``dropped``: the publisher chose that), also when a
        reconnect's deferral releases many at once."""
        envelope = message[0]
        if envelope.flags & LATEST:
            for index, (held, _, _) in enumerate(self._held):
                if held.publisher == envelope.publisher and held.flags & LATEST:
                    del self._held[index]
                    self._count_dropped(held.publisher)
                    break
        self._held.append(message)

    def _check(self, frames: list[memoryview]) -> Optional[tuple[Envelope, list]]:
        """A message from the intake as ``(envelope, body)``; None if it is skipped (counted).
        An empty list is a message the intake refused (counted already)."""
        if not frames:
            return None
        topic = frames[0]
        if len(topic) != len(self._topic_frame) or topic != self._topic_frame:
            return self._malformed("topic", "a message for topic %s arrived", truncate(repr(bytes(topic[:256]))))
        if len(frames) < 2:
            return self._malformed("envelope", "a message without an envelope arrived")
        try:
            envelope = envelopes.unpack(frames[1])
        except DecodeError as error:
            return self._malformed("envelope", "%s", error)
        body = frames[2:]
        if not body:
            return self._malformed("header", "a message without a header arrived")
        gap = self._sequence.accept(envelope, self._intake.source)
        if gap < 0:
            if gap == FOREIGN:
                return self._malformed("publisher", "publisher id %s is in use by another sender (seq %d refused)",
                                       envelope.publisher.hex(), envelope.seq)
            if gap == DEFERRED:  # or read while others are: it waits behind them, so nothing overtakes
                if not self._deferred:
                    self._deferred_since = self._deferred_first = time.monotonic()
                self._deferred.append((envelope, body, self._intake.source))
                self._offer_deferred()
            return None
        if gap or envelope.flags & SHM:
            return self._accepted(envelope, body, gap)
        return envelope, body

    def _accepted(self, envelope: Envelope, body: list, gap: int) -> Optional[tuple[Envelope, list]]:
        """A message the sequence check accepted, ``gap`` messages of its publisher missed before it."""
        if gap:
            # a "latest" publisher replaces what finds no room: gaps are its policy (it counts them)
            level = logging.INFO if envelope.flags & LATEST else logging.WARNING
            self._log.log(level, envelope.publisher.hex(), "missed",
                              "listener on %s: %d messages from publisher %s never arrived "
                              "(%d missed in total on this listener)",
                              self.topic, gap, envelope.publisher.hex(), self._sequence.missed)
        if envelope.flags & SHM:  # its large buffers are in this listener's shared-memory inbox
            return self._shm.resolve(envelope, body)
        return envelope, body

    def _offer_deferred(self) -> None:
        """Offer the deferred messages to the sequence check again, in arrival order, until a pass
        releases none: those accepted go to ``_held``. Past :data:`MAX_DEFERRED` messages,
        :data:`MAX_DEFERRED_BYTES`, :data:`DEFER_TIMEOUT` without progress or :data:`MAX_DEFER_AGE`
        it stops waiting for previous connections."""
        self._sequence.holding = False
        held = sum(len(frame) for _, body, _ in self._deferred for frame in body)
        now = time.monotonic()
        waited = now - self._deferred_since
        if (len(self._deferred) > MAX_DEFERRED or held > MAX_DEFERRED_BYTES or waited > DEFER_TIMEOUT
                or now - self._deferred_first > MAX_DEFER_AGE):
            self._log.warning(self.topic, "deferred", "listener on %s stopped waiting for a publisher id's previous "
                              "connection after %d messages (%d bytes, %.1f s)", self.topic, len(self._deferred),
                              held, waited)
            self._sequence.waiting = False
        released = True
        while released and self._deferred:
            released = False
            waiting, self._deferred = self._deferred, deque()
            self._sequence.awaiting_none()  # what the messages still deferred wait for is found again
            self._sequence.held_back(source for _, _, source in waiting)
            for envelope, body, source in waiting:
                gap = self._sequence.accept(envelope, source)
                if gap == DEFERRED:
                    self._deferred.append((envelope, body, source))
                    continue
                released = True
                if self._sequence.awaited(source):  # what the deferred messages wait for is coming
                    self._deferred_since = time.monotonic()
                if gap == FOREIGN:
                    self._malformed("publisher", "publisher id %s is in use by another sender (seq %d refused)",
                                    envelope.publisher.hex(), envelope.seq)
                elif gap >= 0 and (message := self._accepted(envelope, body, gap)) is not None:
                    self._hold((*message, source))
        self._sequence.waiting = True
        self._sequence.held_back(source for _, _, source in self._deferred)
        if self._deferred:
            self._sequence.hold()
        else:
            self._sequence.awaiting_none()

    def _next_held(self, deadline: Optional[float]) -> Optional[tuple[Envelope, list, object]]:
        """The first message of ``_held``, once there is one (None: ``deadline`` passed first). One
        from a sender that deferred messages wait for is the deferral's progress (a slow caller
        taking an old connection's tail is no reason to stop waiting for the rest)."""
        if not self._held and not self._await_deferred(deadline):
            return None
        return self._take_held()

    def _take_held(self) -> tuple[Envelope, list, object]:
        message = self._held.popleft()
        if self._deferred and self._sequence.awaited(message[2]):
            self._deferred_since = time.monotonic()
        return message

    def _await_deferred(self, deadline: Optional[float]) -> bool:
        """Read on until a message is ready in ``_held``; False if ``deadline`` passes first. While
        messages are deferred, each slice that reads nothing offers them again: their previous
        connection may have ended without a message saying so."""
        while not self._held:
            if not self._deferred:
                message = self._receive_within(deadline) if deadline is not None else \
                    self._check(self._intake.receive(None))
                if message is not None:
                    self._hold((*message, self._intake.source))
                elif deadline is not None and time.monotonic() >= deadline and not self._held:
                    return False
                continue
            frames = self._intake.receive(slice_seconds(deadline))
            if frames is None:
                self._offer_deferred()
            else:
                message = self._check(frames)
                if message is not None:
                    self._hold((*message, self._intake.source))
            if not self._held and deadline is not None and time.monotonic() >= deadline:
                return False
        return True

    def statistics(self) -> dict[str, int]:
        """As :meth:`ListenerCounts.statistics`; with ``carrier="shm"`` also ``shm``, ``shm_received``
        and ``shm_missed`` (:meth:`~.shm_intake.ShmIntake.statistics`)."""
        return {**super().statistics(), **self._shm.statistics()}

    def _malformed(self, kind: str, reason: str, *args) -> None:
        with self._count_lock:
            self.malformed += 1
        self._log.warning(self.topic, kind, "listener on %s skipped a malformed message: " + reason,
                          self.topic, *args)
        return None

    def _refused(self, peer: str, problem: str) -> None:
        """The intake refused a message for its size or frame count (told from its own thread)."""
        with self._count_lock:
            self.malformed += 1
        self._log.warning(peer, "size", "listener on %s skipped a malformed message from %s: %s",
                          self.topic, peer, problem)

    def close(self) -> None:
        """Close, also while another thread waits in :meth:`recv` (it gets :class:`ClosedError`)."""
        with self._close_lock:
            if self._closing:
                return
            self._closing = True
            self._peer_check.cancel()
            self._intake.close()
        with self._lock:
            self._held.clear()
            self._deferred.clear()
            self._sequence.awaiting_none()
            self._agent.withdraw(self._announcement)
            self._intake.release()
            self._shm.close()


def _reclaimed_log(log: RateLimitedLog, topic: str):
    """What a listener's sequence check calls when a reconnected publisher takes its id over after
    some of its messages were refused under it (no reference to the listener: no cycle)."""
    def reclaimed(publisher: bytes, refused: int) -> None:
        log.warning(publisher.hex(), "reclaimed", "listener on %s: publisher %s took its id over from its "
                    "previous connection; %d of its messages had been refused while that connection held "
                    "the id (counted malformed, not again as missed)", topic, publisher.hex(), refused)
    return reclaimed
