"""The service reader (``zeromq/router.py``): libzmq DEALER peers, bounded requests, bounded replies."""

from __future__ import annotations

import select
import socket
import struct
import sys
import threading
import time
from typing import Optional

import pytest
import zmq

from wrapyfi_like.middlewares.zeromq import zmtp
from wrapyfi_like.middlewares.zeromq.router import ZmtpRouter
from wrapyfi_like.middlewares.zeromq.wakeup import Wakeup

pytestmark = pytest.mark.timeout(30)

LIMIT = 64 * 1024
QUEUED_REPLIES = 4


class Refusals:
    def __init__(self) -> None:
        self.seen: list[tuple] = []
        self._changed = threading.Condition()

    def __call__(self, outlet, heads: list, problem: str) -> None:
        with self._changed:
            self.seen.append((outlet, [bytes(head) for head in heads], problem))
            self._changed.notify_all()

    def wait_for(self, count: int) -> list[tuple]:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.seen) >= count, 10), f"{len(self.seen)} refusals"
            return self.seen


def make_router(limit: int = LIMIT, **kwargs) -> tuple[ZmtpRouter, Refusals]:
    refusals = Refusals()
    return ZmtpRouter("tcp://127.0.0.1:*", limit, 16, QUEUED_REPLIES, refusals, head_frames=1, **kwargs), refusals


def dealer(endpoint: str, routing_id: bytes = b"") -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if routing_id:
        sock.setsockopt(zmq.ROUTING_ID, routing_id)
    sock.connect(endpoint)
    return sock


def test_requests_and_replies_travel_between_libzmq_dealers_and_the_router_unchanged():
    router, _ = make_router()
    clients = [dealer(router.endpoint) for _ in range(3)]
    try:
        for index, client in enumerate(clients):
            client.send_multipart([b"id%d" % index, b"header", b"x" * (index * 30_000)])
        answered = 0
        while answered < 3:
            outlet, frames = router.take(10)
            index = int(bytes(frames[0])[2:])
            assert [bytes(frame) for frame in frames[1:]] == [b"header", b"x" * (index * 30_000)]
            assert router.send(outlet, [bytes(frames[0]), b"ok", memoryview(b"y" * index)])
            answered += 1
        for index, client in enumerate(clients):
            assert client.poll(10_000)
            assert client.recv_multipart() == [b"id%d" % index, b"ok", b"y" * index]
    finally:
        for client in clients:
            client.close()
        router.release()


def test_a_request_over_the_limit_is_refused_with_its_request_id_and_the_connection_goes_on():
    router, refusals = make_router()
    client = dealer(router.endpoint)
    try:
        client.send_multipart([b"big", b"header", bytes(LIMIT)])
        client.send_multipart([b"small", b"header"])
        outlet, heads, problem = refusals.wait_for(1)[0]
        assert heads == [b"big"] and "max_message_size" in problem
        assert router.send(outlet, [b"big", b"error", b"refused"])  # the way back is known
        _, frames = router.take(10)
        assert [bytes(frame) for frame in frames] == [b"small", b"header"]
        assert client.poll(10_000) and client.recv_multipart() == [b"big", b"error", b"refused"]
    finally:
        client.close()
        router.release()


