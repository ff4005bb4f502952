"""A wake-up another thread can send to a thread blocked in a ZeroMQ poll.

ZeroMQ sockets must not be touched from two threads, so ``close()`` (or a discovery change) cannot
reach into a poll that waits on one. Every such poll also waits on the read end of a pipe; writing
a byte to it wakes the poll at once, and the woken thread checks why.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod


class Wakeup:
    """The pipe: poll :meth:`fileno`, :meth:`set` from any thread, :meth:`clear` after waking.

    :meth:`set` may come from another thread while the owner closes (every transport's ``close``
    sets before it takes its lock): a lock makes a late set do nothing, instead of raising
    ``OSError`` or writing into a file that has taken over the freed descriptor number.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._closed = False
        self._lock = threading.Lock()

    def fileno(self) -> int:
        return self._read

    def set(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                os.write(self._write, b"!")
            except BlockingIOError:
                pass  # the pipe is full of unread wake-ups: the poll will wake anyway

    def clear(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                while os.read(self._read, 4096):
                    pass
            except BlockingIOError:
                pass

    def close(self) -> None:
        """Close both ends; closing again does nothing (the numbers may belong to new files by then)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self._read)
                os.close(self._write)


class WakeOnClose(ABC):
    """The close of a transport whose blocking call polls :attr:`_wakeup` with :attr:`_lock` held:
    mark closed and wake that poll first (it then raises :class:`ClosedError` and lets the lock
    go), then :meth:`_release` the sockets under the lock, so no socket is closed under a poll."""

    _closed: bool
    _lock: threading.Lock
    _wakeup: Wakeup

    def close(self) -> None:
        """Close, also while another thread waits in a blocking call (it gets ``ClosedError`` at
        once: the wait is woken before the lock is taken); closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        self._wakeup.set()
        with self._lock:
            self._release()
            self._wakeup.close()

    @abstractmethod
    def _release(self) -> None:
        """Let go of the transport's sockets and announcements (the lock is held)."""
