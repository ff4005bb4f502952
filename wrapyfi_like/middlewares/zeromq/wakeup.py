"""A wake-up another thread can send to a thread blocked in a ZeroMQ poll.

ZeroMQ sockets must not be touched from two threads, so ``close()`` (or a discovery change) cannot
reach into a poll that waits on one. Every such poll also waits on the read end of a pipe; writing
a byte to it wakes the poll at once, and the woken thread checks why.
"""

from __future__ import annotations

import os
import threading


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
