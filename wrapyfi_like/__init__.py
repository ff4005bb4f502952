"""wrapyfi_like: turn methods into publishers and listeners with one decorator.

Importing this package is cheap: it imports neither ZeroMQ sockets nor any plugin library, nor
orjson, msgspec or pydantic (JSON mode and typed messages import them on first use).
``Serializer`` and ``Deserializer`` are the inline-serializer markers for ``Annotated`` hints.
Start at :class:`wrapyfi_like.connect.wrapper.MiddlewareCommunicator`.
"""

import logging

from wrapyfi_like.markers import Deserializer, Serializer

__all__ = ["Serializer", "Deserializer"]
__version__ = "0.1.0"

logging.getLogger("wrapyfi_like").addHandler(logging.NullHandler())
