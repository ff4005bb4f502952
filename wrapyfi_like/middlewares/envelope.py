"""The envelope of a pub/sub message: who sent it, its place in that sender's stream, and which
call of a stacked method it belongs to.

Every transport puts one envelope before the codec's ``[header, *buffers]``, so a listener can
tell a gap (a message lost on the way: counted as ``missed``) from a repeat or a late arrival
(``duplicate``: never handed to the user), whatever the engine. On ZeroMQ a message is
``[topic, envelope, header, *buffers]`` (docs/wire.md).

Layout (little-endian, :data:`ENVELOPE`, 36 bytes):

| field | type | meaning |
|---|---|---|
| magic | 2 bytes ``b"WL"`` | not a wrapyfi_like message otherwise |
| version | u8 | :data:`VERSION`; a listener refuses any other |
| flags | u8 | :data:`LATEST`: the publisher keeps only the newest message (``backpressure="latest"``); :data:`SHM`: buffers in shared memory |
| publisher | 8 bytes | random per publisher transport; a restarted publisher is a new one |
| seq | u64 | 1, 2, 3, … per publisher; never 0 |
| origin | 8 bytes | the stacked method's call group origin (zeros: not part of a group) |
| call | u64 | the call number within ``origin`` (0 when not part of a group) |
"""

from __future__ import annotations

import os
import struct
from collections import OrderedDict
from typing import Any, Callable, Hashable, Iterable, NamedTuple, Optional, Protocol

from wrapyfi_like.exceptions import DecodeError

ENVELOPE = struct.Struct("<2sBB8sQ8sQ")
MAGIC = b"WL"
VERSION = 1
LATEST = 0x01
"""Flag: the sender's policy is ``"latest"``; a listener may skip to the newest such message."""
SHM = 0x02
"""Flag: some buffers of this message are in the listener's shared-memory inbox (ZeroMQ
``carrier="shm"``, :mod:`wrapyfi_like.middlewares.zeromq.shm_wire`)."""
_NO_ORIGIN = bytes(8)


class Group(NamedTuple):
    """The call a message belongs to: every decorator stacked on one method publishes its part
    of one call with the same group, so a listener can return the parts of one call together."""

    origin: bytes
    call: int


class Envelope(NamedTuple):
    publisher: bytes
    seq: int
    flags: int
    group: Optional[Group]


def new_publisher_id() -> bytes:
    """A random id for a new publisher (or a new call group origin)."""
    return os.urandom(8)


def pack(publisher: bytes, seq: int, flags: int = 0, group: Optional[Group] = None) -> bytes:
    origin, call = group if group is not None else (_NO_ORIGIN, 0)
    return ENVELOPE.pack(MAGIC, VERSION, flags, publisher, seq, origin, call)


def unpack(frame) -> Envelope:
    """The envelope in ``frame`` (bytes-like); :class:`DecodeError` if it is not one.

    Every message a listener reads passes here, so the valid case costs one ``struct`` call and
    one tuple (built directly: a NamedTuple's ``__new__`` is a Python function, ~0.2 µs more).
    """
    try:
        magic, version, flags, publisher, seq, origin, call = _unpack(frame)
    except struct.error:
        raise DecodeError(f"an envelope is {ENVELOPE.size} bytes, this frame has {len(frame)}") from None
    if magic != MAGIC:
        raise DecodeError("the frame after the topic is not a wrapyfi_like envelope")
    if version != VERSION:
        raise DecodeError(f"envelope version {version} is not supported (this node speaks {VERSION})")
    if not seq:
        raise DecodeError("envelope sequence number 0 is never sent")
    return _new(Envelope, (publisher, seq, flags, None if origin == _NO_ORIGIN else Group(origin, call)))


_unpack = ENVELOPE.unpack
_new = tuple.__new__


