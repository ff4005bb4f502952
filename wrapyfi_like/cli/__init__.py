"""The ``wrapyfi-like`` command line (also ``python -m wrapyfi_like``), one module per command.

Inspect a running system (``topics``, ``echo``, ``hz``, ``bw``), inject messages (``pub``), record
and replay it in MCAP files (``record``, ``play``, ``info``), and list plugins (``plugins``).
:func:`main` takes the arguments and the output stream, so tests run commands in-process.

This module imports nothing heavy itself: :func:`run` first makes Ctrl-C quiet, then imports the
commands (numpy, ZeroMQ …, a fair part of a second), so a Ctrl-C while they load is one line on
stderr, not a traceback from inside an import.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

PROG = "wrapyfi-like"
INTERRUPTED = 130
"""The exit code of a command stopped by Ctrl-C before it ran (128 + SIGINT, as shells report it)."""

__all__ = ["main", "run"]


def run() -> None:
    """The console script."""
    signal.signal(signal.SIGINT, _interrupted_while_starting)
    from wrapyfi_like.cli.app import run as run_command

    run_command()


def _interrupted_while_starting(signum: int, frame: Any) -> None:
    sys.stderr.write(f"{PROG}: interrupted while starting\n")
    raise SystemExit(INTERRUPTED)


def __getattr__(name: str) -> Any:
    if name == "main":  # imported on first use, so that run() guards the import
        from wrapyfi_like.cli.app import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
