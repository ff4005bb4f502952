"""The ZeroMQ middleware: direct publisher → listener sockets found through discovery."""

from wrapyfi_like.middlewares.zeromq.pubsub import ZeroMQListenerTransport, ZeroMQPublisherTransport

PublisherTransport = ZeroMQPublisherTransport
ListenerTransport = ZeroMQListenerTransport

__all__ = ["PublisherTransport", "ListenerTransport"]