MAX_TRACKED_PUBLISHERS = 4096
"""Publishers whose last sequence number a listener remembers; the least recently heard is
forgotten first, so a peer inventing publisher ids cannot grow a listener's memory."""
LATE_WINDOW = 1 << 16
"""How far behind the last accepted sequence number a message can still be a late arrival (a
duplicate to skip). Real late arrivals come from the queues of one connection being replaced by
another, a few thousand messages at most; a message further behind restarts the publisher's
stream instead (counted in ``restarts``)."""
DEFERRED = -3
"""What :meth:`BoundSequenceCheck.accept` returns for a message to hold back and offer again later:
its sender took its publisher id over from a connection that still holds the messages before it.
"""
OVERTAKEN = -4
""":meth:`BoundSequenceCheck.accept`'s verdict on a previous sender's message that its successor's
messages overtook (the listener stopped waiting for it): it was counted ``missed`` then, and is
skipped uncounted."""
FOREIGN = -2
"""What :meth:`BoundSequenceCheck.accept` returns for a message whose publisher id belongs to another
sender (see :class:`Binding`): the caller counts it as malformed; the id's stream is untouched."""
MAX_IDS_PER_SENDER = 16
"""Publisher ids one sender (connection) may hold at once; a message under a new id past this is
:data:`FOREIGN`. An honest connection carries one publisher's messages. The ids of senders still
there are never forgotten (:data:`MAX_TRACKED_PUBLISHERS` forgets only their sequence state), so
a peer inventing ids could otherwise grow them without bound; with the intake's 256 connections
this holds them to 4,096."""
MAX_GIVEN_UP = 1024
"""Senders a :class:`BoundSequenceCheck` remembers it stopped waiting for (not waited for again
while they stay; forgotten once gone). More than a listener's connections at once (the intake
takes 256), so a peer cannot rotate its stalled connections out of it and be waited for again."""
MAX_REFUSED_SENDERS = 64
"""Senders (connections) whose refused sequence numbers a :class:`BoundSequenceCheck` remembers,
so that if one takes an id over, the gap its refused messages leave is not counted again as
``missed``. A sender's entries are forgotten once it is gone without taking over (:meth:`~BoundSequenceCheck.settle`);
past this many senders, one that is gone goes first, else the least recently refused: only a peer
holding more than this many connections open, each refused, can make an honest takeover count
its refused messages twice (``malformed``, then ``missed``)."""
MAX_REFUSED_IDS = 4
"""Publisher ids whose refused numbers are remembered per sender (the least recently refused
forgotten first): an honest reconnect needs one, so a peer refused under many ids evicts only its
own entries."""
MAX_REFUSED_RUNS = 16
"""Runs of consecutive refused sequence numbers remembered per (sender, id). An honest sender's
refused messages are one run; a ``drop``/``latest`` publisher's numbers skip (its own choice) and
make one run per skip. Past this many the oldest run is forgotten: its messages, if that sender
takes the id over, are counted twice (``malformed`` when refused, ``missed`` in the gap)."""


class Binding(Protocol):
    """Who may speak for a publisher id at one listener.

    The envelope's publisher id is not a secret: any peer that listens on a topic reads it. If
    any sender could use it, one message with a sequence number far ahead would make the listener
    skip the real publisher's next messages as duplicates. So a listener can bind each id to the
    sender that used it first (:meth:`token`, e.g. its connection; :class:`BoundSequenceCheck`),
    and refuse another sender's message under that id, unless :meth:`may_take` says the first
    one is gone (a publisher that reconnected): then its stream goes on where it was, gaps and
    repeats counted across the reconnect.
    """

    def token(self, source: Any) -> Hashable:
        """What an id used by the message from ``source`` (the intake's source) is bound to;
        kept while the id is remembered, so what it keeps alive once its sender is gone must be
        small."""

    def may_take(self, owner: Hashable) -> bool:
        """Whether another sender may take over ids bound to ``owner`` (a :meth:`token`): its
        peer has left, though it may still hold messages to deliver."""

    def pending(self, owner: Hashable) -> bool:
        """Whether ``owner`` has data not read yet (its end, if it left, may be behind it)."""

    def drained(self, owner: Hashable) -> bool:
        """Whether ``owner``, taken over, has nothing more to deliver."""


