"""``wrapyfi-like echo TOPIC``: print each message, decoded, with big payloads summarised.

Binary and JSON-mode messages alike: the codec tells them apart by their first byte. A message
may load any of the package's own plugins (torch, pandas, pyarrow, Pillow …) even if no library
was imported: echo is a local tool its user trusts, and those plugins never unpickle. A plugin
from elsewhere (an entry point) is still never loaded by what arrives."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from wrapyfi_like.cli.command import Command, positive_float, positive_int
from wrapyfi_like.cli.subscription import Subscription
from wrapyfi_like.cli.summary import summarise, to_json, to_text
from wrapyfi_like.cli.systems import add_mware_argument
from wrapyfi_like.encoding import Codec
from wrapyfi_like.exceptions import DecodeError
from wrapyfi_like.utils.plugin_discovery import builtin_index


def echo(args: argparse.Namespace, out: TextIO) -> int:
    codec = Codec(allowed_plugins=[codec_id for plugin in builtin_index() for codec_id in plugin.codec_ids])
    count = 1 if args.once else args.count
    printed = 0
    with Subscription(args.topic, "echo", args.mware) as subscription:
        try:
            while count is None or printed < count:
                try:
                    value = summarise(codec.decode(subscription.receive(args.timeout).frames))
                except DecodeError as error:  # reported and skipped, as a listener does
                    sys.stderr.write(f"skipped a malformed message on {args.topic}: {error}\n")
                    continue
                printed += 1
                if args.json:
                    out.write(json.dumps(to_json(value)) + "\n")
                else:
                    out.write(to_text(value) + "\n---\n")
                out.flush()
        except KeyboardInterrupt:
            pass
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topic", metavar="TOPIC", help="the topic to print (matched exactly)")
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument("--once", action="store_true", help="print one message and exit")
    stop.add_argument("--count", type=positive_int, metavar="N", help="print N messages and exit")
    parser.add_argument("--json", action="store_true",
                        help="one JSON document per line (summaries as objects) instead of text")
    parser.add_argument("--timeout", type=positive_float, metavar="SECONDS",
                        help="exit 1 if no message arrives for this long (default: wait forever)")
    add_mware_argument(parser)


COMMAND = Command(echo, "print the messages on a topic, with arrays, tensors, images and tables "
                        "summarised as shape, dtype and min/max/mean", add_arguments)
