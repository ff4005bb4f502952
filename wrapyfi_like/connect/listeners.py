"""A listener: transport → codec → data type. Bad messages are logged, counted and skipped."""

from __future__ import annotations

import logging
import threading
from typing import Any, Optional

from wrapyfi_like.connect.formats import ValueFormat
from wrapyfi_like.exceptions import DecodeError, ValidationError
from wrapyfi_like.limits import MAX_SKIPPED_WITHOUT_WAIT, check_max_message_size, check_queue_depth, check_topic
from wrapyfi_like.logs import RateLimitedLog, truncate
from wrapyfi_like.connect.wire import transports
from wrapyfi_like.middlewares.envelope import Group

logger = logging.getLogger("wrapyfi_like.listeners")
_NOTHING = object()
"""What :meth:`Listener._next` returns when nothing arrived (a received value may be None)."""
_bad_input = RateLimitedLog(logger)  # one line per topic per 10 s, with a count of the rest


class Listener:
    """Returns what arrives on ``in_topic``.

    ``should_wait=True`` blocks until a valid message arrives; ``False`` returns None when none is
    waiting (or after skipping :data:`~wrapyfi_like.limits.MAX_SKIPPED_WITHOUT_WAIT` malformed
    ones). A malformed message never reaches the caller: it is logged with the topic and the
    reason, counted in :attr:`malformed`, and the listener goes on to the next one. A message
    larger than ``max_message_size`` bytes (default
    :data:`~wrapyfi_like.limits.DEFAULT_MAX_MESSAGE_SIZE`) is malformed too, and is never held
    whole in memory. ``queue_depth`` bounds how many messages wait here unread (None: the
    transport's default); publishers apply their ``backpressure`` policy when it is full.
    ``bind_port`` (zeromq, tcp) fixes the port this listener binds, for firewalls and containers
    (docs/guide/configs.md); other middlewares have no port of their own and ignore it.

    Thread-safe: any thread may listen; concurrent calls take turns.
    """

    def __init__(self, name: str, in_topic: str, carrier: str = "tcp", should_wait: bool = True,
                 *, data_type: str = "NativeObject", middleware: str = "zeromq",
                 max_message_size: Optional[int] = None, queue_depth: Optional[int] = None,
                 curve_server_key: Optional[str] = None, bind_port: Optional[int] = None,
                 wire: Optional[str] = None, wire_sockets: Optional[dict] = None, **kwargs: Any) -> None:
        check_topic(in_topic)
        self.name = name
        self.in_topic = in_topic
        self.should_wait = should_wait
        self.max_message_size = check_max_message_size(max_message_size)
        self._format = ValueFormat(data_type, middleware=middleware, wire=wire, **kwargs)
        module, sockets = transports(middleware, wire, wire_sockets)
        self._transport = module.ListenerTransport(
            in_topic, carrier=carrier, info={"class_name": name, "data_type": data_type},
            max_message_size=self.max_message_size, queue_depth=check_queue_depth(queue_depth),
            curve_server_key=curve_server_key, bind_port=bind_port, **sockets,
        )
        self._lock = threading.Lock()
        self.received = 0
        self.malformed = 0
        self.incomplete = 0

    def listen(self) -> Any:
        """The next valid message's value, or (``should_wait=False``) the empty value if none waits."""
        with self._lock:
            value = self._next()
        return self._format.empty() if value is _NOTHING else value

    def listen_part(self) -> Optional[tuple[Any, Optional[Group], Optional[bytes]]]:
        """The next valid message's ``(value, group, publisher)``, or None if
        (``should_wait=False``) none waits. ``group`` is the call group the publisher stamped
        (None: not part of a stacked call, or a transport that does not carry groups) and
        ``publisher`` the sender's publisher id (None without an envelope), to which a stacked
        listener binds the group's origin."""
        with self._lock:
            value = self._next()
            if value is _NOTHING:
                return None
            stamp = getattr(self._transport, "last_envelope", None)
            return (value, None, None) if stamp is None else (value, stamp.group, stamp.publisher)

    def empty(self) -> Any:
        """What a listen returns when nothing arrived (None, or e.g. AudioChunk's ``(None, rate)``)."""
        return self._format.empty()

    def _next(self) -> Any:
        timeout = None if self.should_wait else 0.0
        skips_left = None if self.should_wait else MAX_SKIPPED_WITHOUT_WAIT
        while True:
            try:
                frames = self._transport.recv(timeout)
                if frames is None:
                    return _NOTHING
                value = self._format.decode(frames)
            except ValidationError:  # on_invalid="raise": counted here, handled by the caller
                self.malformed += 1
                raise
            except DecodeError as error:
                self.malformed += 1
                _bad_input.warning(self.in_topic, "malformed", "skipped a malformed message on %s: %s",
                                   self.in_topic, truncate(error))
                if skips_left is not None:
                    skips_left -= 1
                    if not skips_left:
                        return _NOTHING
                continue
            self.received += 1
            return value

    def stats(self) -> dict[str, int]:
        """Counts since this listener was built: ``received`` (here), ``malformed`` (messages the
        transport refused, plus values the codec or validation refused here), ``missed``,
        ``duplicate`` and ``dropped`` (the transport's sequence check and ``latest`` skips), and
        ``incomplete`` (parts of a stacked call discarded because another part never arrived);
        with ``carrier="shm"`` also the transport's ``shm``, ``shm_received`` and ``shm_missed``."""
        transport = _transport_statistics(self._transport)
        return {"sent": 0, "received": self.received, "dropped": transport.get("dropped", 0),
                "malformed": self.malformed + transport.get("malformed", 0), "missed": transport.get("missed", 0),
                "duplicate": transport.get("duplicate", 0), "incomplete": self.incomplete,
                **{name: count for name, count in transport.items() if name.startswith("shm")}}

    def publisher_stats(self) -> dict[str, dict[str, int]]:
        """The transport's counts per publisher heard, by publisher id in hex."""
        per_publisher = getattr(self._transport, "per_publisher", None)
        return per_publisher() if per_publisher is not None else {}

    def close(self) -> None:
        self._transport.close()


def _transport_statistics(transport: Any) -> dict[str, int]:
    """The transport's counters; a transport that keeps none reports nothing missed."""
    statistics = getattr(transport, "statistics", None)
    return statistics() if statistics is not None else {}
