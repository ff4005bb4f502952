"""Taking samples from a zenoh ``FifoChannel``: with a timeout, in order, and woken by close.

Why this is needed: ``Handler.recv()`` has no timeout in zenoh-python 1.10, and polling
``try_recv`` would be a sleep in disguise. So a wait without a deadline blocks in ``recv()`` in
the caller's thread (a listen with ``should_wait``: nothing else is involved, as in raw
zenoh-python), and a wait with a deadline that finds nothing waiting hands one ``recv()`` to a
helper thread and waits for its result until the deadline; the next call takes that result
before anything else, so order holds. Undeclaring the subscriber makes a blocked ``recv()``
raise at once (unlike ``Subscriber.recv()``, whose undeclare aborts the process).

Calls other than :meth:`close` and :meth:`discard` must come from one thread at a time (the
listener's lock).
"""

from __future__ import annotations

import threading
from typing import Any, Optional

from wrapyfi_like.exceptions import ClosedError
from wrapyfi_like.middlewares.deadlines import remaining_seconds
from wrapyfi_like.middlewares.zenoh.session import zenoh_module


class Channel:
    def __init__(self, handler: Any, what: str) -> None:
        self._handler = handler
        self._what = what
        self._closed_error = zenoh_module().ZError  # what recv/try_recv raise once the channel is closed
        self._pending: Optional[_Pending] = None
        self._close_lock = threading.Lock()
        self.closed = False

    def get(self, deadline: Optional[float]) -> Optional[Any]:
        """The next sample, None once ``deadline`` passes; :class:`ClosedError` once closed."""
        if self.closed:
            raise ClosedError(f"{self._what} is closed")
        if self._pending is None:
            if deadline is None:
                return self._recv()
            sample = self._try_recv()
            if sample is not None or remaining_seconds(deadline) == 0:
                return sample
            self._pending = _Pending(self._recv, self._what)
        pending = self._pending
        if not pending.done.wait(remaining_seconds(deadline)):
            return None
        self._pending = None
        return pending.result()

    def drain(self, limit: int) -> list:
        """Up to ``limit`` samples waiting now, oldest first (none while a helper thread waits for
        the next one: it must be taken first)."""
        taken = []
        if self._pending is not None:
            if not self._pending.done.is_set():
                return taken
            pending, self._pending = self._pending, None
            taken.append(pending.result())
        while len(taken) < limit and (sample := self._try_recv()) is not None:
            taken.append(sample)
        return taken

    def _recv(self) -> Any:
        try:
            return self._handler.recv()
        except self._closed_error as error:
            raise ClosedError(f"{self._what} is closed") from error

    def _try_recv(self) -> Optional[Any]:
        try:
            return self._handler.try_recv()
        except self._closed_error as error:
            raise ClosedError(f"{self._what} is closed") from error

    def close(self) -> bool:
        """Mark closed (a blocked ``recv()`` ends when the subscriber is undeclared); False if it already was."""
        with self._close_lock:
            if self.closed:
                return False
            self.closed = True
            return True

    def discard(self) -> None:
        """Drop what waits (after the undeclare), so a zenoh task waiting for room returns."""
        try:
            while self._handler.try_recv() is not None:
                pass
        except self._closed_error:
            pass


class _Pending:
    """One ``recv()`` running in a helper thread, for a caller that waits with a deadline."""

    def __init__(self, receive: Any, what: str) -> None:
        self.done = threading.Event()
        self._sample: Any = None
        self._error: Optional[ClosedError] = None
        threading.Thread(target=self._run, args=(receive,), name=f"zenoh receive, {what}", daemon=True).start()

    def _run(self, receive: Any) -> None:
        try:
            self._sample = receive()
        except ClosedError as error:
            self._error = error
        finally:
            self.done.set()

    def result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._sample