def test_a_peer_that_never_reads_loses_its_own_replies_only_and_they_hold_bounded_memory():
    router, _ = make_router()
    silent = dealer(router.endpoint)
    silent.setsockopt(zmq.RCVHWM, 1)
    honest = dealer(router.endpoint)
    try:
        silent.send_multipart([b"s", b"request"])
        silent_outlet, _ = router.take(10)
        reply = [b"s", b"ok", bytes(LIMIT // 2)]
        sent = 0
        deadline = time.monotonic() + 10
        while router.send(silent_outlet, reply):  # until the kernel's buffers and the outbox are full
            sent += 1
            assert time.monotonic() < deadline
        assert silent_outlet.out_bytes <= LIMIT + len(reply[2]) + 64  # one reply besides the byte limit
        assert len(silent_outlet.outbox) <= QUEUED_REPLIES
        honest.send_multipart([b"h", b"request"])
        outlet, _ = router.take(10)
        started = time.monotonic()
        assert router.send(outlet, [b"h", b"ok"])
        assert honest.poll(10_000) and honest.recv_multipart() == [b"h", b"ok"]
        assert time.monotonic() - started < 1.0
        print(f"{sent} replies of {LIMIT // 2} bytes sent to a peer that never reads before one was refused")
    finally:
        silent.close()
        honest.close()
        router.release()


def test_an_identity_with_a_zero_byte_first_is_never_taken_over():
    """Identities starting with a zero byte are the ones the router makes up for peers that set
    none (as libzmq's); a peer announcing one gets its own instead of the live peer's connection."""
    router, _ = make_router(handover=True)
    tool = dealer(router.endpoint)
    thief = None
    try:
        tool.send_multipart([b"1", b"x"])
        outlet, _ = router.take(10)
        assert outlet.identity[:1] == b"\0"
        thief = dealer(router.endpoint, outlet.identity)
        thief.send_multipart([b"2", b"x"])
        stolen, _ = router.take(10)
        assert stolen.identity != outlet.identity and stolen.identity[:1] == b"\0"
        assert not outlet.gone and router.outlet(outlet.identity) is outlet
        assert router.send(outlet, [b"1", b"ok"])
        assert tool.poll(10_000) and tool.recv_multipart() == [b"1", b"ok"]
    finally:
        tool.close()
        if thief is not None:
            thief.close()
        router.release()


def test_with_handover_a_new_connection_with_a_live_identity_takes_its_place():
    router, _ = make_router(handover=True)
    first = dealer(router.endpoint, b"Nnode")
    second = None
    try:
        first.send_multipart([b"1", b"x"])
        outlet, _ = router.take(10)
        assert outlet.identity == b"Nnode" and router.outlet(b"Nnode") is outlet
        second = dealer(router.endpoint, b"Nnode")
        second.send_multipart([b"2", b"x"])
        taken, _ = router.take(10)
        assert taken.identity == b"Nnode" and router.outlet(b"Nnode") is taken
        assert outlet.gone and not router.send(outlet, [b"1", b"ok"])
    finally:
        first.close()
        if second is not None:
            second.close()
        router.release()


def test_a_push_socket_is_not_a_peer_of_a_router():
    router, _ = make_router()
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    client = dealer(router.endpoint)
    try:
        push.connect(router.endpoint)
        push.send_multipart([b"1", b"x"], zmq.NOBLOCK) if push.poll(100, zmq.POLLOUT) else None
        client.send_multipart([b"2", b"x"])
        _, frames = router.take(10)
        assert bytes(frames[0]) == b"2"
        assert router.take(0.2) is None
    finally:
        push.close()
        client.close()
        router.release()


def test_a_peer_that_breaks_the_grammar_right_after_a_request_leaves_the_router_serving_others():
    """The request before the broken frame is still handed out (its reply goes nowhere); the
    reading thread goes on, so the next client is served."""
    import socket

    from wrapyfi_like.middlewares.zeromq import zmtp

    router, _ = make_router()
    host, port = router.endpoint[len("tcp://"):].rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=10)
    client = dealer(router.endpoint)
    try:
        request = zmtp.frame_head(2, True) + b"id" + zmtp.frame_head(4, False) + b"body"
        raw.sendall(zmtp.GREETING + zmtp.ready(b"DEALER") + request + b"\xff" * 16)  # flags 0xff: broken
        outlet, frames = router.take(10)
        assert [bytes(frame) for frame in frames] == [b"id", b"body"]
        deadline = time.monotonic() + 10
        while not outlet.gone:
            assert time.monotonic() < deadline
            router.take(0.01)
        assert not router.send(outlet, [b"id", b"ok"])
        client.send_multipart([b"next", b"x"])
        outlet, frames = router.take(10)
        assert bytes(frames[0]) == b"next" and router.send(outlet, [b"next", b"ok"])
        assert client.poll(10_000) and client.recv_multipart() == [b"next", b"ok"]
    finally:
        raw.close()
        client.close()
        router.release()


def test_a_pong_goes_out_behind_a_reply_being_written_never_inside_it():
    """libzmq clients ping every second; the answer must wait for a reply the kernel has taken
    only part of, or the client would read a PONG in the middle of a frame."""
    router, _ = make_router(limit=64 << 20)
    host, port = router.endpoint[len("tcp://"):].rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=10)
    try:
        raw.sendall(zmtp.GREETING + zmtp.ready(b"DEALER") + zmtp.frame_head(2, True) + b"id"
                    + zmtp.frame_head(1, False) + b"x")
        outlet, _ = router.take(10)
        payload = bytes(range(256)) * (96 * 1024)  # 24 MiB: more than the kernel's socket buffers hold
        assert router.send(outlet, [b"id", b"ok", payload])
        ping = zmtp.command(b"PING", b"\x00\x1e" + b"ctx")
        raw.sendall(ping)
        deadline = time.monotonic() + 10
        while len(outlet.outbox) < 2:  # the reply's rest, then the pong
            assert time.monotonic() < deadline, "the pong was not queued behind the reply"
            router.take(0.005)  # a bounded wait (nothing arrives)
        reply = (zmtp.frame_head(2, True) + b"id" + zmtp.frame_head(2, True) + b"ok"
                 + zmtp.frame_head(len(payload), False) + payload)
        expected = zmtp.GREETING + zmtp.ready(b"ROUTER") + reply + zmtp.pong(b"\x00\x1e" + b"ctx")
        received = bytearray()
        while len(received) < len(expected):
            chunk = raw.recv(1 << 20)
            assert chunk, "the router closed the connection"
            received += chunk
        assert received[:10] == expected[:10] and received[64:] == expected[64:]  # greeting fields vary
    finally:
        raw.close()
        router.release()


