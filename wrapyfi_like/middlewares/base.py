"""The transport interface: what a middleware implements, and nothing more.

The connect layer (publishers, listeners, servers, clients) talks to an engine only through the
four abstract classes below, so ZeroMQ, the in-memory bus and any later engine (Zenoh) are
interchangeable behind ``register(..., "<middleware>", ...)``. A transport moves frames, never
Python objects: ``frames`` is the codec's ``[header, *buffers]`` (bytes-like objects, possibly
large, possibly zero bytes long). A middleware is done when it passes
:class:`wrapyfi_like.testing.TransportConformance`.

Rules every transport keeps:

- **Errors** are only :data:`TRANSPORT_ERRORS` (the :mod:`wrapyfi_like.exceptions` family); an
  engine's own exceptions are translated with :func:`map_exceptions`, keeping them as the cause.
- **Closing**: ``close()`` may be called from any thread, any number of times. A call in flight
  in another thread (``send``, ``recv``, ``request``) ends within 0.5 s with :class:`ClosedError`,
  and so does every call made after it.
- **Counters** are named and defined once, in :data:`COUNTERS`; ``statistics()`` returns at least
  the kind's names (``PUBLISHER_COUNTERS`` …), never resetting them.
- **Constructors** take their abstract class's parameters by the same names, of the same kind
  and in the same order (the connect layer passes them by name). An engine's own parameters are
  keyword-only with a default; a catch-all ``**kwargs`` is not allowed, since a misspelt keyword
  would pass unnoticed. ``carrier`` is checked with :func:`check_carrier`. ``bind_port``
  (listeners and servers) is the port to bind for users behind firewalls or Docker ``-p``; a
  transport that binds no port of its own (inproc, zenoh) ignores it.
- **Sessions are passed in.** What the transports of one middleware share in a process (ZeroMQ's
  discovery agent, a Zenoh session, the in-memory bus) reaches each transport as the keyword
  ``session=`` at construction, never from a singleton inside it, so tests and isolated
  communicators can give a transport a session of their own. The middleware module keeps the
  ``middleware_module(name).PublisherTransport(topic, ...)`` call style by exporting factories
  made with :func:`with_session`, which fill ``session=`` from its ``current_session()``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, Generic, Optional, Protocol, TypeVar, runtime_checkable

from wrapyfi_like.exceptions import (
    ClosedError, ConfigurationError, DecodeError, MessageTooLarge, RemoteError, TransportError, WaitTimeout,
    map_exceptions,
)
from wrapyfi_like.limits import DEFAULT_MAX_MESSAGE_SIZE
from wrapyfi_like.middlewares.envelope import Envelope, Group

COUNTERS: dict[str, str] = {
    "sent": "messages handed to the engine: a publisher's (one per send, whatever the listener "
            "count), a server's replies, a client's requests",
    "received": "messages returned to the caller: a listener's, a server's requests, a client's "
                "(ok) replies",
    "dropped": "messages discarded on purpose: by a publisher's 'drop' or 'latest' policy, by a "
               "listener skipping older 'latest' messages for a newer one, by a server whose "
               "client is gone or does not read",
    "missed": "messages a listener never got: gaps in a publisher's sequence numbers",
    "duplicate": "messages a listener got again or late (sequence at or below the last seen); "
                 "skipped, never returned",
    "malformed": "messages refused as bad input (DecodeError: bad envelope, too large, wrong "
                 "topic); skipped by a listener or a server, raised by a client",
    "errors": "a server's error replies (send_error), counted in its sent too",
    "remote_errors": "a client's requests answered with an error (raised as RemoteError)",
    "timeouts": "a client's requests that raised WaitTimeout",
    "stale": "replies a client threw away: late (to a request that had timed out) or not its own",
    "unconfirmed": "messages a publisher sent over a connection that dropped before its listener "
                   "acked delivering them: an upper bound of what that listener lost (engines "
                   "with an ack back-channel: zeromq)",
}
"""Every counter a transport may report, with its one meaning."""
PUBLISHER_COUNTERS = ("sent", "dropped")
ACKED_PUBLISHER_COUNTERS = ("unconfirmed",)
"""Publisher counters of engines whose listeners ack what they delivered (zeromq)."""
LISTENER_COUNTERS = ("received", "missed", "duplicate", "malformed", "dropped")
PER_PUBLISHER_COUNTERS = ("received", "missed", "duplicate", "dropped")
"""The counters of each publisher a listener hears (``per_publisher()``)."""
SERVER_COUNTERS = ("received", "sent", "errors", "dropped", "malformed")
CLIENT_COUNTERS = ("sent", "received", "remote_errors", "timeouts", "stale", "malformed")

TRANSPORT_ERRORS = (ConfigurationError, TransportError, WaitTimeout, ClosedError, RemoteError, DecodeError,
                    MessageTooLarge)
"""The exceptions a transport may raise; anything else is a bug in the transport."""

CARRIERS = ("tcp", "ipc", "shm")
"""The ``carrier`` names there are. An engine may ignore a carrier (it picks its own links) but
refuses a name not listed here with :class:`ConfigurationError`, so a typo never passes silently."""


def check_carrier(carrier: str) -> None:
    """:class:`ConfigurationError` unless ``carrier`` is one of :data:`CARRIERS`."""
    if carrier not in CARRIERS:
        raise ConfigurationError(f"unknown carrier {carrier!r}: use one of {', '.join(CARRIERS)}")

Ticket = Any
"""Where a received request came from; opaque to everyone but the server transport that made it."""

__all__ = [
    "COUNTERS", "PUBLISHER_COUNTERS", "ACKED_PUBLISHER_COUNTERS", "LISTENER_COUNTERS",
    "PER_PUBLISHER_COUNTERS", "SERVER_COUNTERS", "CLIENT_COUNTERS", "TRANSPORT_ERRORS", "CARRIERS",
    "Session", "PublisherTransport", "ListenerTransport", "ServerTransport", "ClientTransport", "Ticket",
    "with_session", "check_carrier", "map_exceptions", "Envelope", "Group",
]


@runtime_checkable
class Session(Protocol):
    """What the transports of one middleware share in a process; closing it closes them all."""

    def close(self) -> None: ...


class PublisherTransport(ABC):
    """Sends each message to every listener of ``topic`` (exact match, never a prefix).

    ``should_wait``: ``send`` waits while no listener is connected (at most
    ``wait_timeout`` seconds, None: no bound, then :class:`WaitTimeout`), so it is not lost;
    False: ``send`` never waits for listeners. ``backpressure`` when ``queue_depth`` messages wait
    for a listener: ``"block"`` waits for room and loses nothing; ``"drop"`` discards the new
    message; ``"latest"`` keeps only the newest (flag ``LATEST`` in its envelope). Each discard
    counts as ``dropped``. ``zero_copy="safe"``: the caller may change its buffers once ``send``
    returns; ``"unsafe"``: not until the engine has sent them. ``info`` describes the sender to
    tools that list topics. A setting the engine cannot honour (a CURVE key without CURVE, a
    carrier not in :data:`CARRIERS`) raises :class:`ConfigurationError`.
    """

    topic: str
    dropped: int
    """Same as ``statistics()["dropped"]``; kept for code written before ``statistics()``."""

    @abstractmethod
    def __init__(self, topic: str, carrier: str = "tcp", should_wait: bool = True,
                 wait_timeout: Optional[float] = None, info: Optional[dict] = None,
                 backpressure: str = "block", queue_depth: int = 1000, curve_secret_key: Any = None,
                 zero_copy: str = "safe", *, session: Session) -> None: ...

    @abstractmethod
    def send(self, frames: list, group: Optional[Group] = None) -> None:
        """Send one message; stamp its envelope (this publisher's id, seq 1, 2, 3 …, ``group``)."""

    @abstractmethod
    def statistics(self) -> dict[str, int]:
        """At least :data:`PUBLISHER_COUNTERS`."""

    @abstractmethod
    def close(self) -> None:
        """Stop; a ``send`` in flight in another thread raises :class:`ClosedError`."""


class ListenerTransport(ABC):
    """Receives the messages of one exact ``topic`` from every publisher of it, each in order.

    Buffers returned are writable and owned by the caller. Bad input (larger than
    ``max_message_size``, a bad envelope, a wrong topic) is skipped inside ``recv``, counted as
    ``malformed`` and logged rate-limited; ``recv`` goes on to the next message, so one peer's
    garbage never reaches the caller. Duplicates are skipped inside, gaps counted.
    """

    topic: str
    last_envelope: Optional[Envelope]
    """The envelope of the message the last ``recv`` returned (None before the first)."""

    @abstractmethod
    def __init__(self, topic: str, carrier: str = "tcp", info: Optional[dict] = None,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE, queue_depth: Optional[int] = None,
                 curve_server_key: Any = None, *, bind_port: Optional[int] = None,
                 session: Session) -> None: ...

    @abstractmethod
    def recv(self, timeout: Optional[float]) -> Optional[list[memoryview]]:
        """The next message's ``[header, *buffers]``, or None once ``timeout`` seconds pass
        (0: do not wait; None: wait as long as it takes)."""

    @abstractmethod
    def statistics(self) -> dict[str, int]:
        """At least :data:`LISTENER_COUNTERS`."""

    @abstractmethod
    def per_publisher(self) -> dict[str, dict[str, int]]:
        """:data:`PER_PUBLISHER_COUNTERS` of each publisher heard, keyed by its id in hex."""

    @abstractmethod
    def close(self) -> None:
        """Stop; a ``recv`` in flight in another thread raises :class:`ClosedError`."""


class ServerTransport(ABC):
    """Receives requests on one service ``topic``; each reply goes back to its own client.

    A request larger than ``max_message_size`` gets an error reply and raises
    :class:`DecodeError` from ``recv``. A reply whose client is gone or does not read is dropped
    and counted, never waited for: one client cannot stall the others.
    """

    topic: str

    @abstractmethod
    def __init__(self, topic: str, carrier: str = "tcp", info: Optional[dict] = None,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE, curve_secret_key: Any = None,
                 *, bind_port: Optional[int] = None, session: Session) -> None: ...

    @abstractmethod
    def recv(self, timeout: Optional[float]) -> Optional[tuple[Ticket, list[memoryview]]]:
        """The next request as ``(ticket, frames)``, or None once ``timeout`` seconds pass."""

    @abstractmethod
    def send(self, ticket: Ticket, frames: list) -> None:
        """Reply to the request ``ticket`` came with."""

    @abstractmethod
    def send_error(self, ticket: Ticket, message: str) -> None:
        """Make that request raise :class:`RemoteError` with ``message`` in the client."""

    @abstractmethod
    def statistics(self) -> dict[str, int]:
        """At least :data:`SERVER_COUNTERS`."""

    @abstractmethod
    def close(self) -> None:
        """Stop; a ``recv`` in flight in another thread raises :class:`ClosedError`."""


class ClientTransport(ABC):
    """Sends requests to a server of one service ``topic`` and returns the matching reply."""

    topic: str

    @abstractmethod
    def __init__(self, topic: str, carrier: str = "tcp", max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
                 curve_server_key: Any = None, *, session: Session) -> None: ...

    @abstractmethod
    def request(self, frames: list, timeout: Optional[float]) -> list[memoryview]:
        """The reply's frames. Finding a server, sending and the reply all fit in ``timeout``
        seconds (None: no bound), else :class:`WaitTimeout`; the next request works as usual and
        never gets a late reply meant for an earlier one. A server's ``send_error`` raises
        :class:`RemoteError`."""

    @abstractmethod
    def statistics(self) -> dict[str, int]:
        """At least :data:`CLIENT_COUNTERS`."""

    @abstractmethod
    def close(self) -> None:
        """Stop; a ``request`` in flight in another thread raises :class:`ClosedError`."""


T = TypeVar("T")


class with_session(Generic[T]):  # noqa: N801 (used like a class: ``PublisherTransport = with_session(...)``)
    """A middleware module's public transport name: builds ``transport`` with ``session=`` filled
    from ``current_session()`` unless the caller passes one.

    In ``middlewares/<name>/__init__.py``::

        PublisherTransport = with_session(ZeroMQPublisherTransport, NodeAgent.get)
    """

    def __init__(self, transport: Callable[..., T], current_session: Callable[[], Session]) -> None:
        self.transport = transport
        self.current_session = current_session

    def __call__(self, *args: Any, session: Optional[Session] = None, **kwargs: Any) -> T:
        return self.transport(*args, session=self.current_session() if session is None else session, **kwargs)
