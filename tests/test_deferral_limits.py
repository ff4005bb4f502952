"""What a forger can do to a reconnect's deferral and its refused-message accounting, and the bounds
that hold (review 30): overlapping refusals never lower ``missed``; a sender that stops in the
middle of a message holds messages back for :data:`~listener.DEFER_TIMEOUT` at most, within
:data:`~listener.MAX_DEFERRED_BYTES`, once per connection; a ``latest`` ``recv(0)`` stays short
meanwhile; a forger's refusals under other ids cannot evict an honest reconnect's.

Real sockets on 127.0.0.1 where the intake matters (:class:`Sender` of test_publisher_id_binding).
"""

import time

import pytest

from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.encoding import Codec
from wrapyfi_like.middlewares import envelope
from wrapyfi_like.middlewares.envelope import (FOREIGN, LATEST, MAX_IDS_PER_SENDER, MAX_TRACKED_PUBLISHERS,
                                               BoundSequenceCheck, pack, unpack)
from wrapyfi_like.middlewares.zeromq import listener as listener_module, zmtp
from wrapyfi_like.middlewares.zeromq.intake import MAX_CONNECTIONS
from test_publisher_id_binding import Sender, _Sources, _intake_connection, _until

pytestmark = pytest.mark.timeout(30)

A = b"A" * 8


def _accepting(check: BoundSequenceCheck):
    return lambda publisher, seq, source: check.accept(unpack(pack(publisher, seq)), source)


def test_the_same_numbers_refused_again_and_again_are_discounted_once():
    """Review 30 F1: 2..11 refused three times, then that sender takes the id over at 12. The gap
    is 10 and so is the discount: it was 30, ``missed`` went down by 20 (below zero), ``accept``
    returned -20 (taken for a refusal) and the takeover message was swallowed."""
    sources = _Sources()
    check = BoundSequenceCheck(sources)
    accept = _accepting(check)
    assert accept(A, 1, "owner") == 0
    for _ in range(3):
        assert [accept(A, seq, "forger") for seq in range(2, 12)] == [FOREIGN] * 10
    sources.gone.add("owner")
    sources.empty.add("owner")
    assert accept(A, 12, "forger") == 0
    assert check.missed == 0 and check.per_publisher[A]["missed"] == 0
    assert accept(A, 13, "forger") == 0


def test_a_partly_refused_gap_counts_the_rest_as_missed_and_never_less_than_zero():
    """Overlapping runs (3..5 inside 2..6, refused in another order) count as their union."""
    sources = _Sources()
    check = BoundSequenceCheck(sources)
    accept = _accepting(check)
    assert accept(A, 1, "owner") == 0
    for seq in (4, 5, 2, 3, 4, 5, 6, 3):
        assert accept(A, seq, "next") == FOREIGN
    sources.gone.add("owner")
    sources.empty.add("owner")
    assert accept(A, 20, "next") == 13  # 2..19 is 18 numbers; 2..6 were refused (counted malformed)
    assert check.missed == 13 and check.per_publisher[A]["missed"] == 13


def test_a_forger_refused_under_many_ids_or_from_many_connections_cannot_evict_an_honest_reconnects_runs():
    """Review 30 F3: one global LRU of 64 (id, connection) pairs let a forger refused under 64 ids
    evict the honest new connection's runs: its takeover then counted 10 messages twice. Now a
    sender's ids are capped per sender, and a sender gone without taking over is forgotten first."""
    sources = _Sources()
    check = BoundSequenceCheck(sources)
    accept = _accepting(check)
    for seq in range(1, 6):
        assert accept(A, seq, "old") == 0
    assert [accept(A, seq, "new") for seq in range(6, 16)] == [FOREIGN] * 10  # the half-open old holds it
    ids = [index.to_bytes(8, "little") for index in range(2 * envelope.MAX_REFUSED_SENDERS)]
    for index, publisher in enumerate(ids):  # owners of MAX_IDS_PER_SENDER ids each
        assert accept(publisher, 1, f"forger owner {index // MAX_IDS_PER_SENDER}") == 0
        assert accept(publisher, 2, "forger") == FOREIGN  # one connection, many ids
    for index, publisher in enumerate(ids):  # many connections, each gone after its refusal
        assert accept(publisher, 3, f"forger {index}") == FOREIGN
        sources.gone.add(f"forger {index}")
        sources.empty.add(f"forger {index}")
    check.settle()
    sources.gone.add("old")
    sources.empty.add("old")
    assert accept(A, 18, "new") == 2  # 16 and 17 lost; 6..15 counted once (malformed)
    assert check.per_publisher[A] == {"received": 6, "missed": 2, "duplicate": 0, "dropped": 0}
    assert list(check._refused) == ["forger"], "senders gone without taking over are forgotten"
    assert len(check._refused["forger"]) == envelope.MAX_REFUSED_IDS


