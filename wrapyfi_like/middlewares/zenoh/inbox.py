"""A bounded queue between zenoh's threads and the caller's, with timeouts and a close that wakes.

Why not zenoh's own channels: ``FifoChannel.recv()`` has no timeout, and undeclaring a subscriber
while another thread is inside ``Subscriber.recv()`` aborts the process (zenoh-python 1.10).
Zenoh calls :meth:`Inbox.put` from its receive task; when the inbox is full it waits there, which
pushes back to the publisher through zenoh's congestion control (``"block"`` loses nothing).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable, Optional

from wrapyfi_like.exceptions import ClosedError
from wrapyfi_like.middlewares.deadlines import deadline_after, remaining_seconds


class Inbox:
    def __init__(self, capacity: int, what: str) -> None:
        self._items: deque = deque()
        self._capacity = capacity
        self._what = what
        self._changed = threading.Condition(threading.Lock())  # not the default RLock: cheaper per message
        self.closed = False

    def put(self, item: Any) -> bool:
        """Queue ``item``, waiting for room; False if the inbox was closed meanwhile (item lost)."""
        with self._changed:
            while len(self._items) >= self._capacity and not self.closed:
                self._changed.wait()
            if self.closed:
                return False
            self._items.append(item)
            self._changed.notify_all()
            return True

    def get(self, timeout: Optional[float]) -> Optional[Any]:
        """The oldest item, None once ``timeout`` passes; :class:`ClosedError` once closed."""
        deadline = deadline_after(timeout)
        with self._changed:
            while not self._items:
                if self.closed:
                    raise ClosedError(f"{self._what} is closed")
                left = remaining_seconds(deadline)
                if left == 0:
                    return None
                self._changed.wait(left)
            if self.closed:
                raise ClosedError(f"{self._what} is closed")
            item = self._items.popleft()
            self._changed.notify_all()
            return item

    def take_matching(self, wanted: Callable[[Any], bool]) -> list:
        """Remove and return, oldest first, every waiting item ``wanted`` accepts."""
        with self._changed:
            taken = [item for item in self._items if wanted(item)]
            if taken:
                self._items = deque(item for item in self._items if not wanted(item))
                self._changed.notify_all()
            return taken

    def close(self) -> None:
        with self._changed:
            self.closed = True
            self._changed.notify_all()
