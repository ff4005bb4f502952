"""The ``python -m wrapyfi_like`` command line: one subcommand per task.

Each subcommand is a function taking the parsed arguments and returning the exit code, added to
:data:`COMMANDS` with its help text and an optional function that adds its own arguments.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, NamedTuple, Optional, Sequence, TextIO

from wrapyfi_like.utils import plugin_discovery


class Command(NamedTuple):
    run: Callable[[argparse.Namespace, TextIO], int]
    help: str
    add_arguments: Optional[Callable[[argparse.ArgumentParser], None]] = None


def list_plugins(args: argparse.Namespace, out: TextIO) -> int:
    """Load every plugin (built-in and from WRAPYFI_PLUGIN_PATHS) and list them; 1 if any failed."""
    plugin_discovery.load_external_plugins()
    plugin_discovery.load_all_builtins()
    for plugin in plugin_discovery.loaded_plugins():
        out.write(f"{plugin.codec_id}  ({plugin.name})\n")
        out.write(f"    from:  {plugin.source}\n")
        out.write(f"    types: {', '.join(plugin.types) or '(decodes only)'}\n")
    failures = plugin_discovery.load_failures()
    for failure in failures:
        out.write(f"FAILED {failure.path}\n    error: {failure.error}\n")
    return 1 if failures else 0


COMMANDS: dict[str, Command] = {
    "plugins": Command(list_plugins, "list the encoding plugins found, where from, their types and load errors"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m wrapyfi_like", description="wrapyfi_like tools")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = subcommands.add_parser(name, help=command.help, description=command.help)
        if command.add_arguments is not None:
            command.add_arguments(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None, out: TextIO = sys.stdout) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command].run(args, out)
