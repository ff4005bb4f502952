"""The loop behind ``hz`` and ``bw``: collect receive times and sizes, show figures once a second.

In a terminal the figures are redrawn in place (rich); in a pipe or a file each refresh is
printed after the previous one, so logs keep the history. The last figures are always printed
when the command stops (``--count`` reached, or Ctrl-C).
"""

from __future__ import annotations

import argparse
import time
from collections import deque
from typing import Callable, Optional, TextIO

from wrapyfi_like.cli.command import CommandError, positive_float, positive_int, require_extra
from wrapyfi_like.cli.subscription import Subscription
from wrapyfi_like.cli.systems import add_mware_argument

REFRESH_SECONDS = 1.0

Render = Callable[[str, deque, deque], Optional[str]]
"""(topic, receive times in seconds, sizes in bytes) → the text to show; None until the window
holds enough messages for figures."""


def add_monitor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topic", metavar="TOPIC", help="the topic to watch (matched exactly)")
    parser.add_argument("--window", type=positive_int, default=1000, metavar="N",
                        help="compute over the last N messages (default 1000)")
    parser.add_argument("--count", type=positive_int, metavar="N",
                        help="stop after N messages and print the final figures")
    parser.add_argument("--timeout", type=positive_float, metavar="SECONDS",
                        help="exit 1 if no message arrives for this long (default: wait forever)")
    add_mware_argument(parser)


def monitor(args: argparse.Namespace, out: TextIO, tool: str, render: Render) -> int:
    require_extra("rich")
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    console = Console(file=out, highlight=False)
    live = Live(console=console, auto_refresh=False) if console.is_terminal else None

    times: deque = deque(maxlen=args.window)
    sizes: deque = deque(maxlen=args.window)

    def figures() -> str:
        text = render(args.topic, times, sizes)
        return f"{args.topic}: waiting for messages ({len(times)} so far)" if text is None else text

    def show(text: str) -> None:
        if live is not None:
            live.update(Text(text), refresh=True)
        else:
            out.write(text + "\n")
            out.flush()
    received = 0
    with Subscription(args.topic, tool, args.mware) as subscription:
        if live is not None:
            live.start()
        try:
            last_arrival = next_refresh = time.monotonic()
            next_refresh += REFRESH_SECONDS
            while args.count is None or received < args.count:
                now = time.monotonic()
                wait = next_refresh - now
                if args.timeout is not None:
                    wait = min(wait, last_arrival + args.timeout - now)
                message = subscription.poll(max(wait, 0.0))
                now = time.monotonic()
                if message is not None:
                    times.append(message.time_ns / 1e9)
                    sizes.append(message.size)
                    received += 1
                    last_arrival = now
                elif args.timeout is not None and now - last_arrival >= args.timeout:
                    raise CommandError(f"no message on {args.topic} within {args.timeout:g} s")
                if now >= next_refresh:
                    show(figures())
                    next_refresh = now + REFRESH_SECONDS
        except KeyboardInterrupt:
            pass
        finally:
            if live is not None:  # the last figures replace the live ones instead of following them
                show(figures())
                live.stop()
    if live is None:
        show(figures())
    return 0
