"""How ``[header, *buffers]`` travels in one zenoh message.

Zenoh-python sends one payload and one attachment per message, without scatter-gather, and
accepts only ``bytes``/``bytearray`` (no memoryview): some copy is unavoidable. The cheapest is
``payload = b"".join(frames)`` (one copy, the concatenation comes with it) and an attachment that
says where each frame ends. On receive, the frames are slices of one writable buffer.

Attachment (little-endian): for pub/sub, the 36-byte envelope
(:mod:`wrapyfi_like.middlewares.envelope`) then ``u64`` frame lengths; for request/reply, only the
lengths. Every length is checked against the payload before a slice is made.
"""

from __future__ import annotations

import struct
from typing import Any

from wrapyfi_like.exceptions import DecodeError
from wrapyfi_like.limits import MAX_FRAMES

_LENGTH = struct.Struct("<Q")
_tables: dict[int, struct.Struct] = {}


def _table(count: int) -> struct.Struct:
    """The ``struct`` of ``count`` lengths, made once per count: a 1 KB message costs a few µs,
    and parsing a format string each time was a third of the framing's share."""
    table = _tables.get(count)
    if table is None:
        table = _tables[count] = struct.Struct(f"<{count}Q")
    return table


def join(frames: list) -> tuple[bytes, bytes]:
    """``(payload, lengths)`` of ``frames`` (contiguous bytes-like objects, of any item format:
    ``bytes.join`` copies their bytes as they are)."""
    sizes = [len(frame) if type(frame) is bytes else memoryview(frame).nbytes for frame in frames]
    return b"".join(frames), _table(len(sizes)).pack(*sizes)


def split(payload: bytes, lengths: Any, writable: bool = True) -> list[memoryview]:
    """The frames of ``payload`` as views of one buffer (a writable copy unless ``writable`` is False)."""
    count, rest = divmod(len(lengths), _LENGTH.size)
    if rest or not 1 <= count <= MAX_FRAMES:
        raise DecodeError(f"a zenoh message's frame table holds {len(lengths)} bytes: not 1..{MAX_FRAMES} lengths")
    sizes = _table(count).unpack(lengths)
    if sum(sizes) != len(payload):
        raise DecodeError(f"a zenoh message's frames add up to {sum(sizes)} bytes, its payload has {len(payload)}")
    buffer = memoryview(bytearray(payload) if writable else payload)
    frames, start = [], 0
    for size in sizes:
        frames.append(buffer[start:start + size])
        start += size
    return frames