def _wait_queued(router: ZmtpRouter, count: int) -> None:
    deadline = time.monotonic() + 10
    while router.queued() < count:
        assert time.monotonic() < deadline, "the request did not arrive"
        zmq.select([], [], [], 0.005)


def test_serial_queues_one_request_per_connection_so_connections_are_served_in_turn():
    router, _ = make_router(serial=True)
    eager, other = dealer(router.endpoint), dealer(router.endpoint)
    try:
        for index in range(20):
            eager.send_multipart([b"eager%d" % index, b"x"])
        outlet, frames = router.take(10)
        assert bytes(frames[0]) == b"eager0"
        other.send_multipart([b"other", b"x"])
        _wait_queued(router, 1)  # the other's request, not eager1: that one waits for eager0's reply
        router.send(outlet, [b"done"])
        router.done(outlet)
        taken = [bytes(router.take(10)[1][0]) for _ in range(2)]
        assert taken == [b"other", b"eager1"]
    finally:
        eager.close()
        other.close()
        router.release()


def test_serial_stops_reading_a_peer_whose_replies_are_not_read_and_serves_others():
    router, _ = make_router(serial=True)
    deaf = zmq.Context.instance().socket(zmq.DEALER)
    deaf.setsockopt(zmq.LINGER, 0)
    deaf.setsockopt(zmq.RCVHWM, 1)  # libzmq itself reads one reply, then leaves the rest to TCP
    deaf.setsockopt(zmq.RCVBUF, 64 * 1024)
    deaf.connect(router.endpoint)
    honest = dealer(router.endpoint)
    reply = b"r" * (LIMIT // 2)
    try:
        for index in range(2000):
            deaf.send_multipart([b"deaf%d" % index, b"x"])
        answered = 0
        while (request := router.take(1.0)) is not None:  # until it is not read any more
            outlet, _ = request
            router.send(outlet, [reply])
            router.done(outlet)
            answered += 1
            assert answered < 2000, "every request of a peer that reads no reply was answered"
        assert answered < 400  # what the kernel's buffers took (~20 MB of replies at most)
        honest.send_multipart([b"honest", b"x"])
        outlet, frames = router.take(10)
        assert bytes(frames[0]) == b"honest"
        router.send(outlet, [b"ok"])
        assert honest.poll(10_000) and honest.recv_multipart() == [b"ok"]
    finally:
        deaf.close()
        honest.close()
        router.release()


# -- serial: the wake-up protocol (a freeing from another thread is never lost) ------------------
# Each test injects one interleaving of the reader and the host's thread at the exact point a
# reviewer found a lost wake-up: the host's done() is called from inside the reader's step.


@pytest.mark.parametrize("serial", [False, True], ids=["plain", "serial"])
def test_a_handshake_completes_while_the_queue_is_full_and_the_reader_does_not_spin(serial):
    """A peer that connects while no request can be queued (a directory behind a burst, an agent
    reconnecting) has its handshake read at once, and its request waits its turn; before, the reader
    polled that connection without reading it, in a loop at full CPU (taking the CPU the caller
    needed to empty the queue), until the handshake timed out and the peer's connection was dropped."""
    router, _ = make_router(serial=serial, handover=True)
    clients = [dealer(router.endpoint, b"v2c%d" % index) for index in range(17)]
    late = None
    try:
        for client in clients:
            client.send_multipart([b"early", b"x"])
        _wait_queued(router, 17)  # one over its depth of 16: full, no connection is read
        steps = []
        step = router._step
        router._step = lambda timeout: (steps.append(1), step(timeout))
        late = dealer(router.endpoint, b"v2late")
        late.send_multipart([b"late", b"x"])
        _wait_until(lambda: router.outlet(b"v2late") is not None, "the handshake was not read while full")
        steps.clear()
        zmq.select([], [], [], 0.3)
        assert len(steps) < 10, f"the reader looped {len(steps)} times in 0.3 s with nothing to read"
        assert router.queued() == 17
        taken = [bytes(router.take(10)[1][0]) for _ in range(18)]
        assert taken == [b"early"] * 17 + [b"late"], "the late request was not served in its turn"
    finally:
        for client in clients + ([late] if late is not None else []):
            client.close()
        router.release()


def _serial_router(limit: int) -> tuple[ZmtpRouter, Wakeup]:
    ready = Wakeup()  # as the discovery host: it takes requests only when this is readable
    router = ZmtpRouter("tcp://127.0.0.1:*", limit, 16, QUEUED_REPLIES, Refusals(), head_frames=0,
                        serial=True, notify=ready)
    return router, ready


def _served_after_notice(router: ZmtpRouter, ready: Wakeup) -> Optional[bytes]:
    """The next request, taken as the discovery host does: only once ``ready`` says one waits
    (a take that waits would itself wake the reader and hide a lost wake-up)."""
    if not select.select([ready.fileno()], [], [], 5)[0]:
        return None
    taken = router.take(0)
    return None if taken is None else bytes(taken[1][0])


def _wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, what
        zmq.select([], [], [], 0.005)


def test_serial_a_done_while_the_reader_wakes_is_not_lost(monkeypatch):
    """done() lands while the reader handles another wake-up, just before it clears the pipe."""
    router, ready = _serial_router(LIMIT)
    client = dealer(router.endpoint)
    injected = threading.Event()
    original = Wakeup.clear

    def clear(wakeup: Wakeup) -> None:
        if wakeup is router._wakeup and armed.is_set():
            armed.clear()
            router.done(outlet)  # the host answers the first request ...
            injected.set()
        original(wakeup)  # ... and the reader clears the pipe after that

    armed = threading.Event()
    monkeypatch.setattr(Wakeup, "clear", clear)
    try:
        client.send(b"req1")
        outlet, frames = router.take(10)
        assert bytes(frames[0]) == b"req1"
        client.send(b"req2")
        c = outlet.connection
        _wait_until(lambda: c in router._holding and c.over_budget, "the second request was not held")
        ready.clear()
        armed.set()
        router._wakeup.set()  # another wake-up: another connection's done(), the writer
        assert injected.wait(10)
        assert router.send(outlet, [b"rep1"])
        assert client.poll(10_000) and client.recv() == b"rep1"
        assert _served_after_notice(router, ready) == b"req2"
    finally:
        client.close()
        router.release()
        ready.close()


def test_serial_a_done_while_the_reader_holds_a_parsed_request_is_not_lost(monkeypatch):
    """Two requests over the byte budget: the reader parses the second after the host took the
    first, and the host's done() lands between the reader's look at the connection and its hold."""
    router, ready = _serial_router(1000)
    host, port = router.endpoint[len("tcp://"):].rsplit(":", 1)
    client = socket.create_connection((host, int(port)), timeout=10)  # both requests in one write
    armed, injected = threading.Event(), threading.Event()
    original = ZmtpRouter._free

    def free(outlet) -> bool:
        result = original(outlet)
        if not result and armed.is_set() and sys._getframe(1).f_code.co_name == "_one_each":
            armed.clear()
            ready.clear()  # the first request's notice is taken; only the second's may count
            router.done(outlet)
            injected.set()
        return result

    monkeypatch.setattr(ZmtpRouter, "_free", staticmethod(free))
    try:
        armed.set()
        client.sendall(zmtp.GREETING + zmtp.ready(b"DEALER") + zmtp.frame_head(600, False) + b"1" * 600
                       + zmtp.frame_head(600, False) + b"2" * 600)
        outlet, frames = router.take(10)
        assert bytes(frames[0]) == b"1" * 600
        assert injected.wait(10)
        assert _served_after_notice(router, ready) == b"2" * 600
    finally:
        client.close()
        router.release()
        ready.close()


def _raw_dealer_sending(endpoint: str, identity: bytes, requests: list[bytes]) -> socket.socket:
    """A DEALER speaking raw ZMTP that writes its handshake and every request in one write, so
    the router parses them in one read (a libzmq DEALER may write them apart)."""
    host, port = endpoint[len("tcp://"):].rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=10)
    properties = b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER" + b"\x08Identity" + struct.pack(
        ">I", len(identity)) + identity
    raw.sendall(zmtp.GREETING + zmtp.command(b"READY", properties)
                + b"".join(zmtp.frame_head(len(request), False) + request for request in requests))
    return raw


