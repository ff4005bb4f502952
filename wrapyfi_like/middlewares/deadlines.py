"""Bounded waits: a deadline (``time.monotonic()`` seconds, or None for no limit) to poll timeouts.

A blocking wait is cut into slices of at most :data:`SIGNAL_CHECK` seconds, and its caller loops
until its condition or its deadline. Why: a signal sent to the process (Ctrl-C) may be taken by a
thread that is neither the main thread nor ours and does not block signals (numpy's OpenBLAS
pool, a user's thread; see :mod:`wrapyfi_like.background`). Python then runs the handler only
when the main thread next runs Python code, which a wait without end never does (measured: Ctrl-C
unheard in 5 of 100 listens under load, with one OpenBLAS thread).
"""

from __future__ import annotations

import time
from typing import Optional


def deadline_after(timeout: Optional[float]) -> Optional[float]:
    return None if timeout is None else time.monotonic() + timeout


SIGNAL_CHECK = 0.1
"""Seconds one slice of a blocking wait lasts at most, and so the longest a Ctrl-C waits."""


def slice_ms(deadline: Optional[float]) -> int:
    """Milliseconds for one ``zmq.Poller.poll`` slice of a wait until ``deadline`` (None: no limit)."""
    return int(slice_seconds(deadline) * 1000)


def slice_seconds(deadline: Optional[float]) -> float:
    """Seconds for one slice of a wait until ``deadline`` (None: no limit)."""
    if deadline is None:
        return SIGNAL_CHECK
    return max(0.0, min(SIGNAL_CHECK, deadline - time.monotonic()))


def remaining_seconds(deadline: Optional[float]) -> Optional[float]:
    """Seconds left before ``deadline`` for ``zmq.select``."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())
