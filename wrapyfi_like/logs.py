"""Logging of what peers send: rate-limited per source, with peer-supplied text truncated.

A peer that sends a million bad messages must not write a million log lines, nor make one line
a megabyte long. :class:`RateLimitedLog` logs the first message of each (source, kind) pair,
then at most one per ``interval`` seconds, and says how many it suppressed in between
("suppressed 9,871 similar messages"). :func:`truncate` shortens any text a peer chose (topics,
codec ids, error strings) before it reaches a log line or an error reply.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any

PEER_TEXT_LIMIT = 200
"""Characters of peer-supplied text kept in a log line or an error reply."""
LOG_INTERVAL = 10.0
"""Seconds between two log lines about the same kind of problem from the same source."""
MAX_SOURCES = 1024
"""Sources remembered per log. A new source takes the place of the least recently seen one once
that one's quiet window has passed; while all are within theirs, new sources share one limit
(:data:`OTHER_SOURCES`), so inventing sources cannot flood the log or grow memory."""
OTHER_SOURCES = "other sources"


def truncate(text: Any, limit: int = PEER_TEXT_LIMIT) -> str:
    """``text`` as a string of at most about ``limit`` characters, saying how much was cut."""
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


class RateLimitedLog:
    """One logger's messages about bad input, at most one per ``interval`` per (source, kind)."""

    def __init__(self, logger: logging.Logger, interval: float = LOG_INTERVAL) -> None:
        self._logger = logger
        self._interval = interval
        self._lock = threading.Lock()
        self._sources: OrderedDict[tuple[str, str], list] = OrderedDict()  # key -> [next_time, suppressed]

    def warning(self, source: str, kind: str, message: str, *args: Any, exc_info: bool = False) -> None:
        """Log ``message % args`` at WARNING unless ``source`` logged ``kind`` within ``interval``."""
        self.log(logging.WARNING, source, kind, message, *args, exc_info=exc_info)

    def log(self, level: int, source: str, kind: str, message: str, *args: Any, exc_info: bool = False) -> None:
        if not self._logger.isEnabledFor(level):
            return
        now = time.monotonic()
        key = (source, kind)
        with self._lock:
            state = self._sources.get(key)
            if state is None and len(self._sources) >= MAX_SOURCES:
                oldest_key, oldest = next(iter(self._sources.items()))
                if now < oldest[0] or oldest_key[0] == OTHER_SOURCES:
                    # every remembered source is still in its quiet window: a peer inventing
                    # sources shares one limit with all the others it invents
                    key = (OTHER_SOURCES, kind)
                    state = self._sources.get(key)
                else:
                    del self._sources[oldest_key]
            if state is not None and now < state[0]:
                state[1] += 1
                self._sources.move_to_end(key)
                return
            suppressed = state[1] if state is not None else 0
            self._sources[key] = [now + self._interval, 0]
            self._sources.move_to_end(key)
        if suppressed:
            message += " (suppressed %s similar messages from %s in the last %.0f s)"
            args = (*args, f"{suppressed:,}", truncate(source), self._interval)
        self._logger.log(level, message, *args, exc_info=exc_info)
