"""The ZeroMQ middleware: direct publisher → listener and client → server sockets found through discovery."""

from wrapyfi_like.middlewares.zeromq.listener import ZeroMQListenerTransport
from wrapyfi_like.middlewares.zeromq.publisher import ZeroMQPublisherTransport
from wrapyfi_like.middlewares.zeromq.client import ZeroMQClientTransport
from wrapyfi_like.middlewares.zeromq.server import ZeroMQServerTransport

PublisherTransport = ZeroMQPublisherTransport
ListenerTransport = ZeroMQListenerTransport
ServerTransport = ZeroMQServerTransport
ClientTransport = ZeroMQClientTransport

__all__ = ["PublisherTransport", "ListenerTransport", "ServerTransport", "ClientTransport"]
