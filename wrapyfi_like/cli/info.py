"""``wrapyfi-like info FILE.mcap``: what a recording holds: topics, counts, data types, duration."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import TextIO

from wrapyfi_like.cli.command import Command, require_extra


def _when(time_ns: int) -> str:
    return dt.datetime.fromtimestamp(time_ns / 1e9, dt.timezone.utc).isoformat(timespec="milliseconds")


def info(args: argparse.Namespace, out: TextIO) -> int:
    require_extra("mcap")
    from wrapyfi_like.cli.mcap_format import read_summary

    header, summary = read_summary(args.file)
    stats = summary.statistics
    out.write(f"file:      {args.file}\n")
    out.write(f"written:   {header.library or '?'} (profile {header.profile or 'none'})\n")
    out.write(f"messages:  {stats.message_count}\n")
    if stats.message_count:
        duration = (stats.message_end_time - stats.message_start_time) / 1e9
        out.write(f"duration:  {duration:.3f} s\n")
        out.write(f"start:     {_when(stats.message_start_time)}\n")
        out.write(f"end:       {_when(stats.message_end_time)}\n")
    out.write(f"topics:    {len({channel.topic for channel in summary.channels.values()})}\n")
    for channel_id, channel in sorted(summary.channels.items(), key=lambda item: item[1].topic):
        count = stats.channel_message_counts.get(channel_id, 0)
        data_type = channel.metadata.get("data_type", "?")
        out.write(f"  {channel.topic}  {count} messages  {data_type}  ({channel.message_encoding})\n")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.mcap")


COMMAND = Command(info, "summarise an MCAP recording: topics, message counts, data types, duration",
                  add_arguments)
