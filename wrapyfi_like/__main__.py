"""``python -m wrapyfi_like COMMAND``: see :mod:`wrapyfi_like.cli`."""

import sys

from wrapyfi_like.cli import main

sys.exit(main())
