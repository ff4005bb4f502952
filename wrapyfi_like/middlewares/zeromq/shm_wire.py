"""How a ``carrier="shm"`` message says which of its buffers travel in shared memory.

A message whose envelope has the :data:`~wrapyfi_like.middlewares.envelope.SHM` flag is
``[topic, envelope, header, *buffers, refs]``: each buffer that went into the sample is an empty
frame in its place, and the last frame lists them (little-endian):

| field | type | meaning |
|---|---|---|
| magic | 4 bytes ``b"WLSM"`` | |
| count | u32 | buffers in the sample, 1 … :data:`MAX_REFS` |
| per buffer: index | u32 | its place in ``[header, *buffers]`` (≥ 1: never the header) |
| per buffer: offset | u64 | where it starts in the sample's payload |
| per buffer: nbytes | u64 | its length |

The sample itself is found by the envelope's publisher id and sequence number, which iceoryx2
carries in each sample's user header; the service is the listener's own inbox. So a peer can
point a listener only at samples in that listener's inbox, and every reference is checked against
the sample's real length before a view is made.
"""

from __future__ import annotations

import struct

from wrapyfi_like.exceptions import DecodeError

HEAD = struct.Struct("<4sI")
ENTRY = struct.Struct("<IQQ")
ONE = struct.Struct("<4sIIQQ")
"""A reference frame with one entry (one shared buffer: the common case, and every ``loan``),
read in one call."""
MAGIC = b"WLSM"
MAX_REFS = 4096


def shm_listener_key(topic: str, compatibility: str) -> str:
    """The discovery key a shm-capable listener announces under: equal only for processes that
    can share memory with it (:func:`~.shm.compatibility`), so a publisher finds exactly those."""
    return f"\0shm {compatibility} {topic}"


_packed: tuple[list, bytes] = ([], b"")
"""The last reference frame packed, with its entries: a stream of messages of one shape sends
the same frame each time."""


def pack_refs(entries: list[tuple[int, int, int]]) -> bytes:
    global _packed
    last_entries, last_frame = _packed
    if entries == last_entries:
        return last_frame
    frame = HEAD.pack(MAGIC, len(entries)) + b"".join(ENTRY.pack(*entry) for entry in entries)
    _packed = (entries, frame)
    return frame


def unpack_refs(frame, frames: int, payload: int) -> list[tuple[int, int, int]]:
    """The ``(index, offset, nbytes)`` entries of ``frame``, checked against a body of ``frames``
    frames (refs not counted) and a sample of ``payload`` bytes; :class:`DecodeError` if bad."""
    data = memoryview(frame)
    if data.nbytes == ONE.size:
        magic, count, index, offset, nbytes = ONE.unpack(data)
        if magic != MAGIC or count != 1:
            raise DecodeError("the shm reference frame is not one")
        entries = [(index, offset, nbytes)]
    else:
        if data.nbytes < HEAD.size:
            raise DecodeError("the shm reference frame is too short")
        magic, count = HEAD.unpack_from(data)
        if magic != MAGIC or not 0 < count <= MAX_REFS or data.nbytes != HEAD.size + count * ENTRY.size:
            raise DecodeError("the shm reference frame is not one")
        entries = list(ENTRY.iter_unpack(data[HEAD.size:]))
    seen = set()
    for index, offset, nbytes in entries:
        if not 0 < index < frames or index in seen or offset + nbytes > payload:
            raise DecodeError(f"the shm reference to frame {index} ({nbytes} bytes at {offset}) "
                              f"does not fit a {frames}-frame message with a {payload}-byte sample")
        seen.add(index)
    return entries
