"""``wrapyfi-like hz TOPIC``: how often messages arrive, with min/max/std of the period."""

from __future__ import annotations

import argparse
from collections import deque
from typing import Optional, TextIO

from wrapyfi_like.cli.command import Command
from wrapyfi_like.cli.monitor import add_monitor_arguments, monitor
from wrapyfi_like.cli.statistics import rate_statistics


def render_rate(topic: str, times: deque, sizes: deque) -> Optional[str]:
    stats = rate_statistics(times)
    if stats is None:
        return None
    return (f"{topic}: average rate: {stats.rate:.3f} Hz\n"
            f"  min: {stats.min_period:.6f}s  max: {stats.max_period:.6f}s  "
            f"std dev: {stats.std_period:.6f}s  window: {stats.window}")


def hz(args: argparse.Namespace, out: TextIO) -> int:
    return monitor(args, out, "hz", render_rate)


COMMAND = Command(hz, "show the rate a topic's messages arrive at, refreshed in place", add_monitor_arguments)
