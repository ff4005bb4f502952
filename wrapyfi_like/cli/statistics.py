"""Rate and bandwidth over a window of receive times and sizes, as ``ros2 topic hz/bw`` report them.

Pure functions of the window, so they are tested directly; the commands only collect and print.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import numpy as np


class RateStatistics(NamedTuple):
    rate: float
    """Messages per second: intervals in the window over the time they span."""
    min_period: float
    max_period: float
    std_period: float
    window: int
    """Messages the figures are computed from."""


class BandwidthStatistics(NamedTuple):
    bytes_per_second: float
    """Bytes that arrived after the window's first message, over the time the window spans."""
    mean_size: float
    min_size: int
    max_size: int
    std_size: float
    window: int


def rate_statistics(times: Sequence[float]) -> Optional[RateStatistics]:
    """From receive times in seconds (ascending); None until two messages make an interval."""
    if len(times) < 2:
        return None
    periods = np.diff(np.asarray(times, dtype=np.float64))
    span = float(periods.sum())
    rate = len(periods) / span if span > 0 else float("inf")
    return RateStatistics(rate, float(periods.min()), float(periods.max()), float(periods.std()), len(times))


def bandwidth_statistics(times: Sequence[float], sizes: Sequence[int]) -> Optional[BandwidthStatistics]:
    """From receive times in seconds (ascending) and message sizes in bytes; None below two messages."""
    if len(times) < 2:
        return None
    span = times[-1] - times[0]
    sized = np.asarray(sizes, dtype=np.float64)
    arrived = float(sized[1:].sum())
    return BandwidthStatistics(arrived / span if span > 0 else float("inf"), float(sized.mean()),
                               int(sized.min()), int(sized.max()), float(sized.std()), len(sizes))


def human_bytes(count: float) -> str:
    """``1.50 MB`` style, in powers of 1000 as network rates are usually given."""
    if abs(count) < 1000:
        return f"{count:.0f} B"
    for unit in ("KB", "MB"):
        count /= 1000
        if abs(count) < 1000:
            return f"{count:.2f} {unit}"
    return f"{count / 1000:.2f} GB"
