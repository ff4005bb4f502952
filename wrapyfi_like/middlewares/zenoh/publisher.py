"""Zenoh publisher transport: one declared zenoh publisher per communicator, fed by a sender thread.

Why a sender thread and a queue of our own: zenoh tells Python nothing about what it drops (its
``DROP`` congestion control loses messages silently) and a ``put`` blocked by a slow listener
cannot be interrupted. So every message is put with ``BLOCK`` (which, with the link's
``wait_before_close`` raised in :mod:`.settings`, never loses one), from a thread of its own,
and our ``backpressure`` policy applies to the queue before it: ``"block"`` makes ``send`` wait for
room, ``"drop"`` discards the new message, ``"latest"`` the oldest waiting one, each counted in
``dropped`` and, through the envelope's sequence numbers, as ``missed`` by listeners. ``close()``
then ends a blocked ``send`` at once, while the sender thread finishes its ``put`` on its own.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any, Optional

from wrapyfi_like.background import start_thread
from wrapyfi_like.exceptions import ClosedError, ConfigurationError, WaitTimeout, map_exceptions
from wrapyfi_like.limits import DEFAULT_MAX_MESSAGE_SIZE, check_outgoing, check_queue_depth
from wrapyfi_like.middlewares import envelope
from wrapyfi_like.middlewares.base import PublisherTransport
from wrapyfi_like.middlewares.deadlines import deadline_after, remaining_seconds, slice_seconds
from wrapyfi_like.middlewares.envelope import LATEST, Group
from wrapyfi_like.middlewares.zenoh import framing, presence
from wrapyfi_like.middlewares.zenoh.checks import check_carrier, check_no_curve
from wrapyfi_like.middlewares.zenoh.keys import topic_key
from wrapyfi_like.middlewares.zenoh.session import ZenohSession, close_quietly, errors, zenoh_module

logger = logging.getLogger("wrapyfi_like.zenoh.publisher")

POLICIES = ("block", "drop", "latest")
ZERO_COPY_MODES = ("safe", "unsafe")
DEFAULT_QUEUE_DEPTH = 1000
LINGER = 1.0
"""Seconds ``close()`` lets the sender thread put what is still queued."""


class ZenohPublisherTransport(PublisherTransport):
    """Publishes ``topic`` on zenoh key ``topic.strip("/")`` (prefixed by a non-zero domain).

    ``zero_copy`` is accepted for both values: zenoh-python copies every message (it takes no
    memoryview), so the caller always owns its buffers once ``send`` returns.
    """

    def __init__(self, topic: str, carrier: str = "tcp", should_wait: bool = True,
                 wait_timeout: Optional[float] = None, info: Optional[dict] = None,
                 backpressure: str = "block", queue_depth: Optional[int] = None, curve_secret_key: Any = None,
                 zero_copy: str = "safe", *, session: ZenohSession,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        check_carrier(carrier)
        check_no_curve(curve_secret_key)
        if backpressure not in POLICIES:
            raise ConfigurationError(f"backpressure must be one of {POLICIES}, got {backpressure!r}")
        if zero_copy not in ZERO_COPY_MODES:
            raise ConfigurationError(f"zero_copy must be one of {ZERO_COPY_MODES}, got {zero_copy!r}")
        self.topic = topic
        self._key = topic_key(topic, session.domain)
        self._should_wait = should_wait
        self._wait_timeout = wait_timeout
        self._policy = backpressure
        self._depth = check_queue_depth(queue_depth) or DEFAULT_QUEUE_DEPTH
        self._max_message_size = max_message_size
        self._id = envelope.new_publisher_id()
        self._flags = LATEST if backpressure == "latest" else 0
        self._seq = 0
        self.sent = 0
        self.dropped = 0
        self._queue: deque = deque()
        # Held through the lock itself, never ``with self._changed``: Condition.__enter__ is Python
        # code, and a Ctrl-C landing in it after the lock is taken left the lock held for good
        # (close() at exit then waited for ever). A plain Lock, not the default RLock: cheaper.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._matching = False
        self._closed = False
        # wakes the idle sender thread: held while nothing is signalled, released once per idle
        # spell. A bare lock hands over in about half the time of a Condition, per 1 KB message
        self._ready = threading.Lock()
        self._ready.acquire()
        self._idle = False  # the sender thread waits on _ready
        zenoh = zenoh_module()
        # a session of its own: closing a listener while a put to it is blocked can wedge the
        # sending session (zenoh 1.10), which then must hold back no other communicator
        self._session = session.open()
        with map_exceptions(errors(), f"publisher on {topic}"):
            self._publisher = self._session.declare_publisher(
                self._key, congestion_control=zenoh.CongestionControl.BLOCK,
                reliability=zenoh.Reliability.RELIABLE, express=backpressure == "latest")
            # indirect=False: the default runs the callback on a non-daemon Python thread, which
            # Python joins at exit before atexit closes this publisher, so Ctrl-C never ended the process
            self._matching_listener = self._publisher.declare_matching_listener(
                zenoh.handlers.Callback(self._on_matching, indirect=False))
            self._on_matching(self._publisher.matching_status)
            self._token = presence.declare(self._session, session.domain, "publisher", topic, info)
        self._sender = start_thread(self._run, f"zenoh publisher {topic}")

    def _on_matching(self, status: Any) -> None:
        # ``matching_status`` objects are always truthy; only ``.matching`` tells
        with self._lock:
            self._matching = bool(status.matching)
            self._changed.notify_all()

    def send(self, frames: list, group: Optional[Group] = None) -> None:
        """Queue one message for every listener; with ``should_wait``, first wait for one to exist."""
        check_outgoing(frames, self._max_message_size, self.topic)
        payload, lengths = framing.join(frames)  # the copy that lets the caller reuse its buffers
        with self._lock:
            self._check_open()
            if self._should_wait and not self._matching:
                self._wait(lambda: self._matching, deadline_after(self._wait_timeout))
            self._seq += 1
            message = (payload, envelope.pack(self._id, self._seq, self._flags, group) + lengths)
            if len(self._queue) >= self._depth:
                if self._policy == "drop":
                    self.dropped += 1
                    return
                if self._policy == "latest":
                    self._queue.popleft()
                    self.dropped += 1
                else:
                    self._wait(lambda: len(self._queue) < self._depth, None)
            self._queue.append(message)
            self._wake_sender()

    def _wake_sender(self) -> None:
        """Called holding ``_lock``, the only place that releases ``_ready``."""
        if self._idle:
            self._idle = False
            self._ready.release()

    def _wait(self, ready: Any, deadline: Optional[float]) -> None:
        """Wait (holding the condition) until ``ready()``; ClosedError on close, WaitTimeout at deadline."""
        while not ready():
            self._check_open()
            left = remaining_seconds(deadline)
            if left == 0:
                raise WaitTimeout(f"no listener for {self.topic} appeared within {self._wait_timeout} s "
                                  "(wait_timeout); start one, or publish with should_wait=False")
            self._changed.wait(slice_seconds(deadline))
        self._check_open()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"publisher on {self.topic} is closed")

    def _run(self) -> None:
        """Put queued messages, in order, until closed and drained (or the linger is over)."""
        put = 0  # counted in ``sent`` at the next turn, under the lock that turn takes anyway
        while True:
            with self._lock:
                self.sent += put
                put = 0
                if self._queue:
                    message = self._queue.popleft()
                    self._changed.notify_all()  # a send may wait for room
                elif self._closed:
                    break
                else:
                    self._idle = True
                    message = None
            if message is None:
                self._ready.acquire()
                continue
            try:
                self._publisher.put(message[0], attachment=message[1])
            except Exception as error:  # zenoh.ZError: the session went away; nothing more can be sent
                logger.warning("publisher on %s: zenoh put failed: %s", self.topic, error)
                break
            put = 1
        self._undeclare()

    def _undeclare(self) -> None:
        for entity in (self._token, self._matching_listener, self._publisher):
            try:
                entity.undeclare()
            except Exception as error:  # already undeclared with its session
                logger.debug("publisher on %s: undeclare: %s", self.topic, error)
        close_quietly(self._session, f"the session of publisher on {self.topic}")

    def statistics(self) -> dict[str, int]:
        """``sent``: messages handed to zenoh; ``dropped``: discarded by the ``backpressure`` policy."""
        with self._lock:
            return {"sent": self.sent, "dropped": self.dropped}

    def close(self) -> None:
        """Close, also while another thread waits in :meth:`send` (it gets :class:`ClosedError`).
        Messages still queued get :data:`LINGER` seconds to go out."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._changed.notify_all()
            self._wake_sender()
        if threading.current_thread() is not self._sender:
            self._sender.join(LINGER)
        if self._sender.is_alive():
            with self._lock:
                lost = len(self._queue)
                self._queue.clear()
                self.dropped += lost
            logger.warning("publisher on %s closed with a put blocked by a slow listener; %d queued "
                           "message(s) not sent (counted as dropped)", self.topic, lost)
