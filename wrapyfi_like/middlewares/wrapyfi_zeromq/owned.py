"""A socket used by one call at a time and closed by whoever holds it last.

Why: ``close()`` may come from any thread while another thread is inside ``recv``; a ZeroMQ socket
must not be closed under a thread using it. The call in flight sees :attr:`Owned.closed` within
one :data:`SLICE_S` wait, closes the socket itself and raises :class:`ClosedError`.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator, Optional

import zmq

from wrapyfi_like.exceptions import ClosedError, TransportError, map_exceptions

SLICE_S = 0.1
"""The longest a blocking call waits before looking at the closed flag again."""


class Owned:
    def __init__(self, socket: zmq.Socket, what: str) -> None:
        self.socket = socket
        self.what = what
        self.closed = False
        self._lock = threading.Lock()

    @contextmanager
    def use(self) -> Iterator[zmq.Socket]:
        """Hold the socket for one call; ZeroMQ errors come out as :class:`TransportError`."""
        with self._lock:
            try:
                self.check()
                with map_exceptions({zmq.ZMQError: TransportError}, self.what):
                    yield self.socket
            finally:
                if self.closed and not self.socket.closed:
                    self.socket.close()

    def check(self) -> None:
        if self.closed:
            raise ClosedError(f"{self.what} is closed")

    def wait(self, events: int, deadline: Optional[float]) -> bool:
        """Wait (holding the socket) until ``events`` or ``deadline`` (monotonic; None: no bound);
        False at the deadline, :class:`ClosedError` once closed."""
        while True:
            self.check()
            left = SLICE_S if deadline is None else min(SLICE_S, deadline - time.monotonic())
            if left <= 0:
                return False
            if self.socket.poll(int(left * 1000) + 1, events):
                return True

    def replace(self, socket: zmq.Socket) -> None:
        """Swap in a new socket (called while holding it, from :meth:`use`)."""
        self.socket.close(linger=0)
        self.socket = socket

    def close(self) -> None:
        self.closed = True
        if self._lock.acquire(blocking=False):
            try:
                if not self.socket.closed:
                    self.socket.close()
            finally:
                self._lock.release()


def deadline(timeout: Optional[float]) -> Optional[float]:
    return None if timeout is None else time.monotonic() + max(0.0, timeout)
