"""The envelope codec and the sequence check on their own: the fast paths (no reordering for the
publisher heard last, tuples built directly) must keep every count and bound exact."""

import pytest

from wrapyfi_like.exceptions import DecodeError
from wrapyfi_like.middlewares import envelope
from wrapyfi_like.middlewares.envelope import Group, SequenceCheck, pack, unpack

A, B = b"A" * 8, b"B" * 8


def test_unpack_returns_what_pack_wrote_and_refuses_anything_else():
    stamp = unpack(memoryview(pack(A, 7, envelope.LATEST, Group(b"O" * 8, 3))))
    assert stamp == (A, 7, envelope.LATEST, (b"O" * 8, 3)) and stamp.group.call == 3 and stamp.seq == 7
    assert unpack(pack(A, 1)).group is None
    good = pack(A, 1)
    for frame, reason in [(good[:-1], "36 bytes"), (b"XX" + good[2:], "not a wrapyfi_like"),
                          (good[:2] + b"\x09" + good[3:], "version 9"), (pack(A, 0), "number 0")]:
        with pytest.raises(DecodeError, match=reason):
            unpack(frame)


def _accept(check: SequenceCheck, publisher: bytes, seq: int) -> int:
    return check.accept(unpack(pack(publisher, seq)))


def test_interleaved_publishers_are_counted_apart():
    check = SequenceCheck()
    results = [_accept(check, p, s) for p, s in [(A, 1), (B, 1), (A, 2), (B, 4), (A, 2), (A, 5), (B, 3)]]
    assert results == [0, 0, 0, 2, -1, 2, -1]
    assert check.per_publisher == {A: {"received": 3, "missed": 2, "duplicate": 1, "dropped": 0},
                                   B: {"received": 2, "missed": 2, "duplicate": 1, "dropped": 0}}
    assert (check.missed, check.duplicate) == (4, 2)


def test_the_publisher_heard_last_survives_a_flood_of_invented_ids(monkeypatch):
    monkeypatch.setattr(envelope, "MAX_TRACKED_PUBLISHERS", 4)
    check = SequenceCheck()
    for seq in range(1, 50):
        assert _accept(check, A, seq) == 0
        _accept(check, seq.to_bytes(8, "little"), 1)  # a new id every time, evicting the oldest
        assert len(check.per_publisher) <= 4 and len(check._last) <= 4
    assert check.per_publisher[A]["received"] == 49 and check.missed == 0
    assert _accept(check, A, 49) == -1  # still remembered: a repeat is refused


def test_runs_of_the_next_number_and_every_exception_to_them_count_exactly():
    """In-order runs take the shortest path; gaps, repeats, restarts and a second publisher
    between them must leave the counts exactly as the full check would."""
    check = SequenceCheck()
    steps = [(A, 1, 0), (A, 2, 0), (A, 3, 0), (A, 3, -1), (A, 4, 0), (A, 7, 2), (A, 8, 0), (B, 1, 0),
             (A, 9, 0), (B, 2, 0), (A, 6, -1), (A, 10, 0), (A, 10 + envelope.LATE_WINDOW + 5, envelope.LATE_WINDOW + 4),
             (A, 3, 0), (A, 4, 0), (A, 4, -1), (A, 5, 0)]  # 3: far behind, so a restart
    assert [_accept(check, p, s) for p, s, _ in steps] == [expected for _, _, expected in steps]
    assert check.per_publisher == {A: {"received": 12, "missed": 2 + envelope.LATE_WINDOW + 4, "duplicate": 3, "dropped": 0},
                                   B: {"received": 2, "missed": 0, "duplicate": 0, "dropped": 0}}
    assert (check.duplicate, check.restarts) == (3, 1)
