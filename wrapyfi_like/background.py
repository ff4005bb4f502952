"""Background threads that leave the process's signals to the main thread.

Why: Linux hands a signal sent to the process (Ctrl-C's SIGINT, SIGTERM) to any one thread that
does not block it, and Python runs signal handlers only in the main thread. A SIGINT taken by a
thread of ours that sits in a poll wakes nothing: the main thread stays in its own blocking wait
(a publisher waiting for its first listener waits without a timeout) and Ctrl-C does nothing.
So every thread this package starts, and the threads its libraries start for it, begin with the
asynchronous signals blocked; the kernel then gives them to the main thread. Faults (SIGSEGV and
the like) stay unblocked: they belong to the thread that caused them.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterator

FAULTS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT, signal.SIGTRAP,
          signal.SIGSYS, signal.SIGKILL, signal.SIGSTOP}
"""Signals a thread causes itself (or that cannot be blocked): never blocked."""
ASYNC_SIGNALS = frozenset(signal.valid_signals()) - FAULTS
"""Signals sent to the process from outside, for its main thread to handle."""


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Block :data:`ASYNC_SIGNALS` in this thread for the block; threads started inside inherit
    the mask and keep it. A signal that arrives meanwhile is delivered when the block ends."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, ASYNC_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def start_thread(target: Callable[..., object], name: str, *args: object) -> threading.Thread:
    """Start a daemon thread running ``target(*args)`` that never takes the process's signals."""
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    with signals_blocked():
        thread.start()
    return thread
