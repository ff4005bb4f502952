"""The requests of a CURVE reply server: libzmq's own ROUTER socket, which does the CurveZMQ
handshake and checks each client's key against the ZAP allow-list.

Only authenticated peers reach it, so libzmq's buffering is acceptable here: it bounds each
frame (``ZMQ_MAXMSGSIZE``) but holds a multipart request whole before we see it, so the
per-request budget of :mod:`.router` holds for authenticated clients only (docs/reliability.md).
What we read is still checked frame by frame (:func:`~.framing.receive_bounded`). The interface
is :class:`~.router.ZmtpRouter`'s, as :class:`~.pull_intake.PullIntake` is the intake's.
"""

from __future__ import annotations

import threading
import time
from typing import Optional

import zmq

from wrapyfi_like.exceptions import ClosedError
from wrapyfi_like.middlewares.deadlines import deadline_after, slice_ms
from wrapyfi_like.middlewares.zeromq.framing import limit_frame_size, receive_bounded, try_send
from wrapyfi_like.middlewares.zeromq.router import RouterRefused
from wrapyfi_like.middlewares.zeromq.wakeup import Wakeup

LINGER_MS = 1000
"""How long unsent replies may hold up closing a server (and interpreter exit)."""


class CurvePeer:
    """A client of a :class:`CurveRouter`: its routing id, and whether it was found gone."""

    __slots__ = ("identity", "gone")

    def __init__(self, identity: bytes) -> None:
        self.identity = identity
        self.gone = False


class CurveRouter:
    """A ROUTER with ``keys`` applied; ``binder`` is called with a :func:`~.settings.zmq_binder`
    style function and returns the endpoint (see :meth:`~.settings.ZeroMQSettings.bind`)."""

    def __init__(self, bind, max_message_size: int, queued_requests: int, queued_replies: int,
                 refused: RouterRefused, keys, *, head_frames: int) -> None:
        self._max_message_size = max_message_size
        self._refused = refused
        self._head_frames = head_frames
        self._lock = threading.Lock()  # the socket: libzmq sockets are not thread-safe
        self._closed = False
        self._socket = zmq.Context.instance().socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a full or unknown client raises, never blocks
        self._socket.setsockopt(zmq.RCVHWM, queued_requests)
        self._socket.setsockopt(zmq.SNDHWM, queued_replies)
        limit_frame_size(self._socket, max_message_size)
        self._socket.setsockopt(zmq.LINGER, LINGER_MS)  # a reply sent just before exit still goes out
        keys.apply(self._socket)
        try:
            self.endpoint = bind(self._socket)
        except BaseException:
            self._socket.close()
            raise
        self._wakeup = Wakeup()  # close() wakes a take blocked in a wait
        self._poller = zmq.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        self._poller.register(self._wakeup.fileno(), zmq.POLLIN)

    def take(self, timeout: Optional[float]) -> Optional[tuple[CurvePeer, list[memoryview]]]:
        """As :meth:`.ZmtpRouter.take`; a refused request is reported and skipped."""
        deadline = deadline_after(timeout)
        while True:
            with self._lock:
                if self._closed:
                    raise ClosedError("the server is closed")
                events = dict(self._poller.poll(slice_ms(deadline)))
                if self._closed:
                    raise ClosedError("the server is closed")
                if self._socket not in events:
                    if deadline is not None and time.monotonic() >= deadline:
                        return None
                    continue
                head, body, problem = receive_bounded(self._socket, 1 + self._head_frames,
                                                      self._max_message_size, zmq.NOBLOCK)
            peer = CurvePeer(head[0].bytes)
            if not problem:
                return peer, [frame.buffer for frame in head[1:] + body]
            self._refused(peer, [frame.buffer for frame in head[1:]], problem)  # it may reply: not under the lock

    def send(self, peer: CurvePeer, frames: list) -> bool:
        """As :meth:`.ZmtpRouter.send`: False (and ``peer.gone`` if so) when the reply was not sent."""
        with self._lock:
            if self._closed:
                raise ClosedError("the server is closed")
            try:
                return try_send(self._socket, [peer.identity, *frames])
            except zmq.ZMQError as failure:
                if failure.errno != zmq.EHOSTUNREACH:
                    raise
                peer.gone = True
                return False

    def flush(self, timeout: float) -> bool:
        """Nothing to wait for here: libzmq's ``ZMQ_LINGER`` (:data:`LINGER_MS`) sends what is
        queued when the socket closes."""
        return True

    def close(self) -> None:
        """Wake a take in another thread (it raises :class:`ClosedError`)."""
        self._closed = True
        self._wakeup.set()

    def release(self) -> None:
        """Close the socket once no take runs."""
        with self._lock:
            self._socket.close()
            self._wakeup.close()
