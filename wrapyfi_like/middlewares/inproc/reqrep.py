"""In-memory request/reply: the ZeroMQ transport's behaviour without sockets.

Each server has an inbox on the bus under its service topic; a client puts its request into one
server's inbox (taking turns when there are several, as a DEALER socket does) and waits in its own
reply inbox for the reply carrying its request id. Replies to requests that already timed out are
counted and dropped, so a late reply can never be taken for the answer to the next request.

As on the wire, a server never waits to reply: a client's reply inbox holds
:data:`~wrapyfi_like.middlewares.services.QUEUED_REPLIES` replies, and one more is dropped and
counted; error texts are cut to ``MAX_ERROR_TEXT``; ``close()`` from any thread ends a wait in
``recv`` or ``request`` with :class:`ClosedError`.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any, Optional

from wrapyfi_like.exceptions import ClosedError, DecodeError, RemoteError
from wrapyfi_like.limits import DEFAULT_MAX_MESSAGE_SIZE, check_topic
from wrapyfi_like.logs import RateLimitedLog, truncate
from wrapyfi_like.middlewares.deadlines import deadline_after, remaining_seconds
from wrapyfi_like.middlewares.base import ClientTransport, ServerTransport, check_carrier
from wrapyfi_like.middlewares.inproc.bus import SERVICES, Bus, Inbox, Member, copy_frames, oversize
from wrapyfi_like.middlewares.services import MAX_ERROR_TEXT, QUEUED_REPLIES, ClientCounts

logger = logging.getLogger("wrapyfi_like.inproc.reqrep")
_log = RateLimitedLog(logger)

_OK, _ERROR = "ok", "error"


class Ticket:
    """Where one received request came from: the reply goes back with it."""

    __slots__ = ("reply_inbox", "request_id")

    def __init__(self, reply_inbox: Inbox, request_id: int) -> None:
        self.reply_inbox = reply_inbox
        self.request_id = request_id


class InprocServerTransport(Member, ServerTransport):
    """Receives requests on one service topic of its bus (``session``) and sends each reply back
    to its client. A CURVE key is accepted and has nothing to do: nothing leaves the process."""

    def __init__(self, topic: str, carrier: str = "tcp", info: Optional[dict] = None,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE, curve_secret_key: Any = None,
                 *, bind_port: Optional[int] = None, session: Bus) -> None:
        super().__init__(SERVICES, "server", topic, carrier, info, max_message_size, session)
        self.received = self.sent = self.errors = self.malformed = self.dropped = 0

    def recv(self, timeout: Optional[float]) -> Optional[tuple[Ticket, list[memoryview]]]:
        """The next request as ``(ticket, frames)``, or None if ``timeout`` seconds pass first.

        A request larger than ``max_message_size`` gets an error reply and raises
        :class:`DecodeError`, as on the wire; the caller logs it and goes on.
        """
        request = self._inbox.get(timeout)
        problem = None if request is None else oversize(request[1], self._max_message_size)
        if problem:
            self.malformed += 1
            self.send_error(request[0], f"request refused: {problem}")
            raise DecodeError(problem)
        if request is not None:
            self.received += 1
        return request

    def send(self, ticket: Ticket, frames: list) -> None:
        """Reply to the request ``ticket`` came with."""
        self._send(ticket, _OK, copy_frames(frames))

    def send_error(self, ticket: Ticket, message: str) -> None:
        """Tell the client its request failed, and why (cut to ``MAX_ERROR_TEXT`` characters)."""
        if self._send(ticket, _ERROR, truncate(message, MAX_ERROR_TEXT)):
            self.errors += 1

    def _send(self, ticket: Ticket, status: str, payload: Any) -> bool:
        if self._inbox.closed:
            raise ClosedError(f"server on {self.topic} is closed")
        if ticket.reply_inbox.put((ticket.request_id, status, payload), deadline=time.monotonic()):
            self.sent += 1
            return True
        self.dropped += 1
        reason = "the client is gone" if ticket.reply_inbox.closed else \
            f"the client does not read its replies ({QUEUED_REPLIES} are waiting for it)"
        _log.warning(self.topic, reason, "dropped a reply on service %s: %s; %d dropped so far",
                     self.topic, reason, self.dropped)
        return False

    def statistics(self) -> dict[str, int]:
        """Requests ``received``, replies ``sent`` (of them ``errors``), replies ``dropped``, and
        requests refused as ``malformed``: the ZeroMQ server's counts."""
        return {"received": self.received, "sent": self.sent, "errors": self.errors,
                "dropped": self.dropped, "malformed": self.malformed}


