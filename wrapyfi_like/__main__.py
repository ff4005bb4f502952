"""``python -m wrapyfi_like COMMAND``: see :mod:`wrapyfi_like.cli`."""

from wrapyfi_like.cli import run

run()
