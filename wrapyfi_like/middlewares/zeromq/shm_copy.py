"""The publisher's one copy into shared memory, shared with a helper thread when it is large.

Why: from a few megabytes on, the copy into the sample is all a ``carrier="shm"`` publish costs
(16 MB ≈ 2 ms here), and one core copying through the cache does not use the memory bandwidth
(docs/guide/shm.md, "Copy speed"). numpy lets go of the GIL while it copies, so a second thread
copying other pieces at the same time finishes the copy in about half the time (measured here:
16 MB 2.0 → 1.1 ms, 64 MB 7.8 → 5.0 ms, 4 MB 415 → 265 µs; 2 MB and less gained nothing).

How: a copy of at least :data:`SHARED_FROM` bytes is cut into pieces of at most :data:`PIECE`
bytes, and the caller and this process's one helper thread take pieces from one iterator until
none is left, so each piece is copied once, by whichever thread took it. The caller never waits
for the helper to *start*: a helper that is busy (another publisher's copy) or not scheduled
leaves the caller to copy everything alone, as without it. The caller waits only for pieces the
helper took, and always waits for them, even when interrupted (Ctrl-C), because the sample must
not be sent or given back while the helper still writes into it; a piece takes milliseconds, and
the wait is cut into :data:`~wrapyfi_like.middlewares.deadlines.SIGNAL_CHECK` slices.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Iterator, Optional

import numpy as np

from wrapyfi_like.background import start_thread
from wrapyfi_like.middlewares.deadlines import SIGNAL_CHECK

SHARED_FROM = 4 << 20
"""Copies of at least this many bytes are shared with the helper thread (below it, waking the
helper cost more than it saved)."""
PIECE = 2 << 20
"""Bytes per piece: small enough that the two threads end close together, large enough that
taking the GIL back between pieces costs nothing measurable."""
LATE = 0.001
"""Seconds the caller may wait for the helper's last piece (one piece takes about 0.3 ms): a
helper later than that was not running (no core free: other processes were), and then sharing
costs more than it saves."""
ALONE_AFTER_LATE = 32
"""Copies the caller makes alone after the helper was late, before it tries sharing again."""


class _Job:
    """One copy: pieces taken by the caller and the helper from one iterator."""

    __slots__ = ("pieces", "started", "finished", "error")

    def __init__(self, pieces: Iterator[tuple[np.ndarray, np.ndarray]]) -> None:
        self.pieces = pieces
        self.started = False
        """Set by the helper before it takes its first piece: a caller that finds it unset once
        it has taken the last piece knows the helper will find none."""
        self.finished = threading.Event()
        """Set by the helper once it copies nothing more of this job."""
        self.error: Optional[BaseException] = None

    def run_as_helper(self) -> None:
        self.started = True
        try:
            for destination, source in self.pieces:  # the iterator hands each piece to one thread
                destination[...] = source
        except BaseException as error:  # reported to the caller, which raises it
            self.error = error
        finally:
            self.finished.set()


class _Helper:
    """This process's copy helper: a thread that takes one job at a time."""

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._job: Optional[_Job] = None
        self._busy = False
        self._started = False
        self.alone = 0
        """Copies to make without the helper (it was late: the cores are busy elsewhere)."""

    def offer(self, job: _Job) -> bool:
        """Hand ``job`` to the helper; False if it is busy with another (the caller copies alone)."""
        with self._ready:
            if self.alone:
                self.alone -= 1
                return False
            if self._busy:
                return False
            if not self._started:
                self._started = True
                start_thread(self._run, "wrapyfi_like-shm-copy")
            self._job, self._busy = job, True
            self._ready.notify()
        return True

    def _run(self) -> None:
        while True:
            with self._ready:
                while self._job is None:
                    self._ready.wait()  # a thread of ours: it blocks signals and may wait unbounded
                job, self._job = self._job, None
            job.run_as_helper()
            with self._ready:
                self._busy = False


_helper = _Helper()


def _after_fork() -> None:
    """A forked child has no helper thread (and maybe a lock its parent's helper held): a new one."""
    global _helper
    _helper = _Helper()


os.register_at_fork(after_in_child=_after_fork)


def copy(destination: np.ndarray, buffers: list, offsets: list[int]) -> None:
    """Copy each of ``buffers`` into the uint8 array ``destination`` at its offset; shared with
    the helper thread if together they are at least :data:`SHARED_FROM` bytes."""
    sources = [np.frombuffer(buffer, np.uint8) for buffer in buffers]
    if sum(source.nbytes for source in sources) < SHARED_FROM:
        for source, offset in zip(sources, offsets):
            destination[offset:offset + source.nbytes] = source
        return
    _share(_Job(iter([(destination[offset + start:offset + min(start + PIECE, source.nbytes)],
                       source[start:start + PIECE])
                      for source, offset in zip(sources, offsets) for start in range(0, source.nbytes, PIECE)])))


def _share(job: _Job) -> None:
    """Copy ``job``'s pieces on this thread and, if it is free, the helper's."""
    offered = _helper.offer(job)
    try:
        for destination, source in job.pieces:
            destination[...] = source
    finally:
        for _ in job.pieces:  # after an error here: nothing more for the helper to copy either
            pass
        if offered and _join(job) > LATE:
            _helper.alone = ALONE_AFTER_LATE
    if job.error is not None:
        raise job.error


def _join(job: _Job) -> float:
    """Wait until the helper copies nothing more of ``job`` (called once no piece is left): at
    once if the helper has not started it (it will find no piece either), else until its last
    piece is done; returns the seconds waited. An interruption meanwhile (Ctrl-C) is raised once
    the helper is done."""
    start = time.monotonic()
    interrupted: Optional[BaseException] = None
    while True:
        try:
            while job.started and not job.finished.wait(SIGNAL_CHECK):
                pass
            break
        except BaseException as error:  # KeyboardInterrupt: the sample is still being written
            interrupted = error
    if interrupted is not None:
        raise interrupted
    return time.monotonic() - start
