"""Zenoh listener transport: a zenoh subscriber in a session of its own, feeding a bounded inbox.

The session of its own keeps a slow listener from stalling the process's other listeners
(:mod:`.session`). The subscriber's callback queues ``(payload, attachment)`` in an
:class:`~.inbox.Inbox` of ``queue_depth`` messages; when it is full the callback waits, which
pushes back to "block" publishers. ``recv`` checks each message's envelope as the ZeroMQ listener
does: gaps in a publisher's sequence are ``missed``, repeats are skipped as ``duplicate``, older
``LATEST`` messages are skipped for the newest waiting one (``dropped``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Optional

from wrapyfi_like.exceptions import DecodeError, map_exceptions
from wrapyfi_like.limits import DEFAULT_MAX_MESSAGE_SIZE, check_max_message_size, check_queue_depth
from wrapyfi_like.logs import RateLimitedLog
from wrapyfi_like.middlewares import envelope
from wrapyfi_like.middlewares.base import ListenerTransport
from wrapyfi_like.middlewares.deadlines import deadline_after, remaining_seconds
from wrapyfi_like.middlewares.envelope import LATEST, Envelope, ListenerCounts
from wrapyfi_like.middlewares.zenoh import framing, presence
from wrapyfi_like.middlewares.zenoh.checks import check_carrier, check_no_curve
from wrapyfi_like.middlewares.zenoh.inbox import Inbox
from wrapyfi_like.middlewares.zenoh.keys import topic_key
from wrapyfi_like.middlewares.zenoh.session import ZenohSession, close_quietly, errors, zenoh_module

logger = logging.getLogger("wrapyfi_like.zenoh.listener")
_log = RateLimitedLog(logger)

DEFAULT_QUEUE_DEPTH = 1000
_OVERSIZE = "oversize"


class ZenohListenerTransport(ListenerCounts, ListenerTransport):
    """Receives ``topic`` (zenoh key ``topic.strip("/")``) from every publisher, each in order."""

    def __init__(self, topic: str, carrier: str = "tcp", info: Optional[dict] = None,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE, queue_depth: Optional[int] = None,
                 curve_server_key: Any = None, *, bind_port: Optional[int] = None,
                 session: ZenohSession) -> None:
        check_carrier(carrier)
        check_no_curve(curve_server_key)
        self.topic = topic
        key = topic_key(topic, session.domain)
        self._max_message_size = check_max_message_size(max_message_size)
        self._inbox = Inbox(check_queue_depth(queue_depth) or DEFAULT_QUEUE_DEPTH, f"listener on {topic}")
        self._start_counting()
        self._lock = threading.Lock()
        self._session = session.open()
        try:
            with map_exceptions(errors(), f"listener on {topic}"):
                # indirect=False: run in zenoh's receive task, so a full inbox pushes back; the
                # default (indirect) hands samples to a Python thread through an unbounded queue
                self._subscriber = self._session.declare_subscriber(
                    key, zenoh_module().handlers.Callback(self._on_sample, indirect=False))
                self._token = presence.declare(self._session, session.domain, "listener", topic, info)
        except BaseException:
            close_quietly(self._session, f"the session of listener on {topic}")
            raise

    def _on_sample(self, sample: Any) -> None:
        """Runs in zenoh's receive task: copy the message out and queue it (waiting for room)."""
        attachment = sample.attachment
        size = len(sample.payload)
        if size > self._max_message_size:
            self._inbox.put((_OVERSIZE, size))
            return
        self._inbox.put((sample.payload.to_bytes(), None if attachment is None else attachment.to_bytes()))

    def recv(self, timeout: Optional[float]) -> Optional[list[memoryview]]:
        """The next message's ``[header, *buffers]`` (writable, owned by the caller), or None once
        ``timeout`` seconds pass. A bad or oversize message raises :class:`DecodeError`."""
        deadline = deadline_after(timeout)
        with self._lock:
            while True:
                item = self._inbox.get(remaining_seconds(deadline))
                if item is None:
                    return None
                payload, attachment = item
                try:
                    stamp, lengths = self._unpack(payload, attachment)
                    if stamp.flags & LATEST:
                        (payload, attachment), stamp, lengths = self._newest(item, stamp, lengths)
                    gap = self._sequence.accept(stamp)
                    if gap < 0:
                        continue  # a repeat: never handed to the user
                    frames = framing.split(payload, lengths)
                except DecodeError as error:
                    self.malformed += 1
                    _log.warning(self.topic, "malformed", "listener on %s: refused a message: %s", self.topic, error)
                    raise
                if gap:
                    _log.warning(self.topic, "missed", "listener on %s: %d message(s) from publisher %s never "
                                 "arrived (%d missed in all)", self.topic, gap, stamp.publisher.hex(),
                                 self._sequence.missed)
                self.last_envelope = stamp
                self.received += 1
                return frames

    def _unpack(self, payload: Any, attachment: Optional[bytes]) -> tuple[Envelope, bytes]:
        if payload == _OVERSIZE:
            raise DecodeError(f"a message of {attachment} bytes is over max_message_size "
                              f"({self._max_message_size})")
        if attachment is None or len(attachment) < envelope.ENVELOPE.size:
            raise DecodeError("a zenoh message without a wrapyfi_like envelope attachment")
        return envelope.unpack(attachment[:envelope.ENVELOPE.size]), attachment[envelope.ENVELOPE.size:]

    def _newest(self, item: tuple, stamp: Envelope, lengths: bytes) -> tuple[tuple, Envelope, bytes]:
        """The newest waiting ``LATEST`` message of ``stamp``'s publisher; the older ones are
        counted as ``dropped`` (through the sequence check, so they are not counted as missed)."""
        def same_stream(other: tuple) -> bool:
            try:
                other_stamp, _ = self._unpack(*other)
            except DecodeError:
                return False
            return other_stamp.publisher == stamp.publisher and bool(other_stamp.flags & LATEST)
        newer = self._inbox.take_matching(same_stream)
        if not newer:
            return item, stamp, lengths
        for older in [item, *newer[:-1]]:
            older_stamp, _ = self._unpack(*older)
            if self._sequence.accept(older_stamp) >= 0:
                self._count_dropped(older_stamp.publisher)
        newest_stamp, newest_lengths = self._unpack(*newer[-1])
        return newer[-1], newest_stamp, newest_lengths

    def close(self) -> None:
        """Close, also while another thread waits in :meth:`recv` (it gets :class:`ClosedError`).

        The inbox is closed first, so a zenoh callback waiting for room returns before the
        subscriber and its session go away (zenoh cannot close a session whose receive task is stuck).
        """
        if self._inbox.closed:
            return
        self._inbox.close()
        for entity in (self._token, self._subscriber):
            try:
                entity.undeclare()
            except Exception as error:  # already gone with its session
                logger.debug("listener on %s: undeclare: %s", self.topic, error)
        close_quietly(self._session, f"the session of listener on {self.topic}")
