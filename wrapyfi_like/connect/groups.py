"""Stacked returns travel as one call: the publisher stamps every part of a call with the same
group, and the listener returns parts of one group only.

A method with several decorators (or a list-form one) publishes each returned value on its own
topic. Any message lost on one topic (``backpressure="drop"``/``"latest"``, a cut) would otherwise
pair, say, frame 147 with the metadata of frame 148, and nothing would say so. So each part of one
call carries the same :class:`~wrapyfi_like.middlewares.envelope.Group` ``(origin, call)``: origin
random per publishing binding, call 1, 2, 3… And :class:`Aligner` reads the listeners until every
one holds a part of the same group, discarding (and counting as ``incomplete``) parts whose group
can no longer complete because another listener has already seen a later call of that origin.

A transport that does not carry groups gives parts without one; those are paired in arrival
order, one from each listener, as they always were.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any, Optional, Sequence

from wrapyfi_like.logs import RateLimitedLog
from wrapyfi_like.middlewares.envelope import Group, new_publisher_id

_log = RateLimitedLog(logging.getLogger("wrapyfi_like.listeners"))

MAX_HELD = 64
"""Parts one listener of a stacked method holds while waiting for the rest of their calls; the
oldest is discarded (counted as ``incomplete``) beyond that, so memory stays bounded whatever the
publishers do."""
MAX_ORIGINS = 256
"""Publishing origins whose latest call each listener remembers (least recently heard forgotten)."""
_UNGROUPED = b""
"""The origin given to parts that came without a group: they pair by arrival order."""
_OUT_OF_STEP = object()
"""What :meth:`Aligner._read_in_step` returns when the parts it read are of different calls."""


class CallGroups:
    """The publishing side: a new group for every call, and a lock so that the parts of two calls
    made from different threads are never interleaved on the way out (which would make a
    listener take the earlier call for lost)."""

    def __init__(self) -> None:
        self.origin = new_publisher_id()
        self.lock = threading.Lock()
        self._calls = 0

    def next(self) -> Group:
        """The group of the next call; call with :attr:`lock` held, for as long as its parts go out."""
        self._calls += 1
        return Group(self.origin, self._calls)


class Aligner:
    """The listening side of a stacked method: one value per listener, all from the same call.

    Listeners are read one at a time, each as its own ``should_wait`` says, and what was read but
    not returned yet is held for the next call, so a non-waiting listen that finds only some parts
    returns nothing now and the whole call later.
    """

    def __init__(self, listeners: Sequence[Any]) -> None:
        self._listeners = list(listeners)
        self._held: list[OrderedDict[Group, Any]] = [OrderedDict() for _ in self._listeners]
        self._seen: list[OrderedDict[bytes, int]] = [OrderedDict() for _ in self._listeners]
        self._ungrouped = [0] * len(self._listeners)
        self._lock = threading.Lock()

    def read(self) -> Optional[list]:
        """One value per listener, all of one call; None if a non-waiting listener has nothing
        and no call is complete yet."""
        with self._lock:
            if not any(self._held):
                values = self._read_in_step()
                if values is not _OUT_OF_STEP:
                    return values
            while True:
                self._discard_dead()
                group = self._complete()
                if group is not None:
                    return self._take(group)
                index = self._lacking()
                part = self._listeners[index].listen_part()
                if part is None:
                    return None
                value, group = part
                if group is None:
                    self._ungrouped[index] += 1
                    group = Group(_UNGROUPED, self._ungrouped[index])
                self._hold(index, group, value)

    def _read_in_step(self) -> Any:
        """The usual case, with nothing held: every listener's next part is of one call. Read
        the listeners in turn, as the general loop of :meth:`read` would (each time, the first
        listener lacking the first part's call), and return that call's values without the
        loop's searches over what is held (for two parts these cost ~16 µs a call, this ~3 µs).
        At the first part of another call, hold what was read and return :data:`_OUT_OF_STEP`
        for the loop to go on from there; if a non-waiting listener has nothing, hold what was
        read and return None; if a listener raises, hold what was read and let it raise (as the
        loop, which holds each part as it reads it, loses none either).

        A listener gets each origin's calls in increasing order (its transport skips repeats and
        late arrivals), so a call every listener has just given is not dead (behind a call one
        of them saw), and noting it in ``_seen`` could never make a later part dead: the loop
        would return these same values. A part that is dead on arrival (possible only after
        parts were evicted) is followed by another call's part, and the loop discards it.
        """
        first: Optional[Group] = None
        values: list = []
        part = None
        try:
            for index, listener in enumerate(self._listeners):
                part = listener.listen_part()
                if part is None:
                    break
                value, group = part
                if group is None:
                    self._ungrouped[index] += 1
                    group = Group(_UNGROUPED, self._ungrouped[index])
                if first is None:
                    first = group
                elif group != first:
                    self._hold(index, group, value)
                    break
                values.append(value)
            else:
                return values
        except BaseException:  # a listener raised (Ctrl-C, on_invalid="raise", closed): keep what was read
            self._hold_read(first, values)
            raise
        self._hold_read(first, values)
        return None if part is None else _OUT_OF_STEP

    def _hold_read(self, group: Optional[Group], values: list) -> None:
        """Hold ``values``, the parts of ``group`` read from the first listeners."""
        for index, value in enumerate(values):
            self._hold(index, group, value)

    def _hold(self, index: int, group: Group, value: Any) -> None:
        held, seen = self._held[index], self._seen[index]
        held[group] = value
        if len(held) > MAX_HELD:
            self._discard(index, held.popitem(last=False)[0])
        seen[group.origin] = max(group.call, seen.pop(group.origin, 0))
        if len(seen) > MAX_ORIGINS:
            seen.popitem(last=False)

    def _complete(self) -> Optional[Group]:
        """The oldest group (in the first listener's order) that every listener holds."""
        first, *others = self._held
        for group in first:
            if all(group in held for held in others):
                return group
        return None

    def _take(self, group: Group) -> list:
        """The values of ``group``; every older call of its origin is now beyond completing."""
        values = [held.pop(group) for held in self._held]
        for index, held in enumerate(self._held):
            for older in [g for g in held if g.origin == group.origin and g.call < group.call]:
                del held[older]
                self._discard(index, older)
        return values

    def _discard_dead(self) -> None:
        """Drop held parts whose call another listener has gone past without holding it: a
        listener gets each publisher's messages in order, so that part can never arrive there."""
        for index, held in enumerate(self._held):
            dead = [group for group in held if any(
                group not in other_held and other_seen.get(group.origin, 0) > group.call
                for other_held, other_seen in zip(self._held, self._seen) if other_held is not held)]
            for group in dead:
                del held[group]
                self._discard(index, group)

    def _discard(self, index: int, group: Group) -> None:
        """Count (and log, rate-limited) a part of ``group`` that listener ``index`` gives up."""
        listener = self._listeners[index]
        listener.incomplete += 1
        _log.warning(listener.in_topic, "incomplete", "listener on %s: discarded the part of call %d whose "
                     "other parts never arrived (%d incomplete in all)", listener.in_topic, group.call,
                     listener.incomplete)

    def _lacking(self) -> int:
        """A listener to read next: one lacking a part that another holds (else the first)."""
        for held in self._held:
            for group in held:
                for index, other in enumerate(self._held):
                    if group not in other:
                        return index
        return 0
