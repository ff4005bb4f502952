"""What every subcommand is made of, and the one error a command raises to stop with a message."""

from __future__ import annotations

import argparse
from typing import Callable, NamedTuple, Optional, TextIO


class Command(NamedTuple):
    """A subcommand: ``run(args, out) -> exit code``, its one-line help, and its own arguments."""

    run: Callable[[argparse.Namespace, TextIO], int]
    help: str
    add_arguments: Optional[Callable[[argparse.ArgumentParser], None]] = None


class CommandError(Exception):
    """Stops a command: :func:`~wrapyfi_like.cli.app.main` prints the message as one line and
    exits with ``exit_code``, never with a traceback."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def positive_float(text: str) -> float:
    """An argparse type: a number of seconds or hertz, which must be above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a count, which must be at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def require_extra(module: str) -> None:
    """Fail with an install hint when an optional dependency of the ``cli`` extra is missing."""
    try:
        __import__(module)
    except ImportError:
        raise CommandError(f"this command needs the '{module}' package: install the cli extra, in the "
                           "wrapyfi_like checkout: pip install -c constraints.txt -e '.[cli]'") from None
