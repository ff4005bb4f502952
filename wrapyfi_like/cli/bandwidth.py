"""``wrapyfi-like bw TOPIC``: bytes per second on a topic, with the message sizes' min/max/std."""

from __future__ import annotations

import argparse
from collections import deque
from typing import Optional, TextIO

from wrapyfi_like.cli.command import Command
from wrapyfi_like.cli.monitor import add_monitor_arguments, monitor
from wrapyfi_like.cli.statistics import bandwidth_statistics, human_bytes


def render_bandwidth(topic: str, times: deque, sizes: deque) -> Optional[str]:
    stats = bandwidth_statistics(times, sizes)
    if stats is None:
        return None
    return (f"{topic}: {human_bytes(stats.bytes_per_second)}/s from {stats.window} messages\n"
            f"  message size mean: {human_bytes(stats.mean_size)}  min: {human_bytes(stats.min_size)}  "
            f"max: {human_bytes(stats.max_size)}  std dev: {human_bytes(stats.std_size)}")


def bw(args: argparse.Namespace, out: TextIO) -> int:
    return monitor(args, out, "bw", render_bandwidth)


COMMAND = Command(bw, "show the bandwidth a topic uses (header and buffers per message), "
                      "refreshed in place", add_monitor_arguments)
