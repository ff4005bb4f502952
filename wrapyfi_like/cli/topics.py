"""``wrapyfi-like topics``: the live topics and who publishes, listens to or serves each.

The first line names the domain (``WRAPYFI_LIKE_DOMAIN``) and the directory asked (or, with
``--mware zenoh``, the zenoh endpoints), so a user who sees nothing knows which system they looked at.
"""

from __future__ import annotations

import argparse
from typing import TextIO

from wrapyfi_like.cli.command import Command, positive_float
from wrapyfi_like.cli.systems import add_mware_argument, system


def list_topics(args: argparse.Namespace, out: TextIO) -> int:
    looked_at = system(args.mware)
    try:
        by_topic = looked_at.participants(args.timeout)
        out.write(looked_at.describe() + "\n")
    finally:
        looked_at.close()
    if not by_topic:
        out.write("no topics (peers answer, but nothing is announced)\n")
    for topic, members in by_topic.items():
        out.write(f"{topic}\n")
        for member in members:
            info = member.info
            who = info.get("class_name", "?") + (f" ({info['data_type']})" if "data_type" in info else "")
            where = f"pid {info.get('pid', '?')} on {info.get('host', '?')}"
            out.write(f"  {member.kind:<9}  {who:<32}  {where}  {member.endpoint}".rstrip() + "\n")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=positive_float, default=2.0, metavar="SECONDS",
                        help="how long to wait for the discovery directory to answer; with --mware "
                             "zenoh, how long to listen for announcements (default 2)")
    add_mware_argument(parser)


COMMAND = Command(list_topics, "list live topics with their publishers, listeners and servers "
                               "(address, pid, data type)", add_arguments)
