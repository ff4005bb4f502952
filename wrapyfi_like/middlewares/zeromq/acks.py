"""The ack back-channel: a listener tells each publisher connection what it has delivered, so the
publisher can count what a dead connection took with it.

A message that libzmq had queued, or the kernel had buffered, when a listener died is gone with
the connection, and neither side saw it go: the listener is dead and the publisher cannot look
into libzmq's pipe. So a listener writes, on each publisher's connection, a small ack frame
(:data:`ACK`, 20 bytes) that says which of that publisher's sequence numbers it has *handed to its
user*: ``since`` (the first sequence number delivered over this connection) and ``upto`` (the
latest). Acks are cumulative, so one may replace another that found no room. They go out every
:data:`ACK_EVERY` messages delivered, and on ticks every :data:`ACK_INTERVAL` seconds while a
connection has messages queued or unacked; never one per message.

The publisher keeps, per outlet, the sequence numbers it sent over it and not yet acked
(:class:`SentLedger`: runs of consecutive numbers, so memory does not grow with the message rate).
When the outlet's connection dies, what is still unacked is counted as ``unconfirmed`` and logged
once; when a new connection's first ack says it starts at ``since``, the numbers before it were
sent over an earlier connection that died unconfirmed, and are counted then.

The count is an **upper bound**: it includes the messages the listener delivered after the last
ack the publisher took in (acks go every :data:`ACK_EVERY` messages; acks that arrived but were
not read yet are lost with the connection). It never undercounts: a message is only forgotten
when an ack covers it.
"""

from __future__ import annotations

import struct
from collections import deque

from wrapyfi_like.exceptions import DecodeError

ACK = struct.Struct("<2sBBQQ")
"""magic ``b"WA"``, version, flags (0), ``since`` (u64), ``upto`` (u64); little-endian."""
MAGIC = b"WA"
VERSION = 1
ACK_EVERY = 64
"""Messages a listener delivers over one connection before it acks them (at the latest)."""
ACK_INTERVAL = 0.01
"""Seconds between a listener's ack ticks while a connection has messages queued or unacked."""
READ_EVERY = 64
"""Messages a publisher sends over an outlet between two reads of that outlet's acks."""
MAX_RUNS = 4096
"""Runs of consecutive sequence numbers a ledger keeps; beyond it, the two oldest merge, counting
the numbers between them as sent (an overcount, never an undercount)."""
ZMTP_ACK = bytes([0, ACK.size])
"""The ZMTP frame head of an ack: a single short frame (no ``MORE``)."""


def pack(since: int, upto: int) -> bytes:
    return ACK.pack(MAGIC, VERSION, 0, since, upto)


def unpack(frame: bytes) -> tuple[int, int]:
    """``(since, upto)`` of an ack frame; :class:`DecodeError` if it is not one."""
    try:
        magic, version, _, since, upto = ACK.unpack(frame)
    except struct.error:
        raise DecodeError(f"an ack is {ACK.size} bytes, this frame has {len(frame)}") from None
    if magic != MAGIC or version != VERSION:
        raise DecodeError("not a wrapyfi_like ack (magic or version)")
    if not 0 < since <= upto:
        raise DecodeError(f"an ack of {since}..{upto}: not a range of sequence numbers")
    return since, upto


class SentLedger:
    """The sequence numbers one publisher sent over one outlet and no ack covers yet."""

    __slots__ = ("_runs",)

    def __init__(self) -> None:
        self._runs: deque[list[int]] = deque()  # [first, last] in increasing order

    def sent(self, seq: int) -> None:
        runs = self._runs
        if runs and runs[-1][1] == seq - 1:
            runs[-1][1] = seq
            return
        runs.append([seq, seq])
        if len(runs) > MAX_RUNS:
            first = runs.popleft()
            runs[0][0] = first[0]

    def acked(self, since: int, upto: int) -> int:
        """Forget what ``since..upto`` covers; returns how many numbers below ``since`` were
        forgotten unconfirmed (sent over an earlier connection that died)."""
        runs = self._runs
        lost = 0
        while runs and runs[0][0] < since:
            run = runs[0]
            if run[1] < since:
                lost += run[1] - run[0] + 1
                runs.popleft()
            else:
                lost += since - run[0]
                run[0] = since
        while runs and runs[0][0] <= upto:
            run = runs[0]
            if run[1] <= upto:
                runs.popleft()
            else:
                run[0] = upto + 1
        return lost

    def forget(self) -> int:
        """Forget everything (the connection died); returns how many numbers were unconfirmed."""
        count = len(self)
        self._runs.clear()
        return count

    def __len__(self) -> int:
        return sum(last - first + 1 for first, last in self._runs)