def test_serial_the_held_requests_of_a_handed_over_connection_are_served():
    """An agent reconnects (handover) while its first request is answered: the request read
    behind it (its bye, say) is served, its reply going nowhere, not dropped uncounted."""
    ready = Wakeup()
    router = ZmtpRouter("tcp://127.0.0.1:*", LIMIT, 16, QUEUED_REPLIES, Refusals(), head_frames=0,
                        serial=True, handover=True, notify=ready)
    old = _raw_dealer_sending(router.endpoint, b"agent", [b"sync", b"bye"])
    new = None
    try:
        outlet, frames = router.take(10)
        assert bytes(frames[0]) == b"sync"
        _wait_until(lambda: outlet.held, "the second request was not held")
        ready.clear()
        new = dealer(router.endpoint, b"agent")  # takes the identity over: the old connection is dropped
        new.send(b"hello")
        served = []
        while len(served) < 2:  # as the discovery host: on each notice, take until none is left
            assert select.select([ready.fileno()], [], [], 5)[0], f"only {served} served"
            ready.clear()
            while (taken := router.take(0)) is not None:
                served.append(bytes(taken[1][0]))
        assert sorted(served) == [b"bye", b"hello"]
        assert outlet.gone
    finally:
        old.close()
        if new is not None:
            new.close()
        router.release()
        ready.close()


def test_a_failed_write_drops_the_connection_so_its_peer_reconnects_and_is_answered(monkeypatch):
    """A write error on a live connection (here EMSGSIZE: too many buffers for one sendmsg)
    must not leave it marked gone while its requests are still read: the router shuts it, the
    reader drops it, and the client's next request comes over a new connection and is answered."""
    monkeypatch.setattr("wrapyfi_like.middlewares.zeromq.router._IOV_MAX", 1 << 20)
    router, _ = make_router()
    client = dealer(router.endpoint)
    try:
        client.send_multipart([b"first", b"x"])
        outlet, _ = router.take(10)
        assert not router.send(outlet, [b"first"] + [b"f"] * 2000)  # 4000 buffers: the kernel refuses
        _wait_until(lambda: outlet.connection.sock.fileno() < 0, "the failed connection was not dropped")
        client.send_multipart([b"second", b"x"])
        outlet, frames = router.take(10)
        assert bytes(frames[0]) == b"second"
        assert router.send(outlet, [b"second", b"ok"])
        assert client.poll(10_000) and client.recv_multipart() == [b"second", b"ok"]
    finally:
        client.close()
        router.release()
