"""Stand-ins for communicators whose middleware is absent: Wrapyfi's fallback, kept.

A Wrapyfi script names middlewares by argument (``--mware_B ros2``), and Wrapyfi gives a
communicator whose middleware is not installed (or ``"none"``) a fallback that does nothing, so
the rest of the method still communicates. The same here, per communicator, as measured on
Wrapyfi 0.5.0:

| mode | stand-in |
|---|---|
| publish | the method runs; this value is not sent |
| listen | this value is None (every data type; no ``(None, rate)``), without waiting |
| reply | the method runs with the call's own arguments; nothing is sent back |
| request | every value is None |

A middleware Wrapyfi knows but this package lacks is logged once per process at WARNING, naming
it; ``"none"`` is an explicit choice and only logged at DEBUG.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Optional

from wrapyfi_like.middlewares import NO_MIDDLEWARE, MIDDLEWARES

logger = logging.getLogger("wrapyfi_like.connect")
_warned: set[str] = set()
_warned_lock = threading.Lock()
_ZERO = {"sent": 0, "received": 0, "dropped": 0, "malformed": 0, "missed": 0, "duplicate": 0, "incomplete": 0}


def report_absent(middleware: str, topic: str) -> None:
    """Say, once per middleware name and process, that ``middleware`` communicates nothing here."""
    if middleware == NO_MIDDLEWARE:
        logger.debug("middleware 'none' on %s: the method runs without communicating", topic)
        return
    with _warned_lock:
        if middleware in _warned:
            return
        _warned.add(middleware)
    logger.warning("middleware %r is not available in wrapyfi_like (it has %s): communicators for it "
                   "(first: %s) do nothing, as Wrapyfi's fallback does", middleware,
                   ", ".join(sorted(MIDDLEWARES)), topic)


class Absent:
    """A publisher, listener, server or client of an absent middleware: sends and receives nothing."""

    absent = True
    incomplete = 0

    def __init__(self, topic: str, middleware: str, role: str) -> None:
        report_absent(middleware, topic)
        self.middleware = middleware
        if role in ("publish", "reply"):
            self.out_topic = topic
        else:
            self.in_topic = topic

    def publish(self, value: Any, group: Optional[Any] = None) -> None:
        """Send nothing."""

    def listen(self) -> None:
        return None

    def empty(self) -> None:
        return None

    def stats(self) -> dict[str, int]:
        return dict(_ZERO)

    def publisher_stats(self) -> dict[str, dict[str, int]]:
        return {}

    def close(self) -> None:
        """Nothing to close."""
