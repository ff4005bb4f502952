"""ZeroMQ request/reply transport: frames in, frames out; it never sees Python objects.

A server binds a ROUTER socket on a port of its own and announces it to discovery under the
service's key; a client connects a DEALER socket to every server discovery reports. ROUTER/DEALER
rather than REQ/REP because REQ is a state machine: a request whose reply never comes leaves a REQ
socket unable to send again. A DEALER can always send, so a timed-out request costs nothing, and
a ROUTER serves any number of clients, each reply routed back by the client's identity.

Messages (after the identity frame ROUTER adds and removes):

- request: ``[request_id, *frames]``
- reply:   ``[request_id, b"ok", *frames]`` or ``[request_id, b"error", message]``

The client numbers its requests and drops replies whose id is not the one it waits for, so a late
reply to a request that already timed out can never be taken for the answer to the next one.

Services are announced under :func:`service_key` of their topic:
listeners' keys have a prefix of their own, so a service and a pub/sub topic of the same name
never meet (a publisher is never pointed at a ROUTER).
"""

from __future__ import annotations

import itertools
import logging
import struct
import threading
import time
from typing import Optional

import zmq

from wrapyfi_like.exceptions import ClosedError, DecodeError, RemoteError, WaitTimeout
from wrapyfi_like.middlewares.zeromq import lifecycle
from wrapyfi_like.middlewares.deadlines import deadline_after, remaining_ms
from wrapyfi_like.limits import DEFAULT_MAX_MESSAGE_SIZE
from wrapyfi_like.middlewares.zeromq.connections import connected, keep_alive, only_completed_connections
from wrapyfi_like.middlewares.zeromq.curve import Key, consumer_keys, producer_keys
from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent
from wrapyfi_like.middlewares.zeromq.framing import limit_frame_size, receive_bounded, try_send
from wrapyfi_like.middlewares.zeromq.keys import topic_frame
from wrapyfi_like.middlewares.zeromq.settings import ZeroMQSettings
from wrapyfi_like.middlewares.zeromq.wakeup import Wakeup

logger = logging.getLogger("wrapyfi_like.zeromq.reqrep")

SERVER_LINGER_MS = 1000
"""How long unsent replies may hold up closing a server (and interpreter exit)."""
REPLY_SEND_TIMEOUT = 5.0
"""Seconds a server waits for room to send a reply to a slow client before dropping it (logged)."""
_OK, _ERROR = b"ok", b"error"
_REQUEST_ID = struct.Struct("<Q")


def service_key(topic: str) -> str:
    """The discovery key of the service on ``topic``; never equal to a pub/sub topic."""
    topic_frame(topic)  # validates the topic
    return "\0service " + topic


class Ticket:
    """Where one received request came from: the reply goes back with it."""

    __slots__ = ("identity", "request_id")

    def __init__(self, identity: bytes, request_id: bytes) -> None:
        self.identity = identity
        self.request_id = request_id


