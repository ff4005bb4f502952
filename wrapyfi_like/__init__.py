"""wrapyfi_like: turn methods into publishers and listeners with one decorator.

Importing this package is cheap: it imports neither ZeroMQ sockets nor any plugin library.
Start at :class:`wrapyfi_like.connect.wrapper.MiddlewareCommunicator`.
"""

import logging

__version__ = "0.1.0"

logging.getLogger("wrapyfi_like").addHandler(logging.NullHandler())
