"""The in-memory middleware: the ZeroMQ middleware's behaviour within one process, without sockets.

Messages take the same path as on the wire (the same codec, the same frames, copied on delivery),
so code tested with ``"inproc"`` behaves as it does with ``"zeromq"``. Use it directly with
``register(..., "inproc", ...)`` or ``--mware inproc``, or route ``"zeromq"`` communicators to it
for a block with :func:`wrapyfi_like.testing.inproc_middleware`.
"""

from wrapyfi_like.middlewares.inproc.pubsub import InprocListenerTransport, InprocPublisherTransport
from wrapyfi_like.middlewares.inproc.reqrep import InprocClientTransport, InprocServerTransport

PublisherTransport = InprocPublisherTransport
ListenerTransport = InprocListenerTransport
ServerTransport = InprocServerTransport
ClientTransport = InprocClientTransport

__all__ = ["PublisherTransport", "ListenerTransport", "ServerTransport", "ClientTransport"]