class ZeroMQServerTransport:
    """Receives requests on one service topic and sends each reply back to its client.

    A request larger than ``max_message_size`` is refused with an error reply and never held
    whole in memory (see :mod:`~wrapyfi_like.middlewares.zeromq.framing`).
    """

    def __init__(self, topic: str, carrier: str = "tcp", info: Optional[dict] = None,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE, curve_secret_key: Optional[Key] = None,
                 **_: object) -> None:
        self.topic = topic
        self._max_message_size = max_message_size
        self._lock = threading.Lock()
        self._socket = zmq.Context.instance().socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        limit_frame_size(self._socket, max_message_size)
        self._wakeup = Wakeup()  # close() wakes a recv blocked in a wait
        self._poller = zmq.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        self._poller.register(self._wakeup.fileno(), zmq.POLLIN)
        self._socket.setsockopt(zmq.LINGER, SERVER_LINGER_MS)  # a reply sent just before exit still goes out
        keys = producer_keys(curve_secret_key)
        if keys is not None:
            keys.apply(self._socket)
        self._socket.bind(ZeroMQSettings.from_environment().bind_address(carrier))
        self.endpoint = self._socket.getsockopt(zmq.LAST_ENDPOINT).decode()
        self._agent = NodeAgent.get()
        lifecycle.track(self)
        self._announcement = self._agent.announce(service_key(topic), self.endpoint,
                                                  {**(info or {}), "service": True})
        self.dropped_replies = 0
        self._closed = False

    def recv(self, timeout: Optional[float]) -> Optional[tuple[Ticket, list[memoryview]]]:
        """The next request as ``(ticket, frames)``, or None if ``timeout`` seconds pass first.

        Raises :class:`DecodeError` for a message too short to be a request (there is nobody to
        answer it then) or too large (its client gets an error reply); the caller logs it and
        goes on. :meth:`close` from another thread ends a wait with :class:`ClosedError`.
        """
        with self._lock:
            if self._closed:
                raise ClosedError(f"server on {self.topic} is closed")
            events = dict(self._poller.poll(remaining_ms(deadline_after(timeout))))
            if self._closed:
                raise ClosedError(f"server on {self.topic} is closed")
            if self._socket not in events:
                return None
            head, body, problem = receive_bounded(self._socket, 2, self._max_message_size)
        if len(head) < 2 or len(head[1]) != _REQUEST_ID.size:
            raise DecodeError(f"a message without a request id arrived on service {self.topic}")
        ticket = Ticket(head[0].bytes, head[1].bytes)
        if problem:
            self.send_error(ticket, f"request refused: {problem}")
            raise DecodeError(problem)
        return ticket, [frame.buffer for frame in body]

    def send(self, ticket: Ticket, frames: list) -> None:
        """Reply to the request ``ticket`` came with."""
        self._send(ticket, [_OK, *frames])

    def send_error(self, ticket: Ticket, message: str) -> None:
        """Tell the client its request failed, and why."""
        self._send(ticket, [_ERROR, message.encode("utf-8", "replace")])

    def _send(self, ticket: Ticket, frames: list) -> None:
        message = [ticket.identity, ticket.request_id, *frames]
        deadline = time.monotonic() + REPLY_SEND_TIMEOUT
        with self._lock:
            if self._closed:
                raise ClosedError(f"server on {self.topic} is closed")
            while True:
                try:
                    if try_send(self._socket, message):
                        return
                    if self._socket.poll(remaining_ms(deadline), zmq.POLLOUT):
                        continue
                    reason = f"the client did not take it within {REPLY_SEND_TIMEOUT} s"
                except zmq.ZMQError as error:
                    if error.errno != zmq.EHOSTUNREACH:
                        raise
                    reason = "the client is gone"
                self.dropped_replies += 1
                logger.warning("dropped a reply on service %s: %s", self.topic, reason)
                return

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wakeup.set()
        with self._lock:
            self._agent.withdraw(self._announcement)
            self._socket.close()
            self._wakeup.close()


