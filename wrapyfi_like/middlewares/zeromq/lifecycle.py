"""Process exit: deliver what is still queued, within a bound, then let go of ZeroMQ.

pyzmq does not terminate its context at interpreter exit, so messages still queued in libzmq's
I/O thread would die with the process: a publisher that exits right after its last message would
lose it. At exit we close every transport still open, stop discovery, and terminate the context,
which waits for queued messages up to each socket's linger, capped at :data:`EXIT_LINGER_MS`: a
listener on a live link takes a last message in far less, and a program stopped with Ctrl-C while
its listener is slow or gone still ends within a second.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref

import zmq
import zmq.utils.garbage  # noqa: F401  (see track)

logger = logging.getLogger("wrapyfi_like.zeromq")

EXIT_LINGER_MS = 500
"""How long queued messages may hold up interpreter exit."""

_open_transports: "weakref.WeakSet" = weakref.WeakSet()
_lock = threading.Lock()
_registered = False


def track(transport) -> None:
    """Close ``transport`` at interpreter exit if the program has not closed it by then."""
    global _registered
    with _lock:
        _open_transports.add(transport)
        if not _registered:
            # pyzmq's zero-copy garbage collector registers its own exit hook when first
            # imported, and that hook frees the buffers of messages still being sent. atexit
            # runs hooks last-registered-first, so importing it above, before registering ours,
            # makes ours (which waits for those messages) run first.
            atexit.register(_close_at_exit)
            _registered = True


def _close_at_exit() -> None:
    from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent

    context = zmq.Context.instance()
    for socket in list(getattr(context, "_sockets", None) or []):
        if not socket.closed and socket.getsockopt(zmq.LINGER) > EXIT_LINGER_MS:
            socket.setsockopt(zmq.LINGER, EXIT_LINGER_MS)
    for transport in list(_open_transports):
        transport.close()
    if NodeAgent._instance is not None:
        NodeAgent._instance.stop()
    if all(socket.closed for socket in list(getattr(context, "_sockets", None) or [])):
        context.term()
    else:
        logger.debug("sockets of the program's own are still open at exit; queued messages may be lost")
