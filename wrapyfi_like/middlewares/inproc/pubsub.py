"""In-memory publish/listen: the ZeroMQ transport's behaviour without sockets.

Each listener has an inbox on the bus under its exact topic; a publisher puts every message into
the inbox of each listener of its topic (fan-out; with ``"block"`` a full inbox makes the
publisher wait). A message is ``[envelope, header, *buffers]``, the wire's message without its
topic frame: the publisher stamps the envelope (:mod:`wrapyfi_like.middlewares.envelope`: its own
id, sequence 1, 2, 3…, the ``LATEST`` flag, the call group) and the listener checks it as a
ZeroMQ listener does, so sequence gaps, duplicates and ``latest`` skips are counted the same way.

Frames are copied per listener at send (``zero_copy="safe"``, the default), so receivers get what
the wire would give; with ``zero_copy="unsafe"`` they share the sender's buffers, which shows the
hazard that opt-out has on ZeroMQ instead of hiding it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Optional

from wrapyfi_like.exceptions import ClosedError, ConfigurationError, DecodeError, WaitTimeout
from wrapyfi_like.limits import DEFAULT_MAX_MESSAGE_SIZE
from wrapyfi_like.logs import RateLimitedLog, truncate
from wrapyfi_like.middlewares import envelope
from wrapyfi_like.middlewares.base import ListenerTransport, PublisherTransport, check_carrier
from wrapyfi_like.middlewares.envelope import LATEST, Envelope, Group, ListenerCounts
from wrapyfi_like.middlewares.inproc.bus import (
    LISTENERS, Bus, Inbox, Member, copy_frames, oversize, share_frames,
)
from wrapyfi_like.middlewares.deadlines import deadline_after, remaining_seconds
from wrapyfi_like.limits import check_topic

logger = logging.getLogger("wrapyfi_like.inproc")
_log = RateLimitedLog(logger)

ZERO_COPY_MODES = ("safe", "unsafe")


class InprocPublisherTransport(PublisherTransport):
    """Sends each message to every listener of its topic on its bus (``session``).

    ``backpressure`` applies when ``queue_depth`` messages already wait in a listener's inbox:
    ``"block"`` waits for room, ``"drop"`` drops the new message, ``"latest"`` drops the oldest
    waiting one; each message lost so is counted in :attr:`dropped` (and shows as ``missed`` at
    the listener). ``carrier`` (checked), ``info`` and a CURVE key are accepted so a communicator written
    for ZeroMQ runs unchanged (messages never leave the process, so there is nothing to encrypt).
    """

    def __init__(self, topic: str, carrier: str = "tcp", should_wait: bool = True,
                 wait_timeout: Optional[float] = None, info: Optional[dict] = None,
                 backpressure: str = "block", queue_depth: int = 1000, curve_secret_key: Any = None,
                 zero_copy: str = "safe", *, session: Bus) -> None:
        check_topic(topic)  # the same topic and carrier rules as on the wire
        check_carrier(carrier)
        if zero_copy not in ZERO_COPY_MODES:
            raise ConfigurationError(f"zero_copy must be one of {ZERO_COPY_MODES}, got {zero_copy!r}")
        self.topic = topic
        self._should_wait = should_wait
        self._wait_timeout = wait_timeout
        self._backpressure = backpressure
        self._queue_depth = queue_depth
        self._prepare = copy_frames if zero_copy == "safe" else share_frames
        self._id = envelope.new_publisher_id()
        self._flags = LATEST if backpressure == "latest" else 0
        self._seq = 0
        self.sent = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self._bus = session
        self._bus.check_open(f"publisher on {topic}")
        self._closed = False

    def send(self, frames: list, group: Optional[Group] = None) -> None:
        """Send one message to every listener; with ``should_wait``, first wait for one to exist.

        ``group`` marks the message as one part of a stacked method's call (see
        :class:`~wrapyfi_like.middlewares.envelope.Group`).
        """
        with self._lock:
            self._check_open()
            inboxes = self._bus.members(LISTENERS, self.topic)
            if self._should_wait and not inboxes:
                inboxes = self._wait_for_listener()
            self._seq += 1
            stamp = envelope.pack(self._id, self._seq, self._flags, group)
            for inbox in inboxes:
                self._deliver(inbox, [stamp, *self._prepare(frames)])
            self.sent += 1
            self._check_open()

    def _deliver(self, inbox: Inbox, message: list) -> None:
        if self._backpressure == "block":
            inbox.put(message, abandoned=self._abandoned, depth=self._queue_depth)  # False: it left
        elif inbox.put_or_drop(message, self._queue_depth, drop_oldest=self._backpressure == "latest"):
            self.dropped += 1

    def _wait_for_listener(self) -> list[Inbox]:
        logger.info("waiting for a listener on %s", self.topic)
        inboxes = self._bus.wait_for_members(LISTENERS, self.topic, deadline_after(self._wait_timeout),
                                             self._abandoned)
        self._check_open()
        if not inboxes:
            raise WaitTimeout(
                f"no listener for {self.topic} appeared within {self._wait_timeout} s "
                "(wait_timeout); start one, or publish with should_wait=False"
            )
        return inboxes

    def _abandoned(self) -> bool:
        return self._closed or self._bus.closed

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"publisher on {self.topic} is closed")
        self._bus.check_open(f"publisher on {self.topic}")

    def statistics(self) -> dict[str, int]:
        """``sent``: messages sent (each to every listener then present); ``dropped``: deliveries
        lost to the ``backpressure`` policy."""
        return {"sent": self.sent, "dropped": self.dropped}

    def close(self) -> None:
        """Close, also while another thread waits in :meth:`send` (it gets :class:`ClosedError`)."""
        if self._closed:
            return
        self._closed = True
        self._bus.wake()


class InprocListenerTransport(ListenerCounts, Member, ListenerTransport):
    """An inbox on its bus (``session``) for one topic; publishers of that topic fill it.

    Every message's envelope goes through a :class:`SequenceCheck`: a gap in a publisher's
    sequence is counted as ``missed``, a repeat is skipped and counted as ``duplicate``. A message
    flagged ``LATEST`` is skipped in favour of the newest waiting message of the same publisher
    (counted as ``dropped``), so a ``"latest"`` listener gets the newest message whatever the
    queue depth. After :meth:`recv` returns frames, :attr:`last_envelope` is their envelope.
    What waits in the inbox is bounded by each publisher's ``queue_depth``, so the listener's
    own ``queue_depth`` and CURVE key are accepted and have nothing to do.
    """

    def __init__(self, topic: str, carrier: str = "tcp", info: Optional[dict] = None,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE, queue_depth: Optional[int] = None,
                 curve_server_key: Any = None, *, bind_port: Optional[int] = None, session: Bus) -> None:
        super().__init__(LISTENERS, "listener", topic, carrier, info, max_message_size, session)
        self._start_counting()
        self._lock = threading.Lock()

    def recv(self, timeout: Optional[float]) -> Optional[list[memoryview]]:
        """The next message's ``[header, *buffers]``, or None if ``timeout`` seconds pass first.

        ``timeout=None`` waits as long as it takes; :meth:`close` from another thread ends the wait
        with :class:`ClosedError`. The buffers are writable copies owned by this listener (unless
        the publisher chose ``zero_copy="unsafe"``). A message larger than ``max_message_size``,
        or one whose envelope is not valid, is skipped, counted as ``malformed`` and logged
        (rate-limited), as on the wire.
        """
        deadline = deadline_after(timeout)
        with self._lock:
            while True:
                message = self._inbox.get(remaining_seconds(deadline))
                if message is None:
                    return None
                try:
                    stamp = envelope.unpack(message[0])
                except DecodeError as error:
                    self._malformed("envelope", error)
                    continue
                if stamp.flags & LATEST:
                    message, stamp = self._newest(message, stamp)
                gap = self._sequence.accept(stamp)
                if gap < 0:
                    continue  # a repeat: never handed to the user
                if gap:
                    _log.warning(self.topic, "missed", "listener on %s: %d message(s) from publisher %s "
                                 "never arrived (%d missed in all)", self.topic, gap, stamp.publisher.hex(),
                                 self._sequence.missed)
                frames = message[1:]
                problem = oversize(frames, self._max_message_size)
                if problem:
                    self._malformed("size", problem)
                    continue
                self.last_envelope = stamp
                self.received += 1
                return frames

    def _malformed(self, kind: str, reason: object) -> None:
        self.malformed += 1
        _log.warning(self.topic, kind, "listener on %s skipped a malformed message: %s", self.topic, truncate(reason))

    def _newest(self, message: list, stamp: Envelope) -> tuple[list, Envelope]:
        """The newest waiting ``LATEST`` message of ``stamp``'s publisher, the older ones counted
        as ``dropped`` (taken through the sequence check, so they are not counted as missed)."""
        newer = self._inbox.take_matching(lambda item: _same_latest_stream(item[0], stamp.publisher))
        for older in [message, *newer[:-1]] if newer else []:
            older_stamp = envelope.unpack(older[0])
            if self._sequence.accept(older_stamp) >= 0:
                self._count_dropped(older_stamp.publisher)
        if not newer:
            return message, stamp
        return newer[-1], envelope.unpack(newer[-1][0])


def _same_latest_stream(frame: Any, publisher: bytes) -> bool:
    """Whether ``frame`` is the envelope of a ``LATEST`` message from ``publisher``."""
    try:
        stamp = envelope.unpack(frame)
    except DecodeError:
        return False
    return stamp.publisher == publisher and bool(stamp.flags & LATEST)
