"""``wrapyfi-like pub TOPIC VALUE``: publish a YAML or JSON value once, or at a rate."""

from __future__ import annotations

import argparse
import time
from typing import Any, TextIO

import yaml

from wrapyfi_like.cli.command import Command, CommandError, positive_float, positive_int
from wrapyfi_like.cli.pacing import sleep_until
from wrapyfi_like.cli.systems import add_mware_argument
from wrapyfi_like.connect.publishers import Publisher


def parse_value(text: str) -> Any:
    """A YAML document (JSON is YAML too): ``'{a: 1, b: [1, 2]}'``, ``'3.5'``, ``'hello'``."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise CommandError(f"VALUE is not valid YAML or JSON: {' '.join(str(error).split())}") from None


def pub(args: argparse.Namespace, out: TextIO) -> int:
    value = parse_value(args.value)
    count = args.count if args.count is not None else (None if args.rate else 1)
    publisher = Publisher("wrapyfi-like pub", args.topic, should_wait=True, wait_timeout=args.timeout,
                          middleware=args.mware)
    try:
        period = 1.0 / args.rate if args.rate else 0.0
        next_time = time.monotonic()
        while count is None or publisher.sent < count:
            publisher.publish(value)
            # After a wait (for a listener, or for room), go on at the rate; never burst to catch up.
            next_time = max(next_time + period, time.monotonic())
            if count is None or publisher.sent < count:
                sleep_until(next_time)
    except KeyboardInterrupt:
        pass
    finally:
        publisher.close()
    out.write(f"published {publisher.sent} message{'s' if publisher.sent != 1 else ''} on {args.topic}\n")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topic", metavar="TOPIC", help="the topic to publish on")
    parser.add_argument("value", metavar="VALUE", help="a YAML or JSON value, e.g. '{msg: hi, n: [1, 2]}'")
    parser.add_argument("--rate", type=positive_float, metavar="HZ",
                        help="publish repeatedly at this rate until Ctrl-C (or --count)")
    parser.add_argument("--count", type=positive_int, metavar="N", help="publish N times, then exit")
    parser.add_argument("--timeout", type=positive_float, metavar="SECONDS",
                        help="exit 1 if no listener appears within this long (default: wait forever)")
    add_mware_argument(parser)


COMMAND = Command(pub, "publish a YAML/JSON value on a topic, once or at a rate", add_arguments)