def _stalled_owner(listener, topic: str, publisher: bytes) -> Sender:
    """A connection that uses ``publisher`` first, then stops in the middle of a message (the intake
    has begun it): to the listener it has data on the way, so another connection's messages under
    the id wait for it."""
    transport = listener._transport
    owner = Sender(listener)
    owner.send(topic, publisher, 1, "owner")
    assert Codec().decode(transport.recv(10)) == "owner"
    owner.sock.sendall(zmtp.frame_head(100, True) + b"only half of a frame")

    def begun() -> bool:
        c = _intake_connection(transport, owner)
        return c is not None and (c.end > c.start or bool(c.frames) or c.big is not None)
    _until(begun)
    return owner


def _a_forger_and_an_honest_sender(listener, topic: str) -> tuple[bytes, bytes, Sender, Sender, Sender]:
    """A forged id held by a stalled owner (:func:`_stalled_owner`), an honest id, and two more
    connections: the forger's (sending under the forged id) and the honest publisher's."""
    forged, honest_id = envelope.new_publisher_id(), envelope.new_publisher_id()
    owner = _stalled_owner(listener, topic, forged)
    return forged, honest_id, owner, Sender(listener), Sender(listener)


def _deferred(transport, count: int) -> bool:
    return transport.recv(0) is None and len(transport._deferred) == count


@pytest.mark.parametrize("limit", ["timeout", "bytes", "age"])
def test_a_sender_stopped_in_the_middle_of_a_message_holds_messages_back_for_a_bounded_time(topic, monkeypatch, limit):
    """Review 30 F2: a connection stopped mid-message counted as having data on the way for ever, so
    another connection's messages under its id were held back for ever, and with them every
    publisher's (27x slower), pinning up to 255 messages of any size. Now the deferral ends at
    DEFER_TIMEOUT or MAX_DEFERRED_BYTES: they are refused (malformed, counted), the honest
    publisher's messages all arrive, and that connection is not waited for again."""
    monkeypatch.setattr(listener_module, "DEFER_TIMEOUT", 0.3 if limit == "timeout" else 60.0)
    if limit == "bytes":
        monkeypatch.setattr(listener_module, "MAX_DEFERRED_BYTES", 20_000)
    if limit == "age":  # however much progress: review 33's forger made a busy honest sender's its own
        monkeypatch.setattr(listener_module, "MAX_DEFER_AGE", 0.3)
    listener = Listener("Test", topic)
    transport = listener._transport
    forged, honest_id, owner, forger, honest = _a_forger_and_an_honest_sender(listener, topic)
    try:
        forger.send(topic, forged, 2, ("B", b"x" * 8000))
        _until(lambda: _deferred(transport, 1))
        for seq in range(1, 101):
            honest.send(topic, honest_id, seq, seq)
        for seq in range(3, 6):
            forger.send(topic, forged, seq, ("B", b"x" * 8000))
        got = [Codec().decode(transport.recv(10)) for _ in range(100)]
        assert got == list(range(1, 101))
        _until(lambda: transport.recv(0.05) is None and transport.statistics()["malformed"] == 4)
        assert not transport._deferred
        forger.send(topic, forged, 6, "B again")  # the stalled connection is not waited for again
        _until(lambda: transport.recv(0) is None and transport.statistics()["malformed"] == 5)
        assert not transport._deferred and not transport._sequence.holding
        assert transport.statistics()["received"] == 101
    finally:
        for sender in (owner, forger, honest):
            sender.close()
        listener.close()


def test_close_lets_go_of_deferred_messages(topic, monkeypatch):
    monkeypatch.setattr(listener_module, "DEFER_TIMEOUT", 60.0)
    listener = Listener("Test", topic)
    transport = listener._transport
    forged = envelope.new_publisher_id()
    owner = _stalled_owner(listener, topic, forged)
    forger = Sender(listener)
    try:
        forger.send(topic, forged, 2, "B")
        _until(lambda: _deferred(transport, 1))
        listener.close()
        assert not transport._deferred
    finally:
        owner.close()
        forger.close()
        listener.close()


