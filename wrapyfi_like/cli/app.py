"""Parsing and dispatch: every error a command meets becomes one line and a non-zero exit."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Optional, Sequence, TextIO

from wrapyfi_like.cli import INTERRUPTED, PROG, bandwidth, echo, info, play, plugins, pub, rate, record, topics
from wrapyfi_like.cli.command import Command, CommandError
from wrapyfi_like.exceptions import WrapyfiLikeError

COMMANDS: dict[str, Command] = {
    "topics": topics.COMMAND,
    "echo": echo.COMMAND,
    "hz": rate.COMMAND,
    "bw": bandwidth.COMMAND,
    "pub": pub.COMMAND,
    "record": record.COMMAND,
    "play": play.COMMAND,
    "info": info.COMMAND,
    "plugins": plugins.COMMAND,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Inspect, record and replay wrapyfi_like topics.")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = subcommands.add_parser(name, help=command.help, description=command.help)
        if command.add_arguments is not None:
            command.add_arguments(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None, out: TextIO = sys.stdout) -> int:
    """Run one command; returns its exit code. Errors go to stderr as one line."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args, out)
    except CommandError as error:
        return _fail(args.command, str(error), error.exit_code)
    except BrokenPipeError:  # the reader went away (`| head`): nothing more to say to it
        if out is sys.stdout:  # else Python's exit flush reports the broken pipe with a traceback
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        return 1
    except (WrapyfiLikeError, OSError) as error:
        return _fail(args.command, str(error) or type(error).__name__, 1)
    except KeyboardInterrupt:
        return _fail(args.command, "interrupted", INTERRUPTED)
    except Exception as error:  # the docs promise one line, never a traceback
        return _fail(args.command, f"unexpected {type(error).__name__}: {error} (a bug in {PROG}: please "
                                   "report it with the command line)", 1)


def _fail(command: str, message: str, exit_code: int) -> int:
    sys.stderr.write(f"{PROG} {command}: error: {' '.join(message.split())}\n")  # one line, always
    return exit_code


def run() -> None:
    """The console script: SIGTERM stops a command as Ctrl-C does (a recording is finished). Once
    the command has returned, Ctrl-C is ignored, so exiting (which closes sockets) ends quietly."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    code = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(code)
