"""The ZeroMQ middleware: direct publisher → listener and client → server sockets found through discovery.

The session of its transports is the process's discovery agent (:meth:`NodeAgent.get`); pass
``session=`` to give a transport another one (a private agent with a directory of its own).
"""

from wrapyfi_like.middlewares.base import with_session
from wrapyfi_like.middlewares.zeromq.client import ZeroMQClientTransport
from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent
from wrapyfi_like.middlewares.zeromq.listener import ZeroMQListenerTransport
from wrapyfi_like.middlewares.zeromq.publisher import ZeroMQPublisherTransport
from wrapyfi_like.middlewares.zeromq.server import ZeroMQServerTransport

PublisherTransport = with_session(ZeroMQPublisherTransport, NodeAgent.get)
ListenerTransport = with_session(ZeroMQListenerTransport, NodeAgent.get)
ServerTransport = with_session(ZeroMQServerTransport, NodeAgent.get)
ClientTransport = with_session(ZeroMQClientTransport, NodeAgent.get)

__all__ = ["PublisherTransport", "ListenerTransport", "ServerTransport", "ClientTransport"]