class InprocClientTransport(ClientCounts, ClientTransport):
    """Sends requests to the servers of one service topic of its bus (``session``) and waits for
    the matching reply.

    Thread-safe: calls from several threads take turns, as on the ZeroMQ client's one socket.
    A reply larger than ``max_message_size`` raises :class:`DecodeError` (counted as
    ``malformed``), as on the wire; a CURVE key is accepted and has nothing to do.
    """

    def __init__(self, topic: str, carrier: str = "tcp", max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
                 curve_server_key: Any = None, *, session: Bus) -> None:
        check_topic(topic)
        check_carrier(carrier)
        self.topic = topic
        self._max_message_size = max_message_size
        self._lock = threading.Lock()
        self._bus = session
        self._bus.check_open(f"client of {topic}")
        self._replies = Inbox(f"client of {topic}", capacity=QUEUED_REPLIES)
        self._request_ids = itertools.count(1)
        self._turns = itertools.count()
        ClientCounts.__init__(self)

    def request(self, frames: list, timeout: Optional[float]) -> list[memoryview]:
        """Send ``frames`` to a server of the topic and return its reply's frames.

        Waits for a server to exist, for room in its inbox and for the reply, all within
        ``timeout`` seconds (None: as long as it takes). Raises :class:`WaitTimeout` when it
        expires (the next request works as usual), :class:`RemoteError` when the server reports
        an error and :class:`ClosedError` when the client is closed meanwhile.
        """
        with self._lock:
            if self._replies.closed:
                raise ClosedError(f"client of {self.topic} is closed")
            self._bus.check_open(f"client of {self.topic}")
            deadline = deadline_after(timeout)
            request_id = next(self._request_ids)
            self._drop_late_replies()
            request = (Ticket(self._replies, request_id), copy_frames(frames))
            return self._exchange(request, request_id, deadline, timeout)

    def _drop_late_replies(self) -> None:
        """Requests go one at a time, so whatever waits before one is sent is a late reply: drop
        it now, so late replies never take the room of the next request's own."""
        while self._replies.get(0.0) is not None:
            self.stale += 1

    def _send(self, request: tuple, deadline: Optional[float], timeout: Optional[float]) -> None:
        while True:
            servers = self._bus.wait_for_members(SERVICES, self.topic, deadline, self._abandoned)
            if servers:
                server = servers[next(self._turns) % len(servers)]
                if server.put(request, deadline, self._abandoned):
                    return
            if self._abandoned():
                raise ClosedError(f"client of {self.topic} is closed")
            if deadline is not None and time.monotonic() >= deadline:
                raise self._no_server(timeout)

    def _await_reply(self, request_id: int, deadline: Optional[float],
                     timeout: Optional[float]) -> list[memoryview]:
        while True:
            reply = self._replies.get(remaining_seconds(deadline))
            if reply is None:
                raise self._no_reply(timeout)
            reply_id, status, payload = reply
            if reply_id != request_id:
                self.stale += 1
                logger.debug("dropped a late reply on service %s", self.topic)
                continue
            if status == _ERROR:
                self.remote_errors += 1
                raise RemoteError(f"service {self.topic} failed: {truncate(payload, MAX_ERROR_TEXT)}")
            problem = oversize(payload, self._max_message_size)
            if problem:
                self.malformed += 1
                raise DecodeError(f"reply from service {self.topic} refused: {problem}")
            self.received += 1
            return payload

    def _abandoned(self) -> bool:
        return self._replies.closed or self._bus.closed

    def close(self) -> None:
        """Close, also while another thread waits in :meth:`request` (it gets :class:`ClosedError`)."""
        self._replies.close()
        self._bus.wake()
