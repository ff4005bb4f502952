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
        self._lock = threading.Lock()  # the items and the flags below
        self._room = threading.Condition(self._lock)  # a put waits here while the inbox is full
        # wakes the waiting get: held while nothing is signalled, released once per wait. A bare
        # lock hands over in about half the time of a Condition, and a 1 KB message passes one
        self._ready = threading.Lock()
        self._ready.acquire()
        self._waiting = False
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
            self._signal()
            return True

    def get(self, timeout: Optional[float]) -> Optional[Any]:
        """The oldest item, None once ``timeout`` passes; :class:`ClosedError` once closed."""
        deadline = deadline_after(timeout)
        if not self._getter.acquire(timeout=-1 if deadline is None else remaining_seconds(deadline)):
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
                self._waiting = True
            if left is None:
                self._ready.acquire()
            elif not self._ready.acquire(timeout=left):
                with self._lock:
                    if self._waiting:  # nobody signalled
                        self._waiting = False
                    else:  # signalled as the wait ended: take the signal back
                        self._ready.acquire(blocking=False)

    def _signal(self) -> None:
        """Wake the waiting get (called holding ``_lock``, the only place that releases ``_ready``)."""
        if self._waiting:
            self._waiting = False
            if self._ready.locked():
                self._ready.release()

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
            self._signal()
