"""Limits every request/reply transport applies, so one client can never hold a service up.

A server answers one request at a time; these numbers bound what may wait around it per client
connection, and how much text an error reply may carry. The ZeroMQ transport maps them onto
libzmq's high-water marks; the in-memory one applies them to its inboxes. :class:`ClientCounts`
is the bookkeeping both engines' clients share, so their counters and timeout messages agree.
"""

from typing import Any, Optional

from wrapyfi_like.exceptions import WaitTimeout

MAX_ERROR_TEXT = 1000
"""Characters of an error reply's text kept when it is sent and when it is raised: enough for an
exception's message, never a megabyte a peer chose."""
QUEUED_REQUESTS = 16
"""Requests one client connection may have waiting at a server. Our clients send one request at
a time, so this only bounds a client that floods: beyond it the server stops taking that
client's requests (the flooder's own sends wait), and other clients are not affected."""
QUEUED_REPLIES = 128
"""Replies a server keeps for one client that has not read them yet (besides what the operating
system buffers); one more is dropped at once, counted and logged. Our clients have one request
out at a time; the room is for clients that send a batch of requests before reading, and for a
moment when the thread that writes replies to the network is late. It bounds what a client that
never reads costs: this many replies of the service's size."""


class ClientCounts:
    """A client's counters (``base.CLIENT_COUNTERS``) and the request steps every engine counts
    the same way: a request is ``sent`` once a server took it, and one that ends in
    :class:`WaitTimeout` (no server, or no reply) counts in ``timeouts``. An engine provides
    ``_send(request, deadline, timeout)`` and ``_await_reply(request_id, deadline, timeout)``."""

    topic: str

    def __init__(self) -> None:
        self.sent = self.received = self.timeouts = self.remote_errors = self.malformed = self.stale = 0

    def _exchange(self, request: Any, request_id: Any, deadline: Optional[float], timeout: Optional[float]) -> Any:
        """Send ``request`` and return the reply to ``request_id``, counting both steps (the
        engine's ``_send`` and ``_await_reply``, called directly: no closures per request)."""
        try:
            self._send(request, deadline, timeout)
            self.sent += 1
            return self._await_reply(request_id, deadline, timeout)
        except WaitTimeout:
            self.timeouts += 1
            raise

    def _no_server(self, timeout: Optional[float]) -> WaitTimeout:
        return WaitTimeout(f"no server for service {self.topic} could take the request within {timeout} s "
                           "(request_timeout); start one with mode='reply'")

    def _no_reply(self, timeout: Optional[float]) -> WaitTimeout:
        return WaitTimeout(f"no reply from service {self.topic} within {timeout} s (request_timeout)")

    def statistics(self) -> dict[str, int]:
        """Requests ``sent``; replies ``received`` (ok), ``remote_errors``, ``malformed`` and
        ``stale`` (late or foreign, dropped); requests that ended in ``timeouts``."""
        return {"sent": self.sent, "received": self.received, "remote_errors": self.remote_errors,
                "malformed": self.malformed, "stale": self.stale, "timeouts": self.timeouts}