def test_a_latest_recv_0_stays_short_while_messages_are_deferred(topic, monkeypatch):
    """Review 30 F2b: ``latest``'s read-ahead (up to LATEST_READS messages) offered the deferred
    messages again at each read: recv(0) took ~1 s. Now it reads ahead no further than the call's
    deadline while messages are deferred."""
    monkeypatch.setattr(listener_module, "DEFER_TIMEOUT", 60.0)
    listener = Listener("Test", topic)
    transport = listener._transport
    forged, honest_id, owner, forger, honest = _a_forger_and_an_honest_sender(listener, topic)
    try:
        for seq in range(2, 202):
            forger.send(topic, forged, seq, "B")
        _until(lambda: _deferred(transport, 200))
        for seq in range(1, 1501):
            honest.send(topic, honest_id, seq, seq, LATEST)
        _until(lambda: transport._intake.queued() >= 1000 or transport._intake._full)
        took = []
        for _ in range(3):
            started = time.monotonic()
            assert transport.recv(0) is not None
            took.append(time.monotonic() - started)
        assert max(took) < 0.25, took
    finally:
        for sender in (owner, forger, honest):
            sender.close()
        listener.close()


def _reconnect(listener, topic, publisher, tail: int, after: int) -> tuple[Sender, Sender]:
    """``publisher``'s old connection sends 1..``tail`` (4 KB each) and closes; its new one sends
    the next ``after``, once the listener has them queued behind the old tail."""
    old = Sender(listener)
    for seq in range(1, tail + 1):
        old.send(topic, publisher, seq, (seq, b"x" * 4000))
    old.finish()
    new = Sender(listener)
    for seq in range(tail + 1, tail + after + 1):
        new.send(topic, publisher, seq, (seq, b"x" * 4000))
    _until(lambda: (c := _intake_connection(listener._transport, new)) is not None and c.queued > 0)
    return old, new


def _read_at_an_applications_pace(transport) -> list:
    """Every message's value, taking 5 ms of the application's work on each (a 200 Hz reader)."""
    got = []
    while (message := transport.recv(2)) is not None:
        got.append(Codec().decode(message))
        time.sleep(0.005)  # the application's work on the message, not a wait for anything
    return got


def test_a_slow_reader_keeps_a_long_old_tail_across_an_honest_reconnect(topic, monkeypatch):
    """Review 31 G1: a reader that takes each message at an application's pace needs longer than
    DEFER_TIMEOUT for a reconnected publisher's old tail (200 messages here), yet never stops
    taking them. Counted from the first message held back, the deferral ended mid-tail: the new
    connection's messages overtook, and the rest of the tail was counted ``missed`` and again as
    ``duplicate``, never delivered. Each message of the awaited connection that comes through is
    progress: all 210 arrive in order and nothing is counted."""
    monkeypatch.setattr(listener_module, "DEFER_TIMEOUT", 0.2)
    listener = Listener("Test", topic, max_message_size=64 * 1024)
    transport = listener._transport
    old, new = _reconnect(listener, topic, envelope.new_publisher_id(), tail=200, after=10)
    try:
        got = _read_at_an_applications_pace(transport)  # 200 x 5 ms: 5x DEFER_TIMEOUT
        assert [value[0] for value in got] == list(range(1, 211))
        counts = transport.statistics()
        assert (counts["missed"], counts["duplicate"], counts["malformed"]) == (0, 0, 0), counts
    finally:
        old.close()
        new.close()
        listener.close()


