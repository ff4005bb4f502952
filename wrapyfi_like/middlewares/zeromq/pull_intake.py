"""The intake of a CURVE listener: libzmq's own ROUTER socket, which does the CurveZMQ handshake and
checks each client's key against the ZAP allow-list.

A ROUTER, not a PULL, so acks (:mod:`.acks`) can go back to each publisher's outlet (a DEALER):
each connection gets a routing id of its own, which the ack is addressed to. The listener's own
thread sends them, as :meth:`PullIntake.delivered` counts :data:`~.acks.ACK_EVERY` messages of
one connection, and whenever it is about to wait for a message (it caught up). A ROUTER drops
what it cannot route or has no room for, which is right for cumulative acks.

Only authenticated peers reach it, so libzmq's buffering is acceptable here: it bounds each frame
(``ZMQ_MAXMSGSIZE``) but holds a multipart message whole before we see it, so the per-message
budget of :mod:`.intake` holds for authenticated peers only (docs/reliability.md). What we read
is still checked frame by frame (:func:`~.framing.receive_bounded`).
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from typing import Optional

import zmq

from wrapyfi_like.exceptions import ClosedError
from wrapyfi_like.middlewares.deadlines import deadline_after, slice_ms
from wrapyfi_like.middlewares.zeromq.framing import limit_frame_size, receive_bounded
from wrapyfi_like.middlewares.zeromq import acks
from wrapyfi_like.middlewares.zeromq.intake import MAX_CONNECTIONS, Refused

WAKE_FRAME = b""
"""The one-frame message :meth:`PullIntake.close` sends to its own socket to end a blocking
receive: no publisher sends it, because a topic is never empty."""
_wake_endpoints = itertools.count()


class PullIntake:
    """The interface of :class:`~.intake.ZmtpIntake` over a libzmq ROUTER socket that ``keys`` secure.

    Waiting without a timeout is a plain blocking receive, the cheapest wait libzmq has. To end it,
    :meth:`close` sends :data:`WAKE_FRAME` to the socket itself over an inproc connection that only
    this object holds.
    """

    def __init__(self, address: str, max_message_size: int, queue_depth: Optional[int], refused: Refused,
                 keys) -> None:
        self._max_message_size = max_message_size
        self._refused = refused
        self._closing = False
        context = zmq.Context.instance()
        self._socket = context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        limit_frame_size(self._socket, max_message_size)
        if queue_depth is not None:
            self._socket.setsockopt(zmq.RCVHWM, queue_depth)
        keys.apply(self._socket)
        try:
            self._socket.bind(address)
        except zmq.ZMQError:
            self._socket.close()
            raise
        self.endpoint = self._socket.getsockopt(zmq.LAST_ENDPOINT).decode()
        wake_endpoint = f"inproc://wrapyfi_like-listener-wake-{next(_wake_endpoints)}"
        self._socket.bind(wake_endpoint)
        self._wake = context.socket(zmq.DEALER)
        self._wake.connect(wake_endpoint)
        self._poller = zmq.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        self.source = b""
        """The routing id of the connection the last message came from (for :meth:`delivered`)."""
        # per routing id: [first, delivered, acked] sequence numbers; the least recently heard go first
        self._peers: OrderedDict[bytes, list[int]] = OrderedDict()
        self._owing: set[bytes] = set()

    def receive(self, timeout: Optional[float]) -> Optional[list[memoryview]]:
        """As :meth:`.ZmtpIntake.receive`; a message refused for its size comes back as ``[]``
        (already reported), so a caller's count of skipped messages includes it."""
        if timeout is None:
            try:
                return self._receive(zmq.NOBLOCK)
            except zmq.Again:
                self._acknowledge()  # caught up: ack before waiting
                return self._receive(0)
        deadline = deadline_after(timeout)
        while True:
            try:
                return self._receive(zmq.NOBLOCK)
            except zmq.Again:
                self._acknowledge()
                if self._poller.poll(slice_ms(deadline)):
                    continue
                if deadline is not None and time.monotonic() >= deadline:
                    return None

    def _receive(self, flags: int) -> list[memoryview]:
        if self._closing:
            raise ClosedError(f"listener on {self.endpoint} is closed")
        head, body, problem = receive_bounded(self._socket, 3, self._max_message_size, flags)
        if self._closing and len(head) == 2 and not len(head[1]):
            raise ClosedError(f"listener on {self.endpoint} was closed while receiving")
        if problem:
            self._refused("an authenticated peer", problem)
            return []
        self.source = head[0].bytes
        return [frame.buffer for frame in head[1:] + body]

    def delivered(self, source: bytes, seq: int) -> None:
        """As :meth:`.ZmtpIntake.delivered`: acks at once every :data:`~.acks.ACK_EVERY` messages,
        else when the listener next waits."""
        peer = self._peers.get(source)
        if peer is None:
            peer = self._peers[source] = [seq, seq, 0]
            if len(self._peers) > MAX_CONNECTIONS:
                self._owing.discard(self._peers.popitem(last=False)[0])
        else:
            peer[1] = seq
            self._peers.move_to_end(source)
        if peer[1] - peer[2] >= acks.ACK_EVERY:
            self._ack(source, peer)
        else:
            self._owing.add(source)

    def _acknowledge(self) -> None:
        for source in list(self._owing):
            self._ack(source, self._peers[source])

    def _ack(self, source: bytes, peer: list[int]) -> None:
        try:
            self._socket.send_multipart([source, acks.pack(peer[0], peer[1])], zmq.NOBLOCK)
        except zmq.ZMQError:
            return  # no room or no route: a later ack covers this one
        peer[2] = peer[1]
        self._owing.discard(source)

    def close(self) -> None:
        """Wake a receive in another thread (it raises :class:`ClosedError`); the caller must then
        hold the lock its receives run under before calling :meth:`release`."""
        if not self._closing:
            self._closing = True
            self._wake.send(WAKE_FRAME)

    def release(self) -> None:
        """Close the sockets (no receive may be running)."""
        self._socket.close()
        self._wake.close()
