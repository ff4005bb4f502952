"""``should_wait=False`` never blocks, also while a peer floods the topic with malformed messages
(or the service with malformed requests).

A non-waiting listen used to skip bad messages for as long as the transport had one more, so a
peer sending them faster than they are refused kept the caller (and every thread taking turns on
that listener) inside listen() for good. The transports here always have one more bad message.
"""

import time

import pytest

from wrapyfi_like.connect.formats import ValueFormat
from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.connect.servers import Server
from wrapyfi_like.limits import MAX_SKIPPED_WITHOUT_WAIT

pytestmark = pytest.mark.timeout(30)

FLOOD = 100_000


class EndlessGarbage:
    """A listener transport whose queue never runs out of malformed messages (up to FLOOD)."""

    def __init__(self) -> None:
        self.calls = 0

    def recv(self, timeout):
        self.calls += 1
        return None if self.calls > FLOOD else [memoryview(b"\x93not a header")]

    def close(self) -> None:
        """Nothing to close."""


def test_a_non_waiting_listen_returns_while_malformed_messages_keep_coming(topic):
    listener = Listener("Test", topic, should_wait=False, middleware="inproc")
    listener._transport.close()
    flood = listener._transport = EndlessGarbage()
    assert listener.listen() is None
    assert flood.calls == MAX_SKIPPED_WITHOUT_WAIT
    assert listener.malformed == MAX_SKIPPED_WITHOUT_WAIT
    assert listener.listen() is None  # the next call skips the next batch: every bad message counted
    assert listener.malformed == 2 * MAX_SKIPPED_WITHOUT_WAIT


class EndlessBadRequests:
    """A server transport whose queue never runs out of malformed requests (up to FLOOD)."""

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0

    def recv(self, timeout):
        self.calls += 1
        return None if self.calls > FLOOD else (object(), [memoryview(b"\x93not a header")])

    def send_error(self, ticket, message: str) -> None:
        self.errors += 1

    def statistics(self) -> dict:
        """It refuses nothing itself: every request reaches the server, which skips it."""
        return {"sent": 0, "errors": self.errors, "dropped": 0, "malformed": 0, "refused": 0}

    def close(self) -> None:
        """Nothing to close."""


def test_a_non_waiting_reply_returns_while_malformed_requests_keep_coming(topic):
    server = Server("Test", topic, should_wait=False, value_formats=[ValueFormat()], middleware="inproc")
    server._transport.close()
    flood = server._transport = EndlessBadRequests()
    assert server.await_request() is None
    assert flood.calls == MAX_SKIPPED_WITHOUT_WAIT
    assert server.malformed == flood.errors == MAX_SKIPPED_WITHOUT_WAIT


def test_a_zeromq_listener_with_a_deadline_returns_while_malformed_messages_keep_coming(topic):
    """The zeromq transport skips bad messages itself: recv(0) must not skip them all."""
    import zmq

    listener = Listener("Test", topic, should_wait=False)
    transport = listener._transport
    flooder = zmq.Context.instance().socket(zmq.PUSH)
    flooder.setsockopt(zmq.SNDHWM, 0)
    flooder.connect(transport.endpoint)
    try:
        for _ in range(5_000):
            flooder.send_multipart([b"/another/topic", b"junk"])
        deadline = time.monotonic() + 20
        while transport._intake.queued() < 3 * MAX_SKIPPED_WITHOUT_WAIT:  # the intake's queue: 1000
            assert time.monotonic() < deadline, "the flood did not arrive"
            time.sleep(0.01)  # the intake's queue has no event to wait on
        assert listener.listen() is None
        assert transport.statistics()["malformed"] == MAX_SKIPPED_WITHOUT_WAIT
        assert listener.listen() is None  # the next call skips the next batch: every one counted
        assert listener.stats()["malformed"] == 2 * MAX_SKIPPED_WITHOUT_WAIT
    finally:
        flooder.close(linger=0)
        listener.close()
