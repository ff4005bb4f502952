"""Stacked returns travel as one call: the publisher stamps every part of a call with the same
group, and the listener returns parts of one group only.

A method with several decorators (or a list-form one) publishes each returned value on its own
topic. Any message lost on one topic (``backpressure="drop"``/``"latest"``, a cut) would otherwise
pair, say, frame 147 with the metadata of frame 148, and nothing would say so. So each part of one
call carries the same :class:`~wrapyfi_like.middlewares.envelope.Group` ``(origin, call)``: origin
random per publishing binding, call 1, 2, 3… And :class:`Aligner` reads the listeners until every
one holds a part of the same group, discarding (and counting as ``incomplete``) parts whose group
can no longer complete: another listener holds a later call of that origin, a later call of it
completed, or calls of other origins kept completing past it.

A transport that does not carry groups gives parts without one; those are paired in arrival
order, one from each listener, as they always were.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Optional, Sequence

from wrapyfi_like.logs import RateLimitedLog
from wrapyfi_like.middlewares.envelope import Group, new_publisher_id

_log = RateLimitedLog(logging.getLogger("wrapyfi_like.listeners"))

MAX_HELD = 64
"""Parts one listener of a stacked method holds while waiting for the rest of their calls; the
oldest is discarded (counted as ``incomplete``) beyond that, so memory stays bounded whatever the
publishers do."""
MAX_OVERTAKEN = 8
"""Completed calls that may overtake a held part of another origin (or one without a group)
before it is discarded (counted as ``incomplete``), counted whatever their origin: with N
other publishers completing calls in turn, a part waits for about 8/N calls of each. Parts of
two publishers can arrive in a
different order on two topics, but not this far apart, while a part whose partner never comes
(a stray single-decorator message, a publisher that died between two parts) goes soon, instead
of waiting for :data:`MAX_HELD` others."""
MAX_PASSED = 64
"""Parts of other listeners a held part may make dead, by being a later call of their origin,
before it is discarded itself (counted as ``incomplete``); equal to :data:`MAX_HELD` by choice,
not by need. Honestly that many are passed only
when one topic's queue is that far behind another's; a part forged far ahead under its
publisher's own id (which a ZeroMQ listener refuses, binding publisher ids to connections;
other engines do not) costs no more."""
MAX_ORIGINS = 256
"""Publishing origins whose owner (the publisher that first sent a part of it) each listener
remembers. Beyond that, one unheard for :data:`OWNER_IDLE` is forgotten; while all are active,
a new origin's parts are taken without remembering its owner."""
OWNER_IDLE = 10.0
"""Seconds an origin must go unheard before its owner may be forgotten or replaced: a peer
inventing origins cannot push an active publisher's origin out to claim it, and a peer that
claimed an origin first (before its publisher was heard) loses it once it stops sending."""
_UNGROUPED = b""
"""The origin given to parts that came without a group: they pair by arrival order."""
_clock = time.monotonic
"""When parts are heard (tests set it to a clock of their own)."""
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

    What a peer sends costs at most its own traffic (docs/reliability.md, "Stacked returns and
    hostile parts", with the limits): the listener read next is one whose next part can complete
    a call, the one holding the fewest parts first, so a part whose partner never comes (a stray
    single-decorator message, a publisher that died between two parts) cannot keep a listener
    from being read,
    and it is discarded once :data:`MAX_OVERTAKEN` later calls have completed past it; an origin
    belongs, on each listener, to the publisher that first sent a part of it (until it has been
    quiet for :data:`OWNER_IDLE`), so parts forged under it by another publisher are refused
    (counted as ``malformed``) and never paired; and a held part stops making others dead after
    :data:`MAX_PASSED`.
    """

    def __init__(self, listeners: Sequence[Any]) -> None:
        self._listeners = list(listeners)
        self._held: list[OrderedDict[Group, list]] = [OrderedDict() for _ in self._listeners]
        self._owners: list[dict[bytes, list]] = [{} for _ in self._listeners]  # origin -> [publisher, last heard]
        self._next_idle = [0.0] * len(self._listeners)  # no owner can be idle before then
        self._ungrouped = [0] * len(self._listeners)
        self._holding = False  # True whenever a part is held (and perhaps after the last one went)
        self._lock = threading.Lock()

    def read(self) -> Optional[list]:
        """One value per listener, all of one call; None if a non-waiting listener has nothing
        and no call is complete yet."""
        with self._lock:
            if not self._holding:
                values = self._read_in_step()
                if values is not _OUT_OF_STEP:
                    return values
            empty: set[int] = set()  # non-waiting listeners that had nothing in this read
            while True:
                self._discard_dead()
                group = self._complete()
                if group is not None:
                    values = self._take(group)
                    self._holding = any(self._held)
                    return values
                index = self._lacking(empty)
                part = None if index is None else self._listeners[index].listen_part()
                if part is None:
                    if index is not None:
                        empty.add(index)
                        continue
                    self._holding = any(self._held)
                    return None
                group = self._admit(index, part, _clock())
                if group is not None:
                    self._hold(index, group, part[0])

    def _read_in_step(self) -> Any:
        """The usual case, with nothing held: every listener's next part is of one call. Read
        the listeners in turn and return that call's values without the loop's searches over
        what is held (for two parts these cost ~16 µs a call, this ~3 µs). At the first part of
        another call (or one refused), hold what was read and return :data:`_OUT_OF_STEP` for
        the loop to go on from there; if a non-waiting listener has nothing, hold what was read
        and return None; if a listener raises, hold what was read and let it raise (as the
        loop, which holds each part as it reads it, loses none either).

        Parts returned here are never held, so they cannot make another part dead: a part is
        only dead because of a later part of its origin that another listener holds.
        """
        first: Optional[Group] = None
        values: list = []
        part = None
        now = _clock()
        try:
            for listener, owners in zip(self._listeners, self._owners):
                part = listener.listen_part()
                if part is None:
                    break
                value, group, publisher = part
                owner = None if group is None else owners.get(group[0])
                if owner is not None and owner[0] == publisher:
                    owner[1] = now  # its owner's part: _admit's common case, inline
                else:
                    group = self._admit(len(values), part, now)
                if first is None:
                    if group is None:
                        break
                    first = group
                elif group != first:
                    if group is not None:
                        self._hold(len(values), group, value)
                    break
                values.append(value)
            else:
                return values
        except BaseException:  # a listener raised (Ctrl-C, on_invalid="raise", closed): keep what was read
            self._hold_read(first, values)
            raise
        self._hold_read(first, values)
        return None if part is None else _OUT_OF_STEP

    def _admit(self, index: int, part: tuple, now: float) -> Optional[Group]:
        """The group of a part listener ``index`` gave, or None if it is refused: an origin
        belongs, on each listener, to the publisher that first sent a part of it, so a part
        another publisher stamped with it (a forged call number) never pairs with an honest
        one nor makes one dead. Parts without a group pair in arrival order."""
        _, group, publisher = part
        if group is None:
            self._ungrouped[index] += 1
            return Group(_UNGROUPED, self._ungrouped[index])
        owners = self._owners[index]
        owner = owners.get(group.origin)
        if owner is None:
            if len(owners) < MAX_ORIGINS or self._forget_idle(index, now):
                owners[group.origin] = [publisher, now]
            return group
        if owner[0] != publisher and now - owner[1] < OWNER_IDLE:
            listener = self._listeners[index]
            listener.malformed += 1
            _log.warning(listener.in_topic, "forged group", "listener on %s: refused a part of call %d whose "
                         "call group belongs to another publisher", listener.in_topic, group.call)
            return None
        owner[:] = publisher, now
        return group

    def _forget_idle(self, index: int, now: float) -> bool:
        """Forget listener ``index``'s least recently heard owner if it is idle; False if every
        owner is active (checked again only once the oldest can have become idle)."""
        if now < self._next_idle[index]:
            return False
        owners = self._owners[index]
        origin, (_, heard) = min(owners.items(), key=lambda item: item[1][1])
        if now - heard < OWNER_IDLE:
            self._next_idle[index] = heard + OWNER_IDLE
            return False
        del owners[origin]
        return True

    def _hold_read(self, group: Optional[Group], values: list) -> None:
        """Hold ``values``, the parts of ``group`` read from the first listeners."""
        for index, value in enumerate(values):
            self._hold(index, group, value)

    def _hold(self, index: int, group: Group, value: Any) -> None:
        held = self._held[index]
        self._holding = True
        held[group] = [value, 0, 0]  # the value, completed calls that overtook it, parts it made dead
        if len(held) > MAX_HELD:
            self._discard(index, held.popitem(last=False)[0])

    def _complete(self) -> Optional[Group]:
        """The oldest group (in the first listener's order) that every listener holds."""
        first, *others = self._held
        for group in first:
            if all(group in held for held in others):
                return group
        return None

    def _take(self, group: Group) -> list:
        """The values of ``group``. Every older call of its origin is now beyond completing (a
        listener gets an origin's calls in order, so they are held before it); a part of
        another origin that arrived before it has been overtaken once more."""
        origin, values = group[0], []
        for index, held in enumerate(self._held):
            gone = []
            for other, slot in held.items():
                if other == group:
                    break
                if other[0] != origin:
                    slot[1] += 1
                    if slot[1] < MAX_OVERTAKEN:
                        continue
                gone.append(other)
            values.append(held.pop(group)[0])
            for other in gone:
                del held[other]
                self._discard(index, other)
        return values

    def _discard_dead(self) -> None:
        """Drop held parts whose call another listener has gone past: a listener gets each
        publisher's messages in order, so a part of call 5 can never arrive at a listener that
        holds call 6 of the same origin and not call 5. A held part that has made
        :data:`MAX_PASSED` parts dead that way is dropped too: it may be a forgery far ahead
        under its publisher's own id, which would otherwise go on making every part dead."""
        everyone = self._held
        latest = []
        for held in everyone:
            calls: dict[bytes, int] = {}
            for origin, call in held:
                if call > calls.get(origin, 0):
                    calls[origin] = call
            latest.append(calls)
        passed_too_often = []
        for index, held in enumerate(everyone):
            dead = []
            for group in held:
                origin, call = group
                for other, calls in enumerate(latest):
                    later = calls.get(origin, 0)
                    if later > call and other != index and group not in everyone[other]:
                        dead.append((group, other, later))
                        break
            for group, other, later in dead:
                del held[group]
                self._discard(index, group)
                slot = everyone[other].get(Group(group.origin, later))  # None: itself dead earlier in this pass
                if slot is not None:
                    slot[2] += 1
                    if slot[2] == MAX_PASSED:
                        passed_too_often.append((other, Group(group.origin, later)))
        for index, group in passed_too_often:
            if self._held[index].pop(group, None) is not None:
                self._discard(index, group)

    def _discard(self, index: int, group: Group) -> None:
        """Count (and log, rate-limited) a part of ``group`` that listener ``index`` gives up."""
        listener = self._listeners[index]
        listener.incomplete += 1
        _log.warning(listener.in_topic, "incomplete", "listener on %s: discarded the part of call %d whose "
                     "other parts never arrived (%d incomplete in all)", listener.in_topic, group.call,
                     listener.incomplete)

    def _lacking(self, empty: set[int]) -> Optional[int]:
        """A listener to read next, of those not in ``empty``; None if every listener that lacks a
        part had nothing (or, with nothing held, the first had nothing).

        Preferred: one lacking a group every other listener holds, so that its next part can
        complete a call (a waiting listener that lacks only what never comes would block with a
        complete call queued elsewhere). Of those, the one holding the fewest, so that a part
        whose partner never comes (a stray, an orphan) cannot keep the other listeners unread;
        on a tie, the one lacking the oldest such group in the first listener's order. Failing
        that, the one holding the fewest among those lacking anything."""
        everyone = self._held
        if not any(everyone):
            return None if 0 in empty else 0
        if len(everyone) == 2:  # the usual stacked method: each lacks every group the other holds
            first, second = everyone
            preferred = (0, 1) if second and len(first) < len(second) else (1, 0)  # a tie: the first's oldest
            for index in preferred:
                if everyone[1 - index] and index not in empty:
                    return index
            return None
        others = len(everyone) - 1
        holders: dict[Group, int] = {}
        for held in everyone:
            for group in held:
                holders[group] = holders.get(group, 0) + 1
        chosen, best = None, None
        for age, group in enumerate(group for group, count in holders.items() if count == others):
            index = next(index for index, held in enumerate(everyone) if group not in held)
            if index not in empty and (best is None or (len(everyone[index]), age) < best):
                chosen, best = index, (len(everyone[index]), age)
        if chosen is not None:
            return chosen
        fewest = len(holders)  # a listener holding fewer lacks one
        for index, held in enumerate(everyone):
            if len(held) < fewest and index not in empty:
                chosen, fewest = index, len(held)
        return chosen