def test_a_forged_deferral_does_not_cut_short_an_honest_reconnects(topic, monkeypatch):
    """Review 31 G7: a deferral's clock was one per listener, so a forged message held back just
    before an honest reconnect's ended that reconnect's deferral at once: its new messages were
    refused. The honest old tail coming through keeps it going; the forged one still ends."""
    monkeypatch.setattr(listener_module, "DEFER_TIMEOUT", 0.3)
    listener = Listener("Test", topic, max_message_size=64 * 1024)
    transport = listener._transport
    forged, publisher = envelope.new_publisher_id(), envelope.new_publisher_id()
    owner = _stalled_owner(listener, topic, forged)
    forger = Sender(listener)
    old = new = None
    try:
        forger.send(topic, forged, 2, "B")
        _until(lambda: _deferred(transport, 1))
        started = time.monotonic()
        old, new = _reconnect(listener, topic, publisher, tail=100, after=10)
        got = _read_at_an_applications_pace(transport)  # 100 x 5 ms: longer than DEFER_TIMEOUT
        assert time.monotonic() - started > 0.3
        assert [value[0] for value in got] == list(range(1, 111))  # the forged "B" never came
        assert transport.per_publisher()[publisher.hex()]["missed"] == 0
        assert transport.statistics()["malformed"] == 1  # the forged message, refused once its wait ended
    finally:
        for sender in (owner, forger, old, new):
            if sender is not None:
                sender.close()
        listener.close()


def test_stalled_senders_given_up_cannot_be_rotated_out_and_waited_for_again():
    """Review 31 G6: senders given up were forgotten past 64, so 65 stalled connections kept open
    were each waited for again in turn, for ever. The bound is now above a listener's connection
    limit: every one of them stays given up while it stays."""
    sources = _Sources()
    check = BoundSequenceCheck(sources)
    accept = _accepting(check)
    owners = [f"stalled{index}" for index in range(MAX_CONNECTIONS + 1)]
    ids = [bytes([index % 256, index // 256]) * 4 for index in range(len(owners))]
    sources.unread.update(owners)  # each stopped in the middle of a message: data on the way
    for owner, publisher in zip(owners, ids):
        assert accept(publisher, 1, owner) == 0
    check.waiting = False  # the listener stopped waiting for each of them once
    assert all(accept(publisher, 2, "forger") == FOREIGN for publisher in ids)
    check.waiting = True
    assert [accept(publisher, 3, "forger") for publisher in ids] == [FOREIGN] * len(ids)


def test_ids_invented_between_two_messages_of_a_slow_publisher_cannot_free_its_id():
    """Review 35: the binding of an id was forgotten with its sequence state once 4,096 other ids
    were heard, so a peer sending 4,097 new ids between two messages of a publisher slower than
    10 Hz took its id and silenced it. One sender now holds at most MAX_IDS_PER_SENDER ids, and
    the id of a sender still there stays bound to it when its sequence state is forgotten."""
    sources = _Sources()
    check = BoundSequenceCheck(sources)
    accept = _accepting(check)
    honest = b"H" * 8
    assert accept(honest, 1, "honest") == 0
    invented = iter(range(1, 1 << 30))
    flood = [accept(next(invented).to_bytes(8, "big"), 1, "flooder") for _ in range(MAX_IDS_PER_SENDER + 5)]
    assert flood == [0] * MAX_IDS_PER_SENDER + [FOREIGN] * 5
    for sender in range(MAX_TRACKED_PUBLISHERS // MAX_IDS_PER_SENDER + 1):
        for _ in range(MAX_IDS_PER_SENDER):
            assert accept(next(invented).to_bytes(8, "big"), 1, f"sender{sender}") == 0
    assert honest not in check._last  # its sequence state was forgotten
    assert accept(honest, 2, "flooder") == FOREIGN
    assert accept(honest, 2, "honest") == 0


def test_an_old_tail_overtaken_once_the_listener_stopped_waiting_is_counted_once():
    """Review 35: 60 publishers reconnecting at once passed the deferral's shared budget; the
    listener stopped waiting, each successor's messages overtook its old tail, whose messages were
    counted ``missed`` then and again as ``duplicate`` when they came (784 of them, twice). They are
    counted once: ``missed``."""
    sources = _Sources()
    check = BoundSequenceCheck(sources)
    accept = _accepting(check)
    assert [accept(A, seq, "old") for seq in range(1, 6)] == [0] * 5
    sources.gone.add("old")  # its peer left; 6 and 7 are still in its connection
    check.waiting = False  # the listener stopped waiting for it (a limit passed)
    assert accept(A, 8, "new") == 2
    check.waiting = True
    assert [accept(A, seq, "old") for seq in (6, 7)] == [envelope.OVERTAKEN] * 2
    assert check.per_publisher[A] == {"received": 6, "missed": 2, "duplicate": 0, "dropped": 0}
    assert (check.missed, check.duplicate) == (2, 0)
