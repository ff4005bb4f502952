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


def join(frames: list) -> tuple[bytes, bytes]:
    """``(payload, lengths)`` of ``frames`` (bytes-like objects)."""
    views = [memoryview(frame).cast("B") if not isinstance(frame, bytes) else frame for frame in frames]
    lengths = struct.pack(f"<{len(views)}Q", *(len(view) for view in views))
    return b"".join(views), lengths


def split(payload: bytes, lengths: Any, writable: bool = True) -> list[memoryview]:
    """The frames of ``payload`` as views of one buffer (a writable copy unless ``writable`` is False)."""
    count, rest = divmod(len(lengths), _LENGTH.size)
    if rest or not 1 <= count <= MAX_FRAMES:
        raise DecodeError(f"a zenoh message's frame table holds {len(lengths)} bytes: not 1..{MAX_FRAMES} lengths")
    sizes = struct.unpack(f"<{count}Q", lengths)
    if sum(sizes) != len(payload):
        raise DecodeError(f"a zenoh message's frames add up to {sum(sizes)} bytes, its payload has {len(payload)}")
    buffer = memoryview(bytearray(payload) if writable else payload)
    frames, start = [], 0
    for size in sizes:
        frames.append(buffer[start:start + size])
        start += size
    return frames
