"""ZeroMQ's errors as ours: no ``zmq.ZMQError`` reaches a user from a ZeroMQ transport.

The transports catch the ZeroMQ errors they expect where they expect them (``zmq.Again`` from a
non-blocking send, ``EHOSTUNREACH`` from a reply to a departed client). Anything else libzmq
raises (a bind to an address this host does not have, an ipc path too long, a context
terminated under a socket, file descriptors exhausted) would otherwise escape as a
``zmq.ZMQError`` and tie the user's ``except`` clauses to one engine. :class:`MapsZMQErrors`
translates those at the edge of every public method, through
:func:`~wrapyfi_like.exceptions.map_exceptions`, keeping libzmq's error as the cause.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NoReturn, TypeVar

import zmq

from wrapyfi_like.exceptions import ClosedError, TransportError, map_exceptions

ZMQ_ERRORS = {zmq.ZMQError: TransportError, zmq.ContextTerminated: ClosedError}
"""libzmq's errors → ours (the most specific entry wins)."""
PUBLIC_METHODS = ("__init__", "send", "send_error", "recv", "request", "statistics", "per_publisher", "close")
"""The methods of the transport interface (:mod:`wrapyfi_like.middlewares.base`)."""


class MapsZMQErrors:
    """Base of the ZeroMQ transports: each of their :data:`PUBLIC_METHODS` maps ZeroMQ's errors.

    ``class ZeroMQListenerTransport(MapsZMQErrors, ListenerTransport, role="listener")``; the
    role starts each message (``"listener on /camera: Address already in use"``). A method is
    wrapped once, where a class gets it, so the call that succeeds pays one function call and a
    ``try`` block, nothing more.
    """

    _role = "transport"

    def __init_subclass__(cls, role: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if role:
            cls._role = role
        for name in PUBLIC_METHODS:
            method = getattr(cls, name, None)
            if callable(method) and not getattr(method, "_maps_zmq_errors", False):
                setattr(cls, name, _mapped(method))


F = TypeVar("F", bound=Callable[..., Any])


def maps_own_errors(method: F) -> F:
    """Mark a public method that maps ZeroMQ's errors in its own body (``except zmq.ZMQError as
    error: raise_mapped(self, error)``), so :class:`MapsZMQErrors` leaves it unwrapped.

    For the per-message methods: the generic wrapper packs and unpacks the call's arguments,
    about 0.5 µs a call at 1 KB, where a ``try`` in the method's body costs nothing until it raises.
    """
    method._maps_zmq_errors = True  # type: ignore[attr-defined]
    return method


def raise_mapped(transport: Any, error: zmq.ZMQError) -> NoReturn:
    """Raise ``error`` (caught in ``transport``'s method) as ours, as the generic wrapper would."""
    with map_exceptions(ZMQ_ERRORS, f"{transport._role} on {transport.__dict__.get('topic') or '?'}"):
        raise error


def _mapped(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except zmq.ZMQError:
            topic = self.__dict__.get("topic") or (args[0] if args else kwargs.get("topic", "?"))
            with map_exceptions(ZMQ_ERRORS, f"{self._role} on {topic}"):
                raise
    call._maps_zmq_errors = True  # type: ignore[attr-defined]
    return call
