"""The zenoh middleware (``register(..., "zenoh", ...)``, ``--mware zenoh``): peer-to-peer on one
host with nothing to start, zenohd routers to scale out across networks (docs/guide/zenoh.md).

Importing this package does not import zenoh; building a transport does, and without the
``wrapyfi_like[zenoh]`` extra that raises :class:`~wrapyfi_like.exceptions.ConfigurationError`.
"""

from wrapyfi_like.middlewares.base import with_session
from wrapyfi_like.middlewares.zenoh.listener import ZenohListenerTransport
from wrapyfi_like.middlewares.zenoh.publisher import ZenohPublisherTransport
from wrapyfi_like.middlewares.zenoh.reqrep import ZenohClientTransport, ZenohServerTransport
from wrapyfi_like.middlewares.zenoh.session import current_session

PublisherTransport = with_session(ZenohPublisherTransport, current_session)
ListenerTransport = with_session(ZenohListenerTransport, current_session)
ServerTransport = with_session(ZenohServerTransport, current_session)
ClientTransport = with_session(ZenohClientTransport, current_session)

__all__ = ["PublisherTransport", "ListenerTransport", "ServerTransport", "ClientTransport"]
