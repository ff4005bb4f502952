"""Buffers for a listener's large received frames, used again once nothing refers to them.

Why: a listener of 1 MiB messages allocated a fresh buffer per frame on the intake's thread,
and its user let go of it on another thread. glibc's free then gives the top of the intake
thread's heap back to the kernel (``madvise(MADV_DONTNEED)`` of ~4 MB every few messages, once
more than its trim threshold, 2 MiB there, is free), and the next buffers fault their pages in
again, each one zeroed by the kernel: over ipc ~40-100 page faults and ~60-100 µs of the
listener's CPU per 1 MiB message, a third of what raw pyzmq's listener spends on the whole
message. A buffer used again has its pages in place.

Ownership stays with the user: a buffer is handed out again only when nothing but this
collection refers to it (its reference count says so: every array, tensor or view made from a
received frame holds a reference to the buffer beneath it, and so does the frame itself while
the intake or the listener holds it). A frame nobody holds is never read again, so writing
over it changes nothing anyone sees.
"""

from __future__ import annotations

import sys

import numpy

KEEP = 8
"""Buffers kept for reuse at most, held or not: enough for the frames of a stream in flight at
once (the one the user holds, the one being read, those queued). Measured over ipc at 1 MiB flat
out: when a frame began, 0-8 earlier ones were still held (rarely up to 12); keeping 4 left 27-34
page faults per message, keeping 8 0.5-5. The kept count grows only as far as frames were held at
once, so a slow stream keeps one or two."""
KEEP_BYTES = 32 * 1024 * 1024
"""Bytes of the buffers kept, at most: what a listener may hold idle after a stream of large
messages stops (glibc keeps up to this much of a heap's free top too: its largest trim
threshold). A frame larger than this is never kept."""
_UNHELD = 2
"""``sys.getrefcount(kept[index])`` of a kept buffer nobody else holds: the list's reference and
the call's argument."""


class FrameBuffers:
    """The buffers of a peer's recent large frames, each reused once unheld.

    Only the thread that holds the intake's reader role calls :meth:`take`.
    """

    __slots__ = ("_kept", "_bytes", "allocated")

    def __init__(self) -> None:
        self._kept: list[numpy.ndarray] = []  # oldest first
        self._bytes = 0
        self.allocated = 0
        """Buffers allocated so far (the rest of the frames were read into kept ones)."""

    def take(self, size: int) -> memoryview:
        """A writable buffer of ``size`` bytes that nobody holds: a kept one of that size if one
        is unheld, else a new one, kept in place of the oldest kept ones if there is no room
        (unheld ones first: they are of other sizes; a held one forgotten stays its holder's).
        Its bytes are whatever they were: the caller writes all of them."""
        kept = self._kept
        for index in range(len(kept)):
            if kept[index].size == size and sys.getrefcount(kept[index]) == _UNHELD:
                return memoryview(kept[index])
        buffer = numpy.empty(size, numpy.uint8)
        self.allocated += 1
        if size <= KEEP_BYTES:
            self._make_room(size)
            kept.append(buffer)
            self._bytes += size
        return memoryview(buffer)

    def _make_room(self, size: int) -> None:
        """Forget kept buffers until one more of ``size`` bytes fits: the oldest unheld ones,
        then the oldest."""
        kept = self._kept
        while len(kept) >= KEEP or self._bytes + size > KEEP_BYTES:
            unheld = [index for index in range(len(kept)) if sys.getrefcount(kept[index]) == _UNHELD]
            self._bytes -= kept.pop(unheld[0] if unheld else 0).size

    def kept(self) -> tuple[int, int]:
        """``(buffers, bytes)`` kept now, held or not."""
        return len(self._kept), self._bytes

    def clear(self) -> None:
        """Keep nothing more (a closed intake): held buffers stay their holders'."""
        self._kept.clear()
        self._bytes = 0
