"""``wrapyfi-like topics``: the live topics and who publishes, listens to or serves each.

The first line names the domain (``WRAPYFI_LIKE_DOMAIN``) and the directory asked, so a user who
sees nothing knows which system they looked at.
"""

from __future__ import annotations

import argparse
from typing import TextIO

from wrapyfi_like.cli.command import Command, positive_float
from wrapyfi_like.cli.directory import participants
from wrapyfi_like.middlewares.zeromq.discovery import list_directory
from wrapyfi_like.middlewares.zeromq.settings import ZeroMQSettings


def list_topics(args: argparse.Namespace, out: TextIO) -> int:
    settings = ZeroMQSettings.from_environment()
    by_topic = participants(list_directory(timeout=args.timeout))
    out.write(f"domain {settings.domain} (discovery {settings.discovery})\n")
    if not by_topic:
        out.write("no topics (a directory is running, but nothing is announced)\n")
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
                        help="how long to wait for the discovery directory to answer (default 2)")


COMMAND = Command(list_topics, "list live topics with their publishers, listeners and servers "
                               "(address, pid, data type)", add_arguments)