class SequenceCheck:
    """One listener's view of each publisher's stream: counts gaps and refuses repeats.

    The first message from a publisher starts its stream (a listener that joins late cannot know
    what it did not see). After that, a sequence number above the next expected one counts the
    numbers in between as ``missed``; one at or below the last seen is a ``duplicate`` (a repeat
    or a late arrival) and must not reach the user, so reordering never does; one more than
    :data:`LATE_WINDOW` behind restarts the stream (``restarts``). Any sender may speak for any
    id here; :class:`BoundSequenceCheck` keeps each id to its sender.
    """

    def __init__(self) -> None:
        self._last: OrderedDict[bytes, int] = OrderedDict()
        self.per_publisher: OrderedDict[bytes, dict[str, int]] = OrderedDict()
        self.missed = 0
        self.duplicate = 0
        self.restarts = 0
        self._recent: Optional[bytes] = None  # the publisher heard last, and its counts
        self._recent_counts: dict[str, int] = {}
        self._recent_next = 0  # the sequence number that publisher sends next (0: none yet)

    def accept(self, envelope: Envelope, source: Any = None) -> int:
        """How many messages from ``envelope``'s publisher went missing just before it (0: none),
        or -1 if it is a duplicate to skip. ``source`` (who sent it) matters to
        :class:`BoundSequenceCheck` only.

        Most messages are the next one of the publisher heard last: it is already the most
        recently used entry of both tables, so that case costs no reordering and no comparison
        beyond two.
        """
        publisher, seq = envelope[0], envelope[1]
        if seq == self._recent_next and publisher == self._recent:
            self._recent_next = seq + 1
            self._last[publisher] = seq
            self._recent_counts["received"] += 1
            return 0
        gap = self._accept(publisher, seq)
        self._recent_next = self._last[publisher] + 1
        return gap

    def _accept(self, publisher: bytes, seq: int) -> int:
        if publisher == self._recent:
            counts = self._recent_counts
        else:
            counts = self._counts(publisher)
            if publisher in self._last:
                self._last.move_to_end(publisher)
            self._recent, self._recent_counts = publisher, counts
        last = self._last.get(publisher)
        if last is None:
            self._last[publisher] = seq
            if len(self._last) > MAX_TRACKED_PUBLISHERS:
                self._forget(self._last.popitem(last=False)[0])
            gap = 0
        elif seq > last:
            self._last[publisher] = seq
            gap = seq - last - 1
        elif last - seq < LATE_WINDOW:
            self.duplicate += 1
            counts["duplicate"] += 1
            return -1
        else:
            self.restarts += 1
            self._last[publisher] = seq
            gap = 0
        counts["received"] += 1
        if gap:
            self.missed += gap
            counts["missed"] += gap
        return gap

    def lost(self, publisher: bytes) -> None:
        """Count a message of ``publisher`` that was accepted but whose payload never arrived
        (shared memory): ``missed``, not ``received``."""
        self.missed += 1
        counts = self.per_publisher.get(publisher)
        if counts is not None:
            counts["missed"] += 1
            counts["received"] -= 1

    def dropped(self, publisher: bytes) -> None:
        """Count a message of ``publisher`` that was accepted but skipped for a newer one
        (``"latest"``): the publisher's choice, so not ``missed``."""
        counts = self.per_publisher.get(publisher)
        if counts is not None:
            counts["dropped"] += 1

    def settle(self) -> None:
        """Let go of what is kept for senders that are done (nothing here; see
        :meth:`BoundSequenceCheck.settle`)."""

    def awaiting_none(self) -> None:
        """Forget whom deferred messages wait for (nothing is ever deferred here; see
        :meth:`BoundSequenceCheck.awaiting_none`)."""

    def _counts(self, publisher: bytes) -> dict[str, int]:
        counts = self.per_publisher.get(publisher)
        if counts is None:
            counts = self.per_publisher[publisher] = {"received": 0, "missed": 0, "duplicate": 0, "dropped": 0}
            if len(self.per_publisher) > MAX_TRACKED_PUBLISHERS:
                self.per_publisher.popitem(last=False)
        else:
            self.per_publisher.move_to_end(publisher)
        return counts

    def _forget(self, publisher: bytes) -> None:
        """``publisher`` is no longer remembered (the least recently heard, evicted)."""


