"""Keeping to a schedule: ``pub --rate`` and ``play`` send each message at its due time."""

from __future__ import annotations

import time


def sleep_until(due: float) -> None:
    """Sleep until ``time.monotonic()`` reaches ``due`` (at once if it has).

    This is pacing, not waiting for a peer: the due time comes from the user's rate or the
    recording's timestamps, and nothing can make it arrive sooner. Ctrl-C (and SIGTERM, which the
    console script turns into it) interrupts the sleep.
    """
    time.sleep(max(0.0, due - time.monotonic()))
