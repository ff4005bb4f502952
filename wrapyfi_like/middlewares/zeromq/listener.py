"""ZeroMQ listener transport: binds a PULL socket per topic, announces it, receives frames.

Every message is ``[topic, envelope, header, *buffers]`` (docs/wire.md). The listener checks the
topic and the envelope of each one before the codec sees it: a message that is not one of ours is
*malformed* (counted, logged at most once per 10 s per kind, skipped); the envelope's sequence
number tells a gap (*missed*: counted exactly, logged) from a repeat (*duplicate*: counted, never
returned), so neither loss nor reordering reaches the user unnoticed.

``backpressure="latest"`` publishers flag their messages :data:`~..envelope.LATEST`: when such a
message is read, the listener also reads what else is already waiting and returns the newest
message of that publisher, counting the older ones it skipped as *dropped* (the publisher chose
that; they are not *missed*).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from typing import Optional

import zmq

from wrapyfi_like.exceptions import ClosedError, DecodeError
from wrapyfi_like.limits import DEFAULT_MAX_MESSAGE_SIZE, MAX_SKIPPED_WITHOUT_WAIT
from wrapyfi_like.logs import RateLimitedLog, truncate
from wrapyfi_like.middlewares import envelope as envelopes
from wrapyfi_like.middlewares.base import ListenerTransport
from wrapyfi_like.middlewares.deadlines import deadline_after, remaining_ms
from wrapyfi_like.middlewares.envelope import LATEST, SHM, Envelope, ListenerCounts
from wrapyfi_like.middlewares.zeromq import lifecycle
from wrapyfi_like.middlewares.zeromq.curve import Key, consumer_keys
from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent
from wrapyfi_like.middlewares.zeromq.errors import MapsZMQErrors
from wrapyfi_like.middlewares.zeromq.framing import limit_frame_size, receive_bounded
from wrapyfi_like.middlewares.zeromq.keys import listener_key, topic_frame
from wrapyfi_like.middlewares.zeromq.settings import ZeroMQSettings
from wrapyfi_like.middlewares.zeromq.shm_intake import ShmIntake

logger = logging.getLogger("wrapyfi_like.zeromq")

WAKE_FRAME = b""
"""The one-frame message ``close()`` sends to its own listener socket to end a blocking receive:
no publisher sends it, because a topic is never empty."""
LATEST_HOLD = 4
"""Messages a listener holds while it looks for the newest ``"latest"`` message: reading stops
once this many messages (from different publishers, or not flagged ``LATEST``) are held, so a
peer cannot make it hold more than ``LATEST_HOLD + 1`` messages this way."""
LATEST_READS = 1024
"""Messages one call reads ahead at most while looking for the newest: a publisher faster than
the reader cannot keep a call from returning."""
_wake_endpoints = itertools.count()


class ZeroMQListenerTransport(MapsZMQErrors, ListenerCounts, ListenerTransport, role="listener"):
    """Binds a socket for one topic and announces it to ``session`` (this process's discovery
    agent), so publishers of that topic connect to it.

    ``max_message_size`` bounds what one message may make this process hold (see
    :mod:`~wrapyfi_like.middlewares.zeromq.framing`); ``queue_depth`` is how many messages may
    wait here unread (None: libzmq's default, 1000).

    Waiting without a timeout is a plain blocking receive, the cheapest wait libzmq has (no poll
    set to build per message). To end it, :meth:`close` sends :data:`WAKE_FRAME` to the socket
    itself over an inproc connection that only this object holds.
    """

    def __init__(self, topic: str, carrier: str = "tcp", info: Optional[dict] = None,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE, queue_depth: Optional[int] = None,
                 curve_server_key: Optional[Key] = None, *, session: NodeAgent) -> None:
        self.topic = topic
        self._topic_frame = topic_frame(topic)
        self._max_message_size = max_message_size
        self._lock = threading.Lock()  # held while receiving; close() takes it to close the socket
        self._close_lock = threading.Lock()
        context = zmq.Context.instance()
        self._socket = context.socket(zmq.PULL)
        self._socket.setsockopt(zmq.LINGER, 0)
        limit_frame_size(self._socket, max_message_size)
        if queue_depth is not None:
            self._socket.setsockopt(zmq.RCVHWM, queue_depth)
        keys = consumer_keys(curve_server_key)
        if keys is not None:
            keys.apply(self._socket)
        self._socket.bind(ZeroMQSettings.from_environment().bind_address(carrier))
        self.endpoint = self._socket.getsockopt(zmq.LAST_ENDPOINT).decode()
        wake_endpoint = f"inproc://wrapyfi_like-listener-wake-{next(_wake_endpoints)}"
        self._socket.bind(wake_endpoint)
        self._wake = context.socket(zmq.PUSH)
        self._wake.connect(wake_endpoint)
        self._poller = zmq.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        self._closing = False
        self._start_counting()
        self._held: deque[tuple[Envelope, list]] = deque()  # read ahead while looking for the newest "latest"
        self._log = RateLimitedLog(logger)
        self._agent = session
        # the inbox is announced first, so a publisher never sees this listener without it
        self._shm = ShmIntake(self, carrier, session)
        self._announcement = self._agent.announce(listener_key(topic), self.endpoint, info or {})
        lifecycle.track(self)

    def recv(self, timeout: Optional[float]) -> Optional[list[memoryview]]:
        """The next message's ``[header, *buffers]``, or None if ``timeout`` seconds pass first.

        ``timeout=None`` waits as long as it takes; :meth:`close` from another thread ends the wait
        with :class:`ClosedError`. The buffers are the received frames themselves (zero-copy,
        writable). Malformed messages and duplicates are skipped here (counted); right after a
        message is returned, :attr:`last_envelope` is its envelope.
        """
        with self._lock:
            if self._closing:
                raise ClosedError(f"listener on {self.topic} is closed")
            if self._held:
                envelope, body = self._held.popleft()
            else:
                if timeout is None:
                    message = self._receive(0)
                    while message is None:  # malformed or duplicate: counted, skipped
                        message = self._receive(0)
                else:
                    message = self._receive_within(timeout)
                    if message is None:
                        return None
                envelope, body = message
                if envelope[2] & LATEST:  # flags
                    envelope, body = self._newest(message)
            self.received += 1
            self.last_envelope = envelope
            return [frame.buffer for frame in body]

    def _receive_within(self, timeout: float) -> Optional[tuple[Envelope, list]]:
        """The next message not skipped, or None once ``timeout`` seconds have passed.

        Skipped messages end the wait too once the deadline has passed and
        :data:`~wrapyfi_like.limits.MAX_SKIPPED_WITHOUT_WAIT` were skipped, so a peer sending bad
        messages faster than they are refused cannot hold a bounded wait (or ``recv(0)``) forever.
        """
        deadline = deadline_after(timeout)
        skipped = 0
        while True:
            try:
                message = self._receive(zmq.NOBLOCK)
            except zmq.Again:
                if not self._poller.poll(remaining_ms(deadline)) and time.monotonic() >= deadline:
                    return None
                continue
            if message is not None:
                return message
            skipped += 1
            if skipped >= MAX_SKIPPED_WITHOUT_WAIT and time.monotonic() >= deadline:
                return None

    def _newest(self, message: tuple[Envelope, list]) -> tuple[Envelope, list]:
        """Read what is already waiting; keep only the newest message of each ``LATEST`` publisher.

        Returns the first message to deliver; the others stay in ``_held`` in arrival order.
        """
        self._held.append(message)
        for _ in range(LATEST_READS):
            if len(self._held) > LATEST_HOLD:
                break
            try:
                message = self._receive(zmq.NOBLOCK)
            except zmq.Again:
                break
            if message is None:
                continue
            envelope = message[0]
            if envelope.flags & LATEST:
                for index, (held, _) in enumerate(self._held):
                    if held.publisher == envelope.publisher and held.flags & LATEST:
                        del self._held[index]
                        self._count_dropped(held.publisher)
                        break
            self._held.append(message)
        return self._held.popleft()

    def _receive(self, flags: int) -> Optional[tuple[Envelope, list]]:
        """One message off the socket as ``(envelope, body)``; None if it was skipped (counted)."""
        head, body, problem = receive_bounded(self._socket, 2, self._max_message_size, flags)
        topic = head[0]
        if len(topic) != len(self._topic_frame) or topic.bytes != self._topic_frame:
            if not len(topic) and self._closing:
                raise ClosedError(f"listener on {self.topic} was closed while receiving")
            return self._malformed("topic", "a message for topic %s arrived",
                                   truncate(repr(bytes(topic.buffer[:256]))))
        if len(head) < 2:
            return self._malformed("envelope", "a message without an envelope arrived")
        try:
            envelope = envelopes.unpack(head[1])  # a frame is a buffer: no memoryview needed
        except DecodeError as error:
            return self._malformed("envelope", "%s", error)
        if problem:
            return self._malformed("size", "%s", problem)
        if not body:
            return self._malformed("header", "a message without a header arrived")
        gap = self._sequence.accept(envelope)
        if gap < 0:
            return None
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

    def statistics(self) -> dict[str, int]:
        """As :meth:`ListenerCounts.statistics`; with ``carrier="shm"`` also ``shm``, ``shm_received``
        and ``shm_missed`` (:meth:`~.shm_intake.ShmIntake.statistics`)."""
        return {**super().statistics(), **self._shm.statistics()}

    def _malformed(self, kind: str, reason: str, *args) -> None:
        self.malformed += 1
        self._log.warning(self.topic, kind, "listener on %s skipped a malformed message: " + reason,
                          self.topic, *args)
        return None

    def close(self) -> None:
        """Close, also while another thread waits in :meth:`recv` (it gets :class:`ClosedError`)."""
        with self._close_lock:
            if self._closing:
                return
            self._closing = True
            self._wake.send(WAKE_FRAME)
        with self._lock:
            self._held.clear()
            self._agent.withdraw(self._announcement)
            self._shm.close()
            self._socket.close()
            self._wake.close()
