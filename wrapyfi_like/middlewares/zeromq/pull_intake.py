"""The intake of a CURVE listener: libzmq's own PULL socket, which does the CurveZMQ handshake and
checks each client's key against the ZAP allow-list.

Only authenticated peers reach it, so libzmq's buffering is acceptable here: it bounds each frame
(``ZMQ_MAXMSGSIZE``) but holds a multipart message whole before we see it, so the per-message
budget of :mod:`.intake` holds for authenticated peers only (docs/reliability.md). What we read
is still checked frame by frame (:func:`~.framing.receive_bounded`).
"""

from __future__ import annotations

import itertools
import time
from typing import Optional

import zmq

from wrapyfi_like.exceptions import ClosedError
from wrapyfi_like.middlewares.deadlines import deadline_after, remaining_ms
from wrapyfi_like.middlewares.zeromq.framing import limit_frame_size, receive_bounded
from wrapyfi_like.middlewares.zeromq.intake import Refused

WAKE_FRAME = b""
"""The one-frame message :meth:`PullIntake.close` sends to its own socket to end a blocking
receive: no publisher sends it, because a topic is never empty."""
_wake_endpoints = itertools.count()


class PullIntake:
    """The interface of :class:`~.intake.ZmtpIntake` over a libzmq PULL socket that ``keys`` secure.

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
        self._socket = context.socket(zmq.PULL)
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
        self._wake = context.socket(zmq.PUSH)
        self._wake.connect(wake_endpoint)
        self._poller = zmq.Poller()
        self._poller.register(self._socket, zmq.POLLIN)

    def receive(self, timeout: Optional[float]) -> Optional[list[memoryview]]:
        """As :meth:`.ZmtpIntake.receive`; a message refused for its size comes back as ``[]``
        (already reported), so a caller's count of skipped messages includes it."""
        if timeout is None:
            return self._receive(0)
        deadline = deadline_after(timeout)
        while True:
            try:
                return self._receive(zmq.NOBLOCK)
            except zmq.Again:
                if not self._poller.poll(remaining_ms(deadline)) and time.monotonic() >= deadline:
                    return None

    def _receive(self, flags: int) -> list[memoryview]:
        if self._closing:
            raise ClosedError(f"listener on {self.endpoint} is closed")
        head, body, problem = receive_bounded(self._socket, 2, self._max_message_size, flags)
        if self._closing and len(head) == 1 and not len(head[0]):
            raise ClosedError(f"listener on {self.endpoint} was closed while receiving")
        if problem:
            self._refused("an authenticated peer", problem)
            return []
        return [frame.buffer for frame in head + body]

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
