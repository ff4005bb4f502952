"""The ZeroMQ reply server: reads requests with our own bounded reader and never waits to reply.

Availability is the point of its shape. A server serves its clients one request at a time, so
anything that made it wait for one client would make every other client wait too. Hence:

- a reply is sent without waiting: if the client's outbox is full (it does not read its replies)
  or the client is gone, the reply is dropped, counted in ``dropped`` and logged (rate-limited);
- requests are read by :class:`~.router.ZmtpRouter`, the listener's ZMTP reader speaking as a
  ROUTER to the clients' libzmq DEALER sockets: every frame's size is checked before it is read,
  so a request over ``max_message_size`` (or :data:`~.intake.MAX_MESSAGE_FRAMES` frames) is
  refused with an error reply (counted as ``malformed``) and never held whole in memory, even
  unfinished; one client connection holds at most ``max_message_size`` bytes of waiting requests,
  and all clients together at most ``QUEUED_REQUESTS`` requests beyond the one being served (then
  no connection is read until the server takes one: a flood delays another client's request by at
  most that many of its own);
- what waits for a client is bounded (see :mod:`wrapyfi_like.middlewares.services`):
  ``QUEUED_REPLIES`` replies, and ``max_message_size`` bytes besides the one being written;
- error texts are cut to ``MAX_ERROR_TEXT``.

With CURVE the server keeps libzmq's ROUTER (:mod:`.curve_router`): its peers are authenticated,
and libzmq holds a request whole before we see it (bounded per frame only).
"""

from __future__ import annotations

import logging
import threading
from typing import Optional

from wrapyfi_like.exceptions import ClosedError, DecodeError
from wrapyfi_like.limits import DEFAULT_MAX_MESSAGE_SIZE
from wrapyfi_like.logs import RateLimitedLog, truncate
from wrapyfi_like.middlewares.base import ServerTransport
from wrapyfi_like.middlewares.services import MAX_ERROR_TEXT, QUEUED_REPLIES, QUEUED_REQUESTS
from wrapyfi_like.middlewares.zeromq import lifecycle
from wrapyfi_like.middlewares.zeromq.curve import Key, producer_keys
from wrapyfi_like.middlewares.zeromq.curve_router import CurveRouter
from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent
from wrapyfi_like.middlewares.zeromq.errors import MapsZMQErrors
from wrapyfi_like.middlewares.zeromq.reqrep import ERROR, OK, REQUEST_ID, Ticket, service_key
from wrapyfi_like.middlewares.zeromq.router import ZmtpRouter
from wrapyfi_like.middlewares.zeromq.settings import ZeroMQSettings, zmq_binder

logger = logging.getLogger("wrapyfi_like.zeromq.reqrep")
_log = RateLimitedLog(logger)

SERVER_LINGER = 1.0
"""Seconds unsent replies may hold up closing a server (and interpreter exit)."""


