"""A publisher's pool of reusable copy buffers: how ``zero_copy="safe"`` gives the caller its
arrays back at once without paying for fresh memory on every message.

Waiting for libzmq to let go of the caller's own buffer (pyzmq's ``MessageTracker``) costs thread
wake-ups (libzmq's I/O thread → pyzmq's garbage-collector thread → the caller) and stops the
caller from encoding message N+1 while message N is written out. A fresh copy per message costs
page faults on new memory. So the publisher copies each large buffer into one of its own warm
buffers (a memcpy: ~35 µs per MiB here) and returns; the *pool* keeps track of which of its
buffers libzmq still holds (one tracker each) and reuses those it let go of.

Memory is bounded: a pool holds at most ``budget`` bytes of buffers. When every buffer is still
in flight and no more fit, :meth:`CopyPool.copy` returns None and the caller decides: a ``"block"``
publisher waits for the oldest buffer (:meth:`CopyPool.oldest_in_flight`), ``"drop"`` and
``"latest"`` never wait for a slow listener and copy into fresh memory instead.
"""

from __future__ import annotations

from typing import Optional

import zmq

POOL_BYTES = 16 * 1024 * 1024
"""Bytes of copy buffers one publisher keeps at most (``"safe"`` ownership)."""
POOL_MAX_BUFFER = 4 * 1024 * 1024
"""Buffers larger than this are not copied into the pool: there, writing the message out takes
far longer than waiting for libzmq to let go of it, and a copy would cost a memcpy of many MiB."""


class _Slot:
    __slots__ = ("memory", "view", "tracker")

    def __init__(self, size: int) -> None:
        self.memory = bytearray(size)
        self.view = memoryview(self.memory)
        self.tracker: Optional[zmq.MessageTracker] = None

    def free(self) -> bool:
        if self.tracker is not None and self.tracker.done:
            self.tracker = None
        return self.tracker is None


class CopyPool:
    """Copy buffers of one publisher, reused once libzmq has sent what they held."""

    def __init__(self, budget: int = POOL_BYTES) -> None:
        self.budget = budget
        self.held = 0
        """Bytes of buffers the pool holds now (at most :attr:`budget`)."""
        self._slots: list[_Slot] = []  # oldest use first

    def copy(self, buffer, size: int) -> Optional[zmq.Frame]:
        """A tracked frame holding a copy of ``buffer`` (``size`` bytes), or None if every buffer
        that could hold it is in flight and no new one fits in the budget (or ``buffer`` is not
        C-contiguous)."""
        source = memoryview(buffer)
        if not source.c_contiguous:
            return None  # not a flat run of bytes: the caller copies it its own way
        slot = self._free_slot(size)
        if slot is None:
            return None
        view = slot.view[:size]
        view[:] = source.cast("B")
        frame = zmq.Frame(view, track=True)
        slot.tracker = frame.tracker
        self._slots.remove(slot)
        self._slots.append(slot)  # most recently used last: the oldest in flight comes first
        return frame

    def oldest_in_flight(self, excluding: list) -> Optional[zmq.MessageTracker]:
        """The tracker of the buffer sent longest ago that is not one of ``excluding`` (the
        trackers of the message being built: they are released only after it is sent)."""
        for slot in self._slots:
            if slot.tracker is not None and slot.tracker not in excluding:
                return slot.tracker
        return None

    def _free_slot(self, size: int) -> Optional[_Slot]:
        best = None
        for slot in self._slots:
            if len(slot.memory) >= size and (best is None or len(slot.memory) < len(best.memory)) and slot.free():
                best = slot
        if best is not None:
            return best
        if self.held + size > self.budget:
            for slot in list(self._slots):  # make room: free buffers too small for this size go
                if self.held + size <= self.budget:
                    break
                if slot.free():
                    self._slots.remove(slot)
                    self.held -= len(slot.memory)
            if self.held + size > self.budget:
                return None
        slot = _Slot(size)
        self._slots.append(slot)
        self.held += size
        return slot
