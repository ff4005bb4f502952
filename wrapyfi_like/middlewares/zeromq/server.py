"""The ZeroMQ reply server: a ROUTER socket that receives requests and never waits to reply.

Availability is the point of its shape. A server serves its clients one request at a time, so
anything that made it wait for one client would make every other client wait too. Hence:

- a reply is sent without waiting: if the client's queue is full (it does not read its replies)
  or the client is gone, the reply is dropped, counted in ``dropped`` and logged (rate-limited);
- requests are read fairly: libzmq takes one message from each client connection in turn, so a
  client that floods delays another client's request by at most one of its own;
- what waits is bounded per client connection (see :mod:`wrapyfi_like.middlewares.services`):
  ``QUEUED_REQUESTS`` requests (its ``ZMQ_RCVHWM``: beyond them libzmq stops reading that
  connection) and ``QUEUED_REPLIES`` replies (its ``ZMQ_SNDHWM``);
- a request larger than ``max_message_size`` is refused with an error reply and never held
  whole in memory (see :mod:`~.framing`); error texts are cut to ``MAX_ERROR_TEXT``.
"""

from __future__ import annotations

import logging
import threading
from typing import Optional

import zmq

from wrapyfi_like.exceptions import ClosedError, DecodeError
from wrapyfi_like.limits import DEFAULT_MAX_MESSAGE_SIZE
from wrapyfi_like.logs import RateLimitedLog, truncate
from wrapyfi_like.middlewares.base import ServerTransport
from wrapyfi_like.middlewares.deadlines import deadline_after, remaining_ms
from wrapyfi_like.middlewares.zeromq import lifecycle
from wrapyfi_like.middlewares.zeromq.curve import Key, producer_keys
from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent
from wrapyfi_like.middlewares.zeromq.errors import MapsZMQErrors
from wrapyfi_like.middlewares.zeromq.framing import limit_frame_size, receive_bounded, try_send
from wrapyfi_like.middlewares.services import MAX_ERROR_TEXT, QUEUED_REPLIES, QUEUED_REQUESTS
from wrapyfi_like.middlewares.zeromq.reqrep import ERROR, OK, REQUEST_ID, Ticket, service_key
from wrapyfi_like.middlewares.zeromq.settings import ZeroMQSettings, zmq_binder
from wrapyfi_like.middlewares.zeromq.wakeup import WakeOnClose, Wakeup

logger = logging.getLogger("wrapyfi_like.zeromq.reqrep")
_log = RateLimitedLog(logger)

SERVER_LINGER_MS = 1000
"""How long unsent replies may hold up closing a server (and interpreter exit)."""


class ZeroMQServerTransport(MapsZMQErrors, WakeOnClose, ServerTransport, role="server"):
    """Receives requests on one service topic, announced to ``session`` (this process's discovery
    agent), and sends each reply back to its client.

    ``bind_port`` is the tcp port to bind (else one of ``WRAPYFI_LIKE_BIND_PORTS``, else one the
    system picks; see :mod:`.settings`).
    """

    def __init__(self, topic: str, carrier: str = "tcp", info: Optional[dict] = None,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE, curve_secret_key: Optional[Key] = None,
                 *, bind_port: Optional[int] = None, session: NodeAgent) -> None:
        self.topic = topic
        self._max_message_size = max_message_size
        self._lock = threading.Lock()
        self._socket = zmq.Context.instance().socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a full or unknown client raises, never blocks
        self._socket.setsockopt(zmq.RCVHWM, QUEUED_REQUESTS)
        self._socket.setsockopt(zmq.SNDHWM, QUEUED_REPLIES)
        limit_frame_size(self._socket, max_message_size)
        self._socket.setsockopt(zmq.LINGER, SERVER_LINGER_MS)  # a reply sent just before exit still goes out
        keys = producer_keys(curve_secret_key)
        if keys is not None:
            keys.apply(self._socket)
        try:
            self.endpoint = ZeroMQSettings.from_environment().bind(zmq_binder(self._socket), carrier, bind_port)
        except BaseException:
            self._socket.close()
            raise
        # after everything that may refuse the settings: a pipe is never freed by the garbage collector
        self._wakeup = Wakeup()  # close() wakes a recv blocked in a wait
        self._poller = zmq.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        self._poller.register(self._wakeup.fileno(), zmq.POLLIN)
        self._agent = session
        lifecycle.track(self)
        self._announcement = self._agent.announce(service_key(topic), self.endpoint,
                                                  {**(info or {}), "service": True})
        self.received = self.sent = self.errors = self.malformed = self.dropped = 0
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
        if len(head) < 2 or len(head[1]) != REQUEST_ID.size:
            self.malformed += 1
            raise DecodeError(f"a message without a request id arrived on service {self.topic}")
        ticket = Ticket(head[0].bytes, head[1].bytes)
        if problem:
            self.malformed += 1
            self.send_error(ticket, f"request refused: {problem}")
            raise DecodeError(problem)
        self.received += 1
        return ticket, [frame.buffer for frame in body]

    def send(self, ticket: Ticket, frames: list) -> None:
        """Reply to the request ``ticket`` came with; never waits (see the module's docstring)."""
        self._send(ticket, [OK, *frames])

    def send_error(self, ticket: Ticket, message: str) -> None:
        """Tell the client its request failed, and why (cut to ``MAX_ERROR_TEXT`` characters)."""
        self._send(ticket, [ERROR, truncate(message, MAX_ERROR_TEXT).encode("utf-8", "replace")], error=True)

    def _send(self, ticket: Ticket, frames: list, error: bool = False) -> None:
        message = [ticket.identity, ticket.request_id, *frames]
        with self._lock:
            if self._closed:
                raise ClosedError(f"server on {self.topic} is closed")
            try:
                if try_send(self._socket, message):
                    self.sent += 1
                    self.errors += error
                    return
                reason = f"the client does not read its replies ({QUEUED_REPLIES} are waiting for it)"
            except zmq.ZMQError as failure:
                if failure.errno != zmq.EHOSTUNREACH:
                    raise
                reason = "the client is gone"
            self.dropped += 1
        _log.warning(self.topic, reason, "dropped a reply on service %s: %s; %d dropped so far",
                     self.topic, reason, self.dropped)

    def statistics(self) -> dict[str, int]:
        """Requests ``received`` (valid as far as the transport checks), replies ``sent`` (of them
        ``errors``), replies ``dropped``, and messages refused as ``malformed``."""
        return {"received": self.received, "sent": self.sent, "errors": self.errors,
                "dropped": self.dropped, "malformed": self.malformed}

    def _release(self) -> None:
        self._agent.withdraw(self._announcement)
        self._socket.close()
