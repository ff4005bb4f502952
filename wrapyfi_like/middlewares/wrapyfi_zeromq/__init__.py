"""The Wrapyfi wire: ZeroMQ communicators that talk to unmodified Wrapyfi 0.5.0 nodes.

Chosen with ``register(..., "zeromq", ..., wire="wrapyfi")`` or, for the whole process,
``WRAPYFI_LIKE_WIRE=wrapyfi`` (see :func:`wrapyfi_like.middlewares.wire_setting`). Messages take
Wrapyfi's path (an XPUB/XSUB broker for pub/sub, a ROUTER/DEALER device for request/reply, both
started here if none runs, see :mod:`.broker`) in Wrapyfi's JSON (:data:`CODEC`); ports come
from Wrapyfi's variables and the ``socket_*`` kwargs (:mod:`.settings`). docs/migrating.md says
what this wire can and cannot do.
"""

from wrapyfi_like.middlewares.wrapyfi_zeromq.json_codec import WrapyfiJsonCodec
from wrapyfi_like.middlewares.base import with_session
from wrapyfi_like.middlewares.wrapyfi_zeromq.pubsub import WrapyfiListenerTransport, WrapyfiPublisherTransport
from wrapyfi_like.middlewares.wrapyfi_zeromq.reqrep import WrapyfiClientTransport, WrapyfiServerTransport
from wrapyfi_like.middlewares.wrapyfi_zeromq.session import WireSession
from wrapyfi_like.middlewares.wrapyfi_zeromq.settings import SOCKET_KWARGS

PublisherTransport = with_session(WrapyfiPublisherTransport, WireSession.get)
ListenerTransport = with_session(WrapyfiListenerTransport, WireSession.get)
ServerTransport = with_session(WrapyfiServerTransport, WireSession.get)
ClientTransport = with_session(WrapyfiClientTransport, WireSession.get)
CODEC = WrapyfiJsonCodec
"""The codec values take on this wire (the connect layer asks each middleware for its own)."""

__all__ = ["PublisherTransport", "ListenerTransport", "ServerTransport", "ClientTransport", "CODEC",
           "SOCKET_KWARGS", "WireSession"]