class ZeroMQServerTransport(MapsZMQErrors, ServerTransport, role="server"):
    """Receives requests on one service topic, announced to ``session`` (this process's discovery
    agent), and sends each reply back to its client.

    ``bind_port`` is the tcp port to bind (else one of ``WRAPYFI_LIKE_BIND_PORTS``, else one the
    system picks; see :mod:`.settings`).
    """

    def __init__(self, topic: str, carrier: str = "tcp", info: Optional[dict] = None,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE, curve_secret_key: Optional[Key] = None,
                 *, bind_port: Optional[int] = None, session: NodeAgent) -> None:
        self.topic = topic
        self._lock = threading.Lock()  # a recv (one at a time), and close against it
        self._count_lock = threading.Lock()  # the counters: refusals are counted on the reading thread
        keys = producer_keys(curve_secret_key)

        def open_router(address: str) -> str:
            if keys is None:
                self._router = ZmtpRouter(address, max_message_size, QUEUED_REQUESTS, QUEUED_REPLIES,
                                          self._refused, head_frames=1)
            else:
                self._router = CurveRouter(lambda socket: zmq_binder(socket)(address), max_message_size,
                                           QUEUED_REQUESTS, QUEUED_REPLIES, self._refused, keys, head_frames=1)
            return self._router.endpoint

        self.endpoint = ZeroMQSettings.from_environment().bind(open_router, carrier, bind_port)
        self._agent = session
        lifecycle.track(self)
        self._announcement = self._agent.announce(service_key(topic), self.endpoint,
                                                  {**(info or {}), "service": True})
        self.received = self.sent = self.errors = self.malformed = self.dropped = self.refused = 0
        self._closed = False

    def recv(self, timeout: Optional[float]) -> Optional[tuple[Ticket, list[memoryview]]]:
        """The next request as ``(ticket, frames)``, or None if ``timeout`` seconds pass first.

        Raises :class:`DecodeError` for a message too short to be a request (there is nobody to
        answer it then); the caller logs it and goes on. A request too large was answered with
        an error reply and counted already. :meth:`close` from another thread ends a wait with
        :class:`ClosedError`.
        """
        with self._lock:
            if self._closed:
                raise ClosedError(f"server on {self.topic} is closed")
            received = self._router.take(timeout)
        if received is None:
            return None
        outlet, frames = received
        if not frames or len(frames[0]) != REQUEST_ID.size:
            with self._count_lock:
                self.malformed += 1
            raise DecodeError(f"a message without a request id arrived on service {self.topic}")
        self.received += 1
        return Ticket(outlet, bytes(frames[0])), frames[1:]

    def send(self, ticket: Ticket, frames: list) -> None:
        """Reply to the request ``ticket`` came with; never waits (see the module's docstring)."""
        self._send(ticket, [ticket.request_id, OK, *frames])

    def send_error(self, ticket: Ticket, message: str) -> None:
        """Tell the client its request failed, and why (cut to ``MAX_ERROR_TEXT`` characters)."""
        text = truncate(message, MAX_ERROR_TEXT).encode("utf-8", "replace")
        self._send(ticket, [ticket.request_id, ERROR, text], error=True)

    def _send(self, ticket: Ticket, message: list, error: bool = False) -> None:
        if self._closed:
            raise ClosedError(f"server on {self.topic} is closed")
        if self._router.send(ticket.identity, message):
            with self._count_lock:
                self.sent += 1
                self.errors += error
            return
        if ticket.identity.gone:
            reason = "the client is gone"
        else:
            reason = f"the client does not read its replies ({QUEUED_REPLIES} or its byte limit are waiting for it)"
        with self._count_lock:
            self.dropped += 1
        _log.warning(self.topic, reason, "dropped a reply on service %s: %s; %d dropped so far",
                     self.topic, reason, self.dropped)

    def _refused(self, outlet, heads: list, problem: str) -> None:
        """The reader refused a request for its size or frame count: count it, and answer it
        with an error if its request id was read (told from the reading thread)."""
        with self._count_lock:
            self.malformed += 1
            self.refused += 1
        _log.warning(self.topic, "size", "service %s refused a request: %s", self.topic, problem)
        if heads and len(heads[0]) == REQUEST_ID.size:
            try:
                self.send_error(Ticket(outlet, bytes(heads[0])), f"request refused: {problem}")
            except ClosedError:
                pass  # closing meanwhile: the reading thread must not end on it

    def statistics(self) -> dict[str, int]:
        """Requests ``received`` (valid as far as the transport checks), replies ``sent`` (of them
        ``errors``), replies ``dropped``, and messages refused as ``malformed``; of them
        ``refused``, those the reader refused for their size or frame count (they never reach
        :meth:`recv`)."""
        return {"received": self.received, "sent": self.sent, "errors": self.errors,
                "dropped": self.dropped, "malformed": self.malformed, "refused": self.refused}

    def close(self) -> None:
        """Close, also while another thread waits in :meth:`recv` (it gets :class:`ClosedError`)."""
        if self._closed:
            return
        self._closed = True
        if not self._router.flush(SERVER_LINGER):  # a reply sent just before closing still goes out
            logger.info("server on %s closed with replies its clients had not taken", self.topic)
        self._router.close()
        with self._lock:
            self._agent.withdraw(self._announcement)
            self._router.release()
