"""A bounded queue between zenoh's threads and the caller's, with timeouts and a close that wakes.

Why not zenoh's own channels: ``FifoChannel.recv()`` has no timeout, and undeclaring a subscriber
while another thread is inside ``Subscriber.recv()`` aborts the process (zenoh-python 1.10).
Zenoh calls :meth:`Inbox.put` from its receive task; when the inbox is full it waits there, which
pushes back to the publisher through zenoh's congestion control (``"block"`` loses nothing).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable, Optional

from wrapyfi_like.exceptions import ClosedError
from wrapyfi_like.middlewares.deadlines import deadline_after, remaining_seconds, slice_seconds
from wrapyfi_like.middlewares.handoff import Handoff


class Inbox:
    def __init__(self, capacity: int, what: str) -> None:
        self._items: deque = deque()
        self._capacity = capacity
        self._what = what
        self._lock = threading.Lock()  # the items and the flags below
        self._room = threading.Condition(self._lock)  # a put waits here while the inbox is full
        self._handoff = Handoff(self._lock)  # wakes the waiting get
        self._getter = threading.Lock()  # one get waits for items at a time; the others wait for it
        self.closed = False

    def put(self, item: Any) -> bool:
        """Queue ``item``, waiting for room; False if the inbox was closed meanwhile (item lost)."""
        with self._lock:
            while len(self._items) >= self._capacity and not self.closed:
                self._room.wait()
            if self.closed:
                return False
            self._items.append(item)
            self._handoff.signal()
            return True

    def get(self, timeout: Optional[float]) -> Optional[Any]:
        """The oldest item, None once ``timeout`` passes; :class:`ClosedError` once closed."""
        deadline = deadline_after(timeout)
        while not self._getter.acquire(timeout=slice_seconds(deadline)):  # another thread is getting
            if deadline is not None and time.monotonic() >= deadline:
                return None
        try:
            return self._get(deadline)
        finally:
            self._getter.release()

    def _get(self, deadline: Optional[float]) -> Optional[Any]:
        while True:
            with self._lock:
                if self.closed:
                    raise ClosedError(f"{self._what} is closed")
                if self._items:
                    item = self._items.popleft()
                    if len(self._items) == self._capacity - 1:
                        self._room.notify_all()  # it was full: puts may wait
                    return item
                left = remaining_seconds(deadline)
                if left == 0:
                    return None
                self._handoff.arm()
            self._handoff.wait(left)

    def take_matching(self, wanted: Callable[[Any], bool]) -> list:
        """Remove and return, oldest first, every waiting item ``wanted`` accepts."""
        with self._lock:
            taken = [item for item in self._items if wanted(item)]
            if taken:
                self._items = deque(item for item in self._items if not wanted(item))
                self._room.notify_all()
            return taken

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._room.notify_all()
            self._handoff.signal()
