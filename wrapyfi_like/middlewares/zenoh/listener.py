"""Zenoh listener transport: a zenoh subscriber with a bounded channel, in a session of its own.

Why a ``FifoChannel`` and not a Python callback: a callback runs in zenoh's receive task and must
take the GIL there, so while the caller's thread holds it (copying or decoding the previous
message) that task stops reading the link; with a channel, zenoh queues samples without Python,
and the caller's thread takes them, as raw zenoh-python does. The channel holds ``queue_depth``
messages; when it is full zenoh waits, which pushes back to "block" publishers. The session of
its own keeps a full channel from stalling the process's other listeners (:mod:`.session`).

``recv`` checks each message's envelope as the ZeroMQ listener does: gaps in a publisher's
sequence are ``missed``, repeats are skipped as ``duplicate``, older ``LATEST`` messages are
skipped for the newest waiting one (``dropped``).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any, Optional

from wrapyfi_like.exceptions import ClosedError, DecodeError, map_exceptions
from wrapyfi_like.limits import DEFAULT_MAX_MESSAGE_SIZE, check_max_message_size, check_queue_depth
from wrapyfi_like.logs import RateLimitedLog
from wrapyfi_like.middlewares import envelope
from wrapyfi_like.middlewares.base import ListenerTransport
from wrapyfi_like.middlewares.deadlines import deadline_after, remaining_seconds
from wrapyfi_like.middlewares.envelope import LATEST, Envelope, ListenerCounts
from wrapyfi_like.middlewares.zenoh import framing, presence
from wrapyfi_like.middlewares.zenoh.channel import Channel
from wrapyfi_like.middlewares.zenoh.checks import check_carrier, check_no_curve
from wrapyfi_like.middlewares.zenoh.keys import topic_key
from wrapyfi_like.middlewares.zenoh.session import ZenohSession, close_quietly, errors, zenoh_module

logger = logging.getLogger("wrapyfi_like.zenoh.listener")
_log = RateLimitedLog(logger)

DEFAULT_QUEUE_DEPTH = 1000


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
        self._depth = check_queue_depth(queue_depth) or DEFAULT_QUEUE_DEPTH
        self._backlog: deque = deque()  # (payload, attachment) taken from the channel to look past LATEST ones
        self._start_counting()
        self._lock = threading.Lock()
        self._session = session.open()
        try:
            with map_exceptions(errors(), f"listener on {topic}"):
                self._subscriber = self._session.declare_subscriber(key, zenoh_module().handlers.FifoChannel(self._depth))
                self._channel = Channel(self._subscriber.handler, f"listener on {topic}")
                self._token = presence.declare(self._session, session.domain, "listener", topic, info)
        except BaseException:
            close_quietly(self._session, f"the session of listener on {topic}")
            raise

    def recv(self, timeout: Optional[float]) -> Optional[list[memoryview]]:
        """The next message's ``[header, *buffers]`` (writable, owned by the caller), or None once
        ``timeout`` seconds pass. A bad or oversize message raises :class:`DecodeError`."""
        deadline = deadline_after(timeout)
        with self._lock:
            while True:
                item = self._backlog.popleft() if self._backlog else self._take(self._channel.get(deadline))
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
                    frames = framing.split(payload.to_bytes(), lengths)
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

    @staticmethod
    def _take(sample: Any) -> Optional[tuple[Any, Optional[bytes]]]:
        """``(payload, attachment)`` of a sample: the payload stays a ``ZBytes`` until it is split."""
        if sample is None:
            return None
        attachment = sample.attachment
        return sample.payload, None if attachment is None else attachment.to_bytes()

    def _unpack(self, payload: Any, attachment: Optional[bytes]) -> tuple[Envelope, bytes]:
        if len(payload) > self._max_message_size:
            raise DecodeError(f"a message of {len(payload)} bytes is over max_message_size "
                              f"({self._max_message_size})")
        if attachment is None or len(attachment) < envelope.ENVELOPE.size:
            raise DecodeError("a zenoh message without a wrapyfi_like envelope attachment")
        return envelope.unpack(attachment[:envelope.ENVELOPE.size]), attachment[envelope.ENVELOPE.size:]

    def _newest(self, item: tuple, stamp: Envelope, lengths: bytes) -> tuple[tuple, Envelope, bytes]:
        """The newest waiting ``LATEST`` message of ``stamp``'s publisher; the older ones are
        counted as ``dropped`` (through the sequence check, so they are not counted as missed)."""
        self._backlog.extend(self._take(sample) for sample in self._channel.drain(self._depth))

        def same_stream(other: tuple) -> bool:
            try:
                other_stamp, _ = self._unpack(*other)
            except DecodeError:
                return False
            return other_stamp.publisher == stamp.publisher and bool(other_stamp.flags & LATEST)
        newer = [other for other in self._backlog if same_stream(other)]
        if not newer:
            return item, stamp, lengths
        self._backlog = deque(other for other in self._backlog if not same_stream(other))
        for older in [item, *newer[:-1]]:
            older_stamp, _ = self._unpack(*older)
            if self._sequence.accept(older_stamp) >= 0:
                self._count_dropped(older_stamp.publisher)
        newest_stamp, newest_lengths = self._unpack(*newer[-1])
        return newer[-1], newest_stamp, newest_lengths

    def close(self) -> None:
        """Close, also while another thread waits in :meth:`recv` (it gets :class:`ClosedError`).

        After the subscriber is undeclared, what still waits in the channel is dropped, so a zenoh
        task waiting for room returns before the session goes away (zenoh cannot close a session
        whose receive task is stuck).
        """
        if not self._channel.close():
            return
        for entity in (self._token, self._subscriber):
            try:
                entity.undeclare()
            except Exception as error:  # already gone with its session
                logger.debug("listener on %s: undeclare: %s", self.topic, error)
        self._channel.discard()
        close_quietly(self._session, f"the session of listener on {self.topic}")
