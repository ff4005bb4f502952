"""Zenoh request/reply: a server is a queryable, a request is one ``get`` to one server.

The queryable is declared ``complete=True`` and requests target ``BEST_MATCHING``, so exactly one
server runs each request (without it, every server would run it). Unlike ZeroMQ, zenoh does not
take turns between servers: one serves, the others stand by. Each request is its own zenoh query,
so a late reply can only reach the request it answers, where it is counted as ``stale``.
Replies go through zenoh's callbacks into a slot the caller waits on, so per-call timeouts and
``close()`` from another thread both end a wait at once.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Optional

from wrapyfi_like.exceptions import ClosedError, DecodeError, RemoteError, TransportError, WaitTimeout, map_exceptions
from wrapyfi_like.limits import DEFAULT_MAX_MESSAGE_SIZE, check_max_message_size, check_outgoing
from wrapyfi_like.logs import RateLimitedLog, truncate
from wrapyfi_like.middlewares.base import ClientTransport, ServerTransport
from wrapyfi_like.middlewares.deadlines import deadline_after, remaining_seconds, slice_seconds
from wrapyfi_like.middlewares.zenoh import framing, presence
from wrapyfi_like.middlewares.zenoh.checks import check_carrier, check_no_curve
from wrapyfi_like.middlewares.zenoh.inbox import Inbox
from wrapyfi_like.middlewares.zenoh.keys import topic_key
from wrapyfi_like.middlewares.zenoh.session import ZenohSession, errors, zenoh_module

logger = logging.getLogger("wrapyfi_like.zenoh.reqrep")
_log = RateLimitedLog(logger)

ERROR_MARK = b"wrapyfi_like-error:"
"""Starts a server's error reply, telling it from zenoh's own errors (``b"Timeout"``)."""
REQUEST_QUEUE = 64
STALE_GRACE = 30.0
"""Seconds a query stays open after its caller gave up, so a late reply is counted as ``stale``."""
UNBOUNDED_QUERY = 365 * 24 * 3600.0
"""Zenoh needs a query timeout; a request without one waits this long."""


class ZenohServerTransport(ServerTransport):
    """Answers requests on service ``topic``; the ticket of a request is its zenoh ``Query``."""

    def __init__(self, topic: str, carrier: str = "tcp", info: Optional[dict] = None,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE, curve_secret_key: Any = None,
                 *, bind_port: Optional[int] = None, session: ZenohSession) -> None:
        check_carrier(carrier)
        check_no_curve(curve_secret_key)
        self.topic = topic
        self._key = topic_key(topic, session.domain)
        self._max_message_size = check_max_message_size(max_message_size)
        self._inbox = Inbox(REQUEST_QUEUE, f"server on {topic}")
        self._lock = threading.Lock()
        self.counts = dict.fromkeys(("received", "sent", "errors", "dropped", "malformed"), 0)
        with map_exceptions(errors(), f"server on {topic}"):
            # indirect=False: the default runs the callback on a non-daemon Python thread, which
            # Python joins at exit before atexit closes this server, so Ctrl-C never ended the process
            self._queryable = session.shared().declare_queryable(
                self._key, zenoh_module().handlers.Callback(self._on_query, indirect=False), complete=True)
            self._token = presence.declare(session.shared(), session.domain, "server", topic, info)

    def _on_query(self, query: Any) -> None:
        if not self._inbox.put(query):
            query.drop()

    def recv(self, timeout: Optional[float]) -> Optional[tuple[Any, list[memoryview]]]:
        """The next request as ``(ticket, frames)``, or None once ``timeout`` seconds pass; a bad or
        oversize request gets an error reply and raises :class:`DecodeError`."""
        query = self._inbox.get(timeout)
        if query is None:
            return None
        with self._lock:
            self.counts["received"] += 1
        payload, attachment = query.payload, query.attachment
        try:
            if payload is not None and len(payload) > self._max_message_size:
                raise DecodeError(f"a request of {len(payload)} bytes is over max_message_size "
                                  f"({self._max_message_size})")
            if attachment is None:
                raise DecodeError("a zenoh request without a frame table attachment")
            frames = framing.split(b"" if payload is None else payload.to_bytes(), attachment.to_bytes())
        except DecodeError as error:
            with self._lock:
                self.counts["malformed"] += 1
            _log.warning(self.topic, "malformed", "server on %s: refused a request: %s", self.topic, error)
            self.send_error(query, f"request refused: {error}")
            raise
        return query, frames

    def send(self, ticket: Any, frames: list) -> None:
        payload, lengths = framing.join(frames)
        self._reply(ticket, lambda: ticket.reply(ticket.key_expr, payload, attachment=lengths))

    def send_error(self, ticket: Any, message: str) -> None:
        self._reply(ticket, lambda: ticket.reply_err(ERROR_MARK + message.encode()))
        with self._lock:
            self.counts["errors"] += 1

    def _reply(self, query: Any, reply: Any) -> None:
        """Send one reply and finalize the query (an unfinalized one keeps its client waiting)."""
        if self._inbox.closed:
            raise ClosedError(f"server on {self.topic} is closed")
        try:
            with map_exceptions(errors(), f"server on {self.topic}"):
                reply()
            with self._lock:
                self.counts["sent"] += 1
        finally:
            query.drop()

    def statistics(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def close(self) -> None:
        if self._inbox.closed:
            return
        self._inbox.close()
        for entity in (self._token, self._queryable):
            try:
                entity.undeclare()
            except Exception as error:  # already gone with its session
                logger.debug("server on %s: undeclare: %s", self.topic, error)


class _Pending:
    """One request's outcome, filled by zenoh's reply callbacks."""

    def __init__(self, changed: threading.Condition) -> None:
        self.changed = changed
        self.reply: Any = None
        self.finished = False
        self.abandoned = False


class ZenohClientTransport(ClientTransport):
    """Sends requests to a server of service ``topic``; waits for one to exist first."""

    def __init__(self, topic: str, carrier: str = "tcp", max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
                 curve_server_key: Any = None, *, session: ZenohSession) -> None:
        check_carrier(carrier)
        check_no_curve(curve_server_key)
        self.topic = topic
        self._key = topic_key(topic, session.domain)
        self._max_message_size = check_max_message_size(max_message_size)
        self._zenoh = zenoh_module()
        self._lock = threading.RLock()  # entered as itself: a Ctrl-C inside Condition.__enter__ (Python code) leaks the lock
        self._changed = threading.Condition(self._lock)
        self._closed = False
        self._matching = False
        self.counts = dict.fromkeys(("sent", "received", "remote_errors", "timeouts", "stale", "malformed"), 0)
        self._session = session.shared()
        with map_exceptions(errors(), f"client of {topic}"):
            # used only to know whether a server exists: a Querier's timeout cannot change per call
            self._querier = self._session.declare_querier(self._key, target=self._zenoh.QueryTarget.BEST_MATCHING)
            # indirect=False, as the server's queryable: no Python thread to keep the process alive
            self._matching_listener = self._querier.declare_matching_listener(
                self._zenoh.handlers.Callback(self._on_matching, indirect=False))
            self._on_matching(self._querier.matching_status)

    def _on_matching(self, status: Any) -> None:
        with self._lock:
            self._matching = bool(status.matching)
            self._changed.notify_all()

    def request(self, frames: list, timeout: Optional[float]) -> list[memoryview]:
        check_outgoing(frames, self._max_message_size, self.topic)
        payload, lengths = framing.join(frames)
        deadline = deadline_after(timeout)
        while True:
            # also after a query that ended without a reply (its server went away): asking again at
            # once spun at full speed until the timeout, and zenoh, ending each query on this
            # thread, ate a Ctrl-C that landed in its callback
            with self._lock:
                self._check_open()
                while not self._matching:
                    self._wait_or_time_out(deadline, "no server")
            pending = self._send(payload, lengths, deadline)
            with self._lock:
                while pending.reply is None and not pending.finished:
                    try:
                        self._wait_or_time_out(deadline, "no reply")
                    except (WaitTimeout, ClosedError):
                        pending.abandoned = True
                        raise
                reply = pending.reply
            if reply is not None:
                return self._result(reply)

    def _send(self, payload: bytes, lengths: bytes, deadline: Optional[float]) -> _Pending:
        pending = _Pending(self._changed)
        left = remaining_seconds(deadline)
        query_timeout = UNBOUNDED_QUERY if left is None else left + STALE_GRACE
        with map_exceptions(errors(), f"client of {self.topic}"):
            # indirect=False: the callbacks only take a lock, and run in zenoh's order, so a late
            # reply to an earlier request is counted before the next request's reply returns
            self._session.get(self._key, self._zenoh.handlers.Callback(
                lambda reply: self._on_reply(pending, reply), lambda: self._on_finished(pending), indirect=False),
                payload=payload, attachment=lengths, target=self._zenoh.QueryTarget.BEST_MATCHING,
                timeout=query_timeout)
        with self._lock:
            self.counts["sent"] += 1
        return pending

    def _on_reply(self, pending: _Pending, reply: Any) -> None:
        with self._lock:
            if pending.abandoned or pending.reply is not None:
                self.counts["stale"] += 1
                return
            pending.reply = reply
            self._changed.notify_all()

    def _on_finished(self, pending: _Pending) -> None:
        with self._lock:
            pending.finished = True
            self._changed.notify_all()

    def _wait_or_time_out(self, deadline: Optional[float], what: str) -> None:
        """One wait on the condition (held); ClosedError once closed, WaitTimeout at the deadline."""
        self._check_open()
        left = remaining_seconds(deadline)
        if left == 0:
            self.counts["timeouts"] += 1
            raise WaitTimeout(f"request to {self.topic}: {what} within the timeout")
        self._changed.wait(slice_seconds(deadline))
        self._check_open()

    def _result(self, reply: Any) -> list[memoryview]:
        ok = reply.ok
        if ok is not None:
            attachment = ok.attachment
            try:
                if attachment is None:
                    raise DecodeError("a zenoh reply without a frame table attachment")
                frames = framing.split(ok.payload.to_bytes(), attachment.to_bytes())
            except DecodeError:
                with self._lock:
                    self.counts["malformed"] += 1
                raise
            with self._lock:
                self.counts["received"] += 1
            return frames
        message = reply.err.payload.to_bytes()
        if message.startswith(ERROR_MARK):
            with self._lock:
                self.counts["remote_errors"] += 1
            raise RemoteError(truncate(message[len(ERROR_MARK):].decode(errors="replace")))
        raise TransportError(f"request to {self.topic}: zenoh replied {truncate(message)!r}")

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"client of {self.topic} is closed")

    def statistics(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._changed.notify_all()
        for entity in (self._matching_listener, self._querier):
            try:
                entity.undeclare()
            except Exception as error:  # already gone with its session
                logger.debug("client of %s: undeclare: %s", self.topic, error)
