"""``wrapyfi-like play FILE.mcap``: publish a recording again, at its pace, bytes unchanged.

Each recorded topic gets a publisher that waits (``--wait``) for its first listener, so nothing is
sent into the void; a topic that gets no listener in time is skipped and its messages counted,
and the command then exits 1. The recorded frames are sent as they are, so a normal listener
decodes exactly what was recorded.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

from wrapyfi_like.cli.command import Command, CommandError, positive_float, require_extra
from wrapyfi_like.cli.pacing import sleep_until
from wrapyfi_like.cli.systems import add_mware_argument
from wrapyfi_like.exceptions import WaitTimeout
from wrapyfi_like.middlewares import middleware_module


def recorded_counts(path: str) -> dict[str, int]:
    """Messages per topic, from the file's summary section."""
    from wrapyfi_like.cli.mcap_format import read_summary

    _header, summary = read_summary(path)
    counts: dict[str, int] = {}
    for channel_id, channel in summary.channels.items():
        counts[channel.topic] = counts.get(channel.topic, 0) + summary.statistics.channel_message_counts.get(channel_id, 0)
    return counts


class Player:
    """Publishers per topic, created on a topic's first message; remembers topics nobody listened to."""

    def __init__(self, wait: float, mware: str = "zeromq") -> None:
        self._wait = wait
        self._mware = mware
        self._publishers: dict = {}
        self.unheard: dict[str, int] = {}
        self.sent = 0

    def send(self, topic: str, data_type: str, frames: list) -> float:
        """Send one message; returns the seconds spent waiting for the topic's first listener."""
        if topic in self.unheard:
            self.unheard[topic] += 1
            return 0.0
        publisher = self._publishers.get(topic)
        started = time.monotonic()
        first = publisher is None
        if first:
            publisher = self._publishers[topic] = middleware_module(self._mware).PublisherTransport(
                topic, should_wait=True, wait_timeout=self._wait,
                info={"class_name": "wrapyfi-like play", "data_type": data_type})
        try:
            publisher.send(frames)
        except WaitTimeout:
            sys.stderr.write(f"no listener on {topic} within {self._wait:g} s; skipping its messages\n")
            self.unheard[topic] = 1
            return time.monotonic() - started
        self.sent += 1
        return time.monotonic() - started if first else 0.0

    def close(self) -> None:
        for publisher in self._publishers.values():
            publisher.close()  # lingers until queued messages are delivered


def play(args: argparse.Namespace, out: TextIO) -> int:
    require_extra("mcap")
    require_extra("rich")
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from wrapyfi_like.cli.mcap_format import read_messages

    counts = recorded_counts(args.file)
    missing = [topic for topic in args.topics or () if topic not in counts]
    if missing:
        raise CommandError(f"{args.file} has no topic {', '.join(missing)} (it has: {', '.join(sorted(counts))})")
    total = sum(counts[topic] for topic in (args.topics or counts))
    player = Player(args.wait, args.mware)
    console = Console(file=sys.stderr)
    # Only a terminal shows the bar; in a pipe or a log rich would still leave an empty line.
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, transient=True, disable=not console.is_terminal)
    try:
        with progress:
            passes = 0
            while True:
                passes += 1
                task = progress.add_task(f"playing {args.file}" + (f" (pass {passes})" if args.loop else ""),
                                         total=total)
                _play_once(args, player, read_messages, lambda: progress.advance(task))
                progress.remove_task(task)
                if not args.loop:
                    break
    except KeyboardInterrupt:
        pass
    finally:
        player.close()
    out.write(f"played {player.sent} messages from {args.file}\n")
    if player.unheard:
        skipped = ", ".join(f"{topic} ({count})" for topic, count in sorted(player.unheard.items()))
        raise CommandError(f"skipped messages on topics nobody listened to: {skipped}")
    return 0


def _play_once(args: argparse.Namespace, player: Player, read_messages, advance) -> None:
    """One pass over the file, each message sent at its recorded offset divided by ``--rate``."""
    with open(args.file, "rb") as stream:
        start = first_log_time = None
        for message in read_messages(stream, args.topics):
            if start is None:
                start, first_log_time = time.monotonic(), message.log_time_ns
            else:
                sleep_until(start + (message.log_time_ns - first_log_time) / 1e9 / args.rate)
            start += player.send(message.topic, message.data_type, message.frames)
            advance()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.mcap")
    parser.add_argument("--rate", type=positive_float, default=1.0, metavar="X",
                        help="play X times as fast as recorded (default 1)")
    parser.add_argument("--loop", action="store_true", help="start again at the end, until Ctrl-C")
    parser.add_argument("--topics", nargs="+", metavar="TOPIC", help="play only these topics")
    parser.add_argument("--wait", type=positive_float, default=10.0, metavar="SECONDS",
                        help="how long each topic waits for a first listener (default 10)")
    add_mware_argument(parser)


COMMAND = Command(play, "publish the messages of an MCAP recording again, at the recorded pace",
                  add_arguments)