class ZeroMQClientTransport:
    """Sends requests to the servers of one service topic and waits for the matching reply.

    Thread-safe: calls from several threads take turns on the one socket.

    Requests go only to servers that are there: discovery lists a killed server until its entry
    expires, and a DEALER hands requests to every peer it was told to connect to, so without care
    a request could wait in the queue of a dead server. Each server gets a *probe*, a DEALER with
    ``ZMQ_IMMEDIATE`` that never sends: it is writable exactly while its connection to the server
    is complete (see :mod:`~.connections`). Before each request the request socket connects to
    the servers whose probe is writable and disconnects from the others. The request socket
    itself cannot use ``ZMQ_IMMEDIATE``: with it, libzmq discards replies not yet read when their
    server disconnects, so a server that exits right after its last reply would lose that reply.
    """

    def __init__(self, topic: str, carrier: str = "tcp", max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
                 curve_server_key: Optional[Key] = None, **_: object) -> None:
        self.topic = topic
        self._key = service_key(topic)
        self._max_message_size = max_message_size
        self._lock = threading.Lock()
        self._socket = zmq.Context.instance().socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        limit_frame_size(self._socket, max_message_size)
        self._keys = consumer_keys(curve_server_key)
        if self._keys is not None:
            self._keys.apply(self._socket)
        keep_alive(self._socket)
        self._agent = NodeAgent.get()
        self._watch = self._agent.watch(self._key)
        self._followed: Optional[frozenset[str]] = None  # the server list _follow last acted on in full
        self._probes: dict[str, zmq.Socket] = {}  # per listed server: writable while it is there
        self._connected: set[str] = set()  # servers the request socket is connected to
        self._reply_poller = zmq.Poller()
        self._reply_poller.register(self._socket, zmq.POLLIN)
        self._reply_poller.register(self._watch.fileno(), zmq.POLLIN)
        lifecycle.track(self)
        self._request_ids = itertools.count(1)
        self.stale_replies = 0
        self._closed = False

    def request(self, frames: list, timeout: Optional[float]) -> list[memoryview]:
        """Send ``frames`` to a server of the topic and return its reply's frames.

        Waits for a server to exist, for room to send and for the reply, all within ``timeout``
        seconds (None: as long as it takes). Raises :class:`WaitTimeout` when it expires (the
        next request works as usual) and :class:`RemoteError` when the server reports an error.
        """
        with self._lock:
            if self._closed:
                raise ClosedError(f"client of {self.topic} is closed")
            deadline = deadline_after(timeout)
            request_id = _REQUEST_ID.pack(next(self._request_ids))
            if self._watch.endpoints is not self._followed:  # an unchanged list (the common case) costs no system call
                self._follow(self._watch.consume())
            self._send([request_id, *frames], deadline, timeout)
            return self._await_reply(request_id, deadline, timeout)

    def _send(self, message: list, deadline: Optional[float], timeout: Optional[float]) -> None:
        while True:
            self._route()
            if try_send(self._socket, message):
                return
            # no live server yet, or every live server's queue is full
            poller = zmq.Poller()
            poller.register(self._socket, zmq.POLLOUT)
            poller.register(self._watch.fileno(), zmq.POLLIN)
            for endpoint in self._probes.keys() - self._connected:
                poller.register(self._probes[endpoint], zmq.POLLOUT)  # wakes when that server is up
            events = dict(poller.poll(remaining_ms(deadline)))
            if self._watch.fileno() in events:
                self._follow(self._watch.consume())
            if not events and deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"no server for service {self.topic} could take the request within {timeout} s "
                    "(request_timeout); start one with mode='reply'"
                )

    def _await_reply(self, request_id: bytes, deadline: Optional[float],
                     timeout: Optional[float]) -> list[memoryview]:
        while True:
            events = dict(self._reply_poller.poll(remaining_ms(deadline)))
            if self._watch.fileno() in events:
                self._follow(self._watch.consume(), drop_gone=False)
            if self._socket in events:
                head, body, problem = receive_bounded(self._socket, 2, self._max_message_size)
                if len(head) == 2 and len(head[0]) == len(request_id) and head[0].bytes == request_id:
                    if problem:
                        raise DecodeError(f"reply from service {self.topic} refused: {problem}")
                    return self._unpack([head[1], *body])
                self.stale_replies += 1
                logger.debug("dropped a late or foreign reply on service %s", self.topic)
            elif deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"no reply from service {self.topic} within {timeout} s (request_timeout)")

    def _unpack(self, frames: list) -> list[memoryview]:
        status = frames[0].bytes
        if status == _OK:
            return [frame.buffer for frame in frames[1:]]
        if status == _ERROR and len(frames) == 2:
            raise RemoteError(f"service {self.topic} failed: {frames[1].bytes.decode('utf-8', 'replace')}")
        raise DecodeError(f"malformed reply on service {self.topic} (status {status[:16]!r})")

    def _follow(self, endpoints: frozenset[str], drop_gone: bool = True) -> None:
        """Probe new servers; with ``drop_gone``, forget withdrawn ones.

        Never drop while a reply is awaited: disconnecting discards what already arrived from
        that server, and a server that exits right after replying withdraws at that moment.
        """
        for endpoint in endpoints - self._probes.keys():
            probe = self._socket.context.socket(zmq.DEALER)
            probe.setsockopt(zmq.LINGER, 0)
            only_completed_connections(probe)
            if self._keys is not None:
                self._keys.apply(probe)  # a server that refuses our key never counts as there
            probe.connect(endpoint)
            self._probes[endpoint] = probe
        if drop_gone:
            self._followed = endpoints
            for endpoint in self._probes.keys() - endpoints:
                self._probes.pop(endpoint).close()
                self._disconnect(endpoint)

    def _route(self) -> None:
        """Connect the request socket to the servers that are there, and only to them."""
        for endpoint, probe in self._probes.items():
            if connected(probe):
                if endpoint not in self._connected:
                    self._socket.connect(endpoint)
                    self._connected.add(endpoint)
            elif endpoint in self._connected:
                self._disconnect(endpoint)

    def _disconnect(self, endpoint: str) -> None:
        if endpoint in self._connected:
            self._connected.discard(endpoint)
            try:
                self._socket.disconnect(endpoint)
            except zmq.ZMQError:
                pass  # already gone

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._agent.unwatch(self._watch)
            for probe in self._probes.values():
                probe.close()
            self._probes.clear()
            self._socket.close()
