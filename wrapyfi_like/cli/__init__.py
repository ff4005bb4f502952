"""The ``wrapyfi-like`` command line (also ``python -m wrapyfi_like``), one module per command.

Inspect a running system (``topics``, ``echo``, ``hz``, ``bw``), inject messages (``pub``), record
and replay it in MCAP files (``record``, ``play``, ``info``), and list plugins (``plugins``).
:func:`main` takes the arguments and the output stream, so tests run commands in-process.
"""

from wrapyfi_like.cli.app import main, run

__all__ = ["main", "run"]
