"""Bounded waits: a deadline (``time.monotonic()`` seconds, or None for no limit) to poll timeouts."""

from __future__ import annotations

import time
from typing import Optional


def deadline_after(timeout: Optional[float]) -> Optional[float]:
    return None if timeout is None else time.monotonic() + timeout


def remaining_ms(deadline: Optional[float]) -> Optional[int]:
    """Milliseconds left before ``deadline`` for ``zmq.Poller.poll`` (None: wait as long as it takes)."""
    if deadline is None:
        return None
    return max(0, int((deadline - time.monotonic()) * 1000))


def remaining_seconds(deadline: Optional[float]) -> Optional[float]:
    """Seconds left before ``deadline`` for ``zmq.select``."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())
