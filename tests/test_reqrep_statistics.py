"""Servers and clients count what happened to every request and reply, on both middlewares.

One scripted exchange per middleware: a good call, a call whose method raises, a malformed
request, a request that times out and whose late reply is then thrown away. Each count of
``statistics()`` must match exactly, and a reply that cannot be delivered must be dropped without
waiting, counted and logged once.
"""

from __future__ import annotations

import logging
import time

import pytest

from wrapyfi_like.connect.clients import Client
from wrapyfi_like.connect.formats import ValueFormat
from wrapyfi_like.connect.servers import Server
from wrapyfi_like.exceptions import RemoteError, WaitTimeout
from wrapyfi_like.middlewares.services import MAX_ERROR_TEXT, QUEUED_REPLIES

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("middleware", ["zeromq", "inproc"])
def test_statistics_count_each_outcome_exactly(topic, middleware, in_thread):
    server = Server("Stats", topic, value_formats=[ValueFormat()], middleware=middleware)
    client = Client("Stats", topic, value_formats=[ValueFormat()], middleware=middleware, request_timeout=10)

    def serve_one():
        request = server.await_request()
        if request.args[0] == "fail":
            server.reply_error(request, ValueError("x" * 5000))  # a long text: cut before it is sent
        else:
            server.reply(request, [request.args[0]])

    try:
        served = in_thread(serve_one)
        assert client.request(("good",), {}) == ["good"]
        served.result(timeout=10)

        served = in_thread(serve_one)
        with pytest.raises(RemoteError) as raised:
            client.request(("fail",), {})
        assert len(str(raised.value)) < MAX_ERROR_TEXT + 100 and "more characters" in str(raised.value)
        served.result(timeout=10)

        # a request the server cannot decode as a call (kwargs keys must be strings): it is
        # skipped with an error reply, and the same serve goes on to the next request
        served = in_thread(serve_one)
        with pytest.raises(RemoteError, match="malformed request"):
            client.request((), {1: "not a str key"})
        assert client.request(("after",), {}) == ["after"]
        served.result(timeout=10)

        client.request_timeout = 0.2
        with pytest.raises(WaitTimeout):
            client.request(("late",), {})  # nobody serves it now
        client.request_timeout = 10
        served = in_thread(lambda: [serve_one(), serve_one()])  # the late one, then the next
        assert client.request(("next",), {}) == ["next"]
        served.result(timeout=10)

        assert server.statistics() == {"received": 5, "sent": 6, "errors": 2, "dropped": 0, "malformed": 1}
        assert client.statistics() == {"sent": 6, "received": 3, "malformed": 0, "remote_errors": 2,
                                       "timeouts": 1, "dropped": 1}
        assert server.stats() == {"sent": 6, "received": 5, "dropped": 0, "malformed": 1}
        assert client.stats() == {"sent": 6, "received": 3, "dropped": 1, "malformed": 0}
    finally:
        client.close()
        server.close()


def test_inproc_reply_to_a_client_with_a_full_inbox_is_dropped_at_once_and_logged_once(topic, caplog):
    from wrapyfi_like.middlewares.inproc.bus import Inbox
    from wrapyfi_like.middlewares.inproc import ServerTransport as InprocServerTransport
    from wrapyfi_like.middlewares.inproc.reqrep import Ticket

    server = InprocServerTransport(topic)
    unread = Inbox("a client that never reads", capacity=QUEUED_REPLIES)
    try:
        with caplog.at_level(logging.WARNING, logger="wrapyfi_like.inproc.reqrep"):
            started = time.monotonic()
            for number in range(QUEUED_REPLIES + 3):
                server.send(Ticket(unread, number), [b"reply"])
            assert time.monotonic() - started < 1.0  # never waits for room
        assert server.statistics()["sent"] == QUEUED_REPLIES
        assert server.statistics()["dropped"] == 3
        assert caplog.text.count("does not read its replies") == 1
    finally:
        server.close()