class BoundSequenceCheck(SequenceCheck):
    """A :class:`SequenceCheck` that keeps each publisher id to the sender that used it first, while
    that sender is there (``binding``, :class:`Binding`); a message under it from anyone else is
    :data:`FOREIGN` and changes nothing.

    While the id's sender has data not read yet, another sender's message under the id is
    :data:`DEFERRED`, not refused: a publisher that closed its connection and reconnected sends
    that connection's end after its data, so the listener learns it left only once it has read
    that far (:attr:`waiting` False: refused at once). A sender whose peer has left gives the id
    to the next one (a publisher that reconnected) but
    stays its *previous* sender: what it still holds (a listener behind leaves it unread) is
    accepted as before. A message of the new sender that would overtake those (a sequence number
    past the next expected one) is :data:`DEFERRED` until the gap is filled or the previous sender
    has nothing left (:meth:`Binding.drained`), so a reconnect neither loses the old connection's
    tail nor reorders it, and counts as ``missed`` only what neither connection delivered. Once
    the previous sender is drained it is let go: at the new sender's next message, or at
    :meth:`settle`.

    A large jump forward from the id's own sender is trusted and counted as ``missed``: a
    publisher's numbers run on while this listener gets none of them (``drop``, a connection
    down), so no bound on the jump would hold for an honest publisher, and its own sender can
    disturb only its own stream.

    Every message is counted once. A reconnected publisher whose old connection is still open
    (half-open: its peer vanished without a word, until TCP keepalive tells) has its messages
    refused as :data:`FOREIGN` (the caller counts them ``malformed``: then nothing tells it from a
    forger); once it takes the id over, the gap they leave is counted as ``missed`` only for the
    messages it did not send: ``reclaimed(publisher, refused)`` (if given) hears of the others.
    """

    def __init__(self, binding: Binding, reclaimed: Optional[Callable[[bytes, int], None]] = None) -> None:
        super().__init__()
        self._binding = binding
        self._reclaimed = reclaimed
        self._owners: dict[bytes, Hashable] = {}  # publisher -> its sender's token
        self._ids_held: dict[Hashable, int] = {}  # sender's token -> how many publisher ids it holds
        # publisher -> the numbers counted missed when its successor overtook its previous sender
        self._overtaken: dict[bytes, tuple[int, int]] = {}
        # publisher -> the token of the sender it was taken from, until that one is drained
        self._previous: dict[bytes, Hashable] = {}
        # token -> publisher -> [[first, last], ...]: disjoint runs of sequence numbers refused as FOREIGN
        self._refused: OrderedDict[Hashable, OrderedDict[bytes, list[list[int]]]] = OrderedDict()
        # senders whose unread data the listener stopped waiting for: never waited for again while they stay
        self._given_up: OrderedDict[Hashable, None] = OrderedDict()
        self._recent_source: Any = None  # the source the publisher heard last was heard from
        self._awaited: set = set()  # senders the deferred messages wait for, found again at each pass
        self.waiting = True
        """Whether a message may be :data:`DEFERRED` (False: it is accepted or refused now, and a
        sender whose data was waited for is not waited for again while it stays: a sender that
        stops in the middle of a message cannot open a new deferral with each message under its id)."""
        self.holding = False
        """Whether messages are held back (:meth:`hold`): then every message is :data:`DEFERRED`,
        so none overtakes them; the caller sets it False to offer them again."""
        self._held_from: set = set()  # tokens of the senders of the messages the caller holds back

    def accept(self, envelope: Envelope, source: Any = None) -> int:
        """As :meth:`SequenceCheck.accept`, or :data:`FOREIGN` if ``source`` may not speak for
        ``envelope``'s publisher, or :data:`DEFERRED` if it must wait for its previous sender.
        The next message of the publisher heard last, from the same source, costs one comparison
        more."""
        publisher, seq = envelope[0], envelope[1]
        if seq == self._recent_next and publisher == self._recent and source is self._recent_source:
            self._recent_next = seq + 1
            self._last[publisher] = seq
            self._recent_counts["received"] += 1
            return 0
        if self.holding:
            return DEFERRED
        verdict = self._bound(publisher, seq, source)
        if verdict:
            return verdict
        gap = self._accept(publisher, seq)
        if gap > 0 and self._refused:
            gap = self._discount(publisher, self._binding.token(source), seq, gap)
        if gap > 0 and publisher in self._previous:  # the successor overtook what the previous sender holds
            self._overtaken[publisher] = (seq - gap, seq - 1)
        self._recent_source = source
        # while a previous sender is not drained, each message looks again (see settle)
        self._recent_next = -1 if self._previous and publisher in self._previous else self._last[publisher] + 1
        return gap

    def settle(self) -> None:
        """Forget the previous senders that have nothing more to deliver, so none keeps its
        connection's objects alive, and what is kept for senders gone without taking over (their
        refused numbers, a given-up wait); a listener calls it when a wait reads nothing (each of
        the publisher's messages does it for its own id)."""
        for publisher, previous in list(self._previous.items()):
            if self._drained(previous):
                del self._previous[publisher]
                self._overtaken.pop(publisher, None)
        for token in [token for token in self._refused if self._binding.drained(token)]:
            del self._refused[token]
        for token in [token for token in self._given_up if self._binding.drained(token)]:
            del self._given_up[token]

    def held_back(self, sources: Iterable) -> None:
        """The caller holds back (:data:`DEFERRED`) messages from ``sources``: a previous sender
        among them is not drained, whatever its connection says (it gave them up already)."""
        self._held_from = {self._binding.token(source) for source in sources}

    def awaited(self, source: Any) -> bool:
        """Whether ``source`` is a sender a message was :data:`DEFERRED` for since
        :meth:`awaiting_none` (its message coming through is the deferral's progress)."""
        return bool(self._awaited) and self._binding.token(source) in self._awaited

    def awaiting_none(self) -> None:
        """Forget whom messages waited for: the caller offers them again (each says anew), or
        none is left."""
        self._awaited.clear()

    def _drained(self, previous: Hashable) -> bool:
        return previous not in self._held_from and self._binding.drained(previous)

    def _refuse(self, publisher: bytes, token: Hashable, seq: int) -> int:
        """Remember that ``token``'s message ``seq`` under ``publisher`` was refused: :data:`FOREIGN`.
        A number already remembered is not added again (a repeat is one message, counted once)."""
        ids = self._refused.get(token)
        if ids is None:
            ids = self._refused[token] = OrderedDict()
            if len(self._refused) > MAX_REFUSED_SENDERS:
                gone = next((other for other in self._refused if self._binding.drained(other)), None)
                if gone is not None:
                    del self._refused[gone]
                else:
                    self._refused.popitem(last=False)
        else:
            self._refused.move_to_end(token)
        runs = ids.get(publisher)
        if runs is None:
            runs = ids[publisher] = []
            if len(ids) > MAX_REFUSED_IDS:
                ids.popitem(last=False)
        else:
            ids.move_to_end(publisher)
        if runs and runs[-1][1] + 1 == seq:
            runs[-1][1] = seq
        elif not any(first <= seq <= last for first, last in runs):
            runs.append([seq, seq])
            if len(runs) > MAX_REFUSED_RUNS:
                del runs[0]
        return FOREIGN

    def _discount(self, publisher: bytes, token: Hashable, seq: int, gap: int) -> int:
        """``gap`` (counted missed just now) less the messages in it that ``token`` sent and that
        were refused (counted malformed then): those are counted once. The refused numbers inside
        the gap are counted as a union, so the discount never exceeds the gap."""
        ids = self._refused.get(token)
        runs = ids.pop(publisher, None) if ids is not None else None
        if runs is None:
            return gap
        if not ids:
            del self._refused[token]
        first = seq - gap  # the gap is first .. seq - 1
        refused, covered = 0, first - 1  # numbers up to ``covered`` are counted
        for begin, last in sorted(runs):
            begin, last = max(begin, covered + 1), min(last, seq - 1)
            if last >= begin:
                refused += last - begin + 1
                covered = last
        if refused:
            self.missed -= refused
            self._recent_counts["missed"] -= refused  # the publisher's (_accept just made it the recent one)
            if self._reclaimed is not None:
                self._reclaimed(publisher, refused)
        return gap - refused

    def hold(self) -> None:
        """Messages were :data:`DEFERRED`: defer every message from now on (:attr:`holding`),
        which takes no time from the next message's comparison (it no longer matches)."""
        self.holding = True
        self._recent_next = -1

    def _bound(self, publisher: bytes, seq: int, source: Any) -> int:
        """0 if ``source`` may speak for ``publisher`` now (binding it if nobody (left) does),
        else :data:`FOREIGN` or :data:`DEFERRED`."""
        token = self._binding.token(source)
        owner = self._owners.get(publisher)
        if owner is None:
            if not self._hold_id(token):
                return FOREIGN
            self._owners[publisher] = token
            return 0
        previous = self._previous.get(publisher)
        if token != owner:
            if previous is not None and token == previous:
                first, end = self._overtaken.get(publisher, (0, -1))
                if first <= seq <= end:
                    # overtaken by its successor once the listener stopped waiting: counted as
                    # missed then, so skipped now without counting it again as a duplicate
                    return OVERTAKEN
                return 0
            if not self._binding.may_take(owner):
                if owner not in self._given_up and self._binding.pending(owner):
                    if self.waiting:
                        self._awaited.add(owner)
                        return DEFERRED
                    # the listener stopped waiting for it: not again while it stays
                    self._given_up[owner] = None
                    if len(self._given_up) > MAX_GIVEN_UP:
                        self._given_up.popitem(last=False)
                return self._refuse(publisher, token, seq)
            # the id's sender left: a reconnect goes on with its stream
            if not self._hold_id(token):
                return FOREIGN
            self._let_go_id(owner)
            self._owners[publisher] = token
            previous = self._previous[publisher] = owner
            self._overtaken.pop(publisher, None)
        if previous is None:
            return 0
        last = self._last.get(publisher)
        if self.waiting and last is not None and seq > last + 1 and not self._drained(previous):
            self._awaited.add(previous)
            return DEFERRED  # the previous sender may still hold what comes before it
        if self._drained(previous):
            del self._previous[publisher]
            self._overtaken.pop(publisher, None)
        return 0

    def _hold_id(self, token: Hashable) -> bool:
        """Count one more id held by ``token``'s sender; False (nothing counted) past
        :data:`MAX_IDS_PER_SENDER`."""
        held = self._ids_held.get(token, 0)
        if held >= MAX_IDS_PER_SENDER:
            return False
        self._ids_held[token] = held + 1
        return True

    def _let_go_id(self, token: Hashable) -> None:
        held = self._ids_held.pop(token, 1) - 1
        if held:
            self._ids_held[token] = held

    def _forget(self, publisher: bytes) -> None:
        """The id's sequence state was forgotten (the least recently heard of
        :data:`MAX_TRACKED_PUBLISHERS`): its binding goes too unless its sender is still there
        (else ids invented between two messages of a slow publisher would free its id for them)."""
        owner = self._owners.get(publisher)
        if owner is not None and not self._binding.may_take(owner):
            return
        self._previous.pop(publisher, None)
        self._overtaken.pop(publisher, None)
        if self._owners.pop(publisher, None) is not None:
            self._let_go_id(owner)


