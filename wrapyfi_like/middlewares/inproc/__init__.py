"""The in-memory middleware: the ZeroMQ middleware's behaviour within one process, without sockets.

Messages take the same path as on the wire (the same codec, the same frames, copied on delivery),
so code tested with ``"inproc"`` behaves as it does with ``"zeromq"``. Use it directly with
``register(..., "inproc", ...)`` or ``--mware inproc``, or route ``"zeromq"`` communicators to it
for a block with :func:`wrapyfi_like.testing.inproc_middleware`.

The session of its transports is a :class:`~.bus.Bus`: the current one (:func:`~.bus.current_bus`)
unless ``session=`` gives another. Nothing here imports the ZeroMQ middleware.
"""

from wrapyfi_like.middlewares.base import with_session
from wrapyfi_like.middlewares.inproc.bus import current_bus
from wrapyfi_like.middlewares.inproc.pubsub import InprocListenerTransport, InprocPublisherTransport
from wrapyfi_like.middlewares.inproc.reqrep import InprocClientTransport, InprocServerTransport

PublisherTransport = with_session(InprocPublisherTransport, current_bus)
ListenerTransport = with_session(InprocListenerTransport, current_bus)
ServerTransport = with_session(InprocServerTransport, current_bus)
ClientTransport = with_session(InprocClientTransport, current_bus)

__all__ = ["PublisherTransport", "ListenerTransport", "ServerTransport", "ClientTransport"]
