"""wrapyfi_like: turn methods into publishers and listeners with one decorator.

Importing this package is cheap: it imports neither ZeroMQ sockets nor any plugin library, nor
orjson, msgspec or pydantic (JSON mode and typed messages import them on first use).
``Serializer`` and ``Deserializer`` are the inline-serializer markers for ``Annotated`` hints.
Start at :class:`wrapyfi_like.connect.wrapper.MiddlewareCommunicator`.

No logging handler is added: in a script that configures no logging (as Wrapyfi's examples do),
Python's last-resort handler still prints WARNING and above to stderr, so the warnings the docs
promise (an absent middleware, a carrier used as tcp, a peer that never came, refused messages)
reach the user. An application that configures logging decides for itself.
"""

from wrapyfi_like.markers import Deserializer, Serializer

__all__ = ["Serializer", "Deserializer"]
__version__ = "0.1.0"