class ListenerCounts:
    """What every listener transport counts, kept one way by every engine (mixed into each).

    Call :meth:`_start_counting` in ``__init__``; count ``received``, ``malformed`` and ``dropped``
    as messages are returned, refused or skipped for a newer ``latest`` one, and pass every
    envelope through ``self._sequence``.
    """

    def _start_counting(self) -> None:
        self.last_envelope: Optional[Envelope] = None
        self._sequence = SequenceCheck()
        self.received = 0
        self.malformed = 0
        self.dropped = 0

    def _count_dropped(self, publisher: bytes) -> None:
        """A message of ``publisher`` skipped for a newer ``"latest"`` one."""
        self.dropped += 1
        self._sequence.dropped(publisher)

    def statistics(self) -> dict[str, int]:
        """``received`` (returned by ``recv``), ``missed`` (gaps in a publisher's sequence: lost on
        the way), ``duplicate`` (repeats, skipped), ``malformed`` (refused as bad input, skipped),
        ``dropped`` (older ``"latest"`` messages skipped for a newer one) and ``restarts`` (a
        publisher's stream begun again: a sequence number far behind the last, see
        :data:`LATE_WINDOW`)."""
        return {"received": self.received, "missed": self._sequence.missed,
                "duplicate": self._sequence.duplicate, "malformed": self.malformed,
                "dropped": self.dropped, "restarts": self._sequence.restarts}

    def per_publisher(self) -> dict[str, dict[str, int]]:
        """``received``/``missed``/``duplicate``/``dropped`` per publisher id (hex), for the
        :data:`MAX_TRACKED_PUBLISHERS` most recently heard publishers."""
        return {publisher.hex(): dict(counts) for publisher, counts in list(self._sequence.per_publisher.items())}
