"""The codec's limits: nesting depth, header size, length claims, extension codes, error text.

Each limit is tested on both sides (what the encoder refuses, the decoder refuses too, and what the
encoder accepts decodes) and, where a limit exists to bound memory or stack, with a measurement:
tracemalloc's peak for allocations, a thread with a small stack for recursion.
"""

import datetime as dt
import subprocess
import sys
import textwrap
import tracemalloc

import msgpack
import numpy as np
import pytest

from wrapyfi_like.encoding import Codec
from wrapyfi_like.encoding.codec import FAST_LEVELS, MAX_ERROR_CHARS
from wrapyfi_like.exceptions import DecodeError, EncodeError
from wrapyfi_like.limits import MAX_DEPTH, MAX_HEADER_SIZE

pytestmark = pytest.mark.timeout(60)

CODEC = Codec()


def _message(body: bytes, buffers=()) -> list:
    """``[header, *buffers]`` whose header holds ``body`` as its value."""
    return [b"\x93\x01" + msgpack.packb(len(buffers)) + body, *buffers]


def _tuples(depth: int, leaf: bytes = b"\x01") -> bytes:
    """The msgpack bytes of ``depth`` one-item tuples (ext 1) around ``leaf``."""
    data = leaf
    for _ in range(depth):
        data = msgpack.packb(msgpack.ExtType(1, b"\x91" + data))
    return data


def _nested(depth: int):
    """Tuples and frozensets, alternately, around a numpy scalar: ``depth`` extension levels (the
    scalar is one; the bytes extension inside it is a leaf and does not count)."""
    value = np.float32(1.5)
    for level in range(depth - 1):
        value = (value, dt.date(2024, 1, 1)) if level % 2 else frozenset({value})
    return value


def _depth_of(value) -> int:
    """Extension levels of a value built from tuples and frozensets around a numpy scalar."""
    if isinstance(value, np.generic):
        return 1
    if isinstance(value, (tuple, frozenset)):
        return 1 + max((_depth_of(item) for item in value), default=0)
    return 0


def test_depth_limit_holds_on_both_sides():
    at_limit = _nested(MAX_DEPTH)
    assert _depth_of(at_limit) == MAX_DEPTH
    assert CODEC.decode(CODEC.encode(at_limit)) == at_limit
    with pytest.raises(EncodeError, match=f"MAX_DEPTH = {MAX_DEPTH}"):
        CODEC.encode((at_limit,))


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 200, 10_000])
def test_depth_over_the_limit_is_a_decode_error_not_a_crash(depth):
    frames = _message(_tuples(depth))
    with pytest.raises(DecodeError, match=f"MAX_DEPTH = {MAX_DEPTH}"):
        CODEC.decode(frames)


def test_depth_at_the_limit_decodes_and_encodes_in_a_thread_with_a_1_mib_stack():
    """The stack claim of the codec's docstring: unpackb costs ~40 KB of C stack a level, so
    without the heap-allocated unpacker past FAST_LEVELS this thread would segfault."""
    assert FAST_LEVELS < MAX_DEPTH
    script = textwrap.dedent(f"""
        import threading, msgpack
        from wrapyfi_like.encoding import Codec
        data = b"\\x01"
        for _ in range({MAX_DEPTH}):
            data = msgpack.packb(msgpack.ExtType(1, b"\\x91" + data))
        header = b"\\x93\\x01\\x00" + data
        threading.stack_size(1024 * 1024)
        results = []
        def run():
            codec = Codec()
            value = codec.decode([header])
            results.append(codec.encode(value)[0] == header)
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        print(results)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert result.stdout.strip() == "[True]"


def test_deep_lists_are_bounded_by_msgpack_without_recursion():
    value = 1
    for _ in range(600):
        value = [value]
    with pytest.raises(EncodeError, match="511 deep"):
        CODEC.encode(value)
    with pytest.raises(DecodeError):
        CODEC.decode(_message(b"\x91" * 100_000 + b"\x01"))
    shallow = [[[[1]]]]
    assert CODEC.decode(CODEC.encode(shallow)) == shallow



def _containers(depth: int, wrap, leaf):
    value = leaf
    for level in range(depth):
        value = wrap(level, value)
    return value


@pytest.mark.parametrize("wrap, leaf", [
    (lambda level, value: [value], 1),
    (lambda level, value: {"k": value}, 1),
    (lambda level, value: [value] if level % 2 else {"k": value}, [1.5, 2.5]),
    (lambda level, value: {"k": value, "z": b"z"}, {f"w{index}": index for index in range(12)}),
    (lambda level, value: [b"b", value], {"leaf": 1}),
    (lambda level, value: {b"k": value}, 1),
    (lambda level, value: [value, b"v"] if level % 2 else {"s": 1, b"k": value}, {b"leaf": b"v"}),
], ids=["lists", "dicts", "mixed-with-float-list", "dicts-with-bytes-and-a-wide-leaf", "lists-with-bytes",
        "dicts-with-bytes-keys", "bytes-keyed-dicts-and-lists"])
def test_lists_and_maps_nest_511_deep_when_encoding(wrap, leaf):
    """The walk counts every list and map, down to the innermost of leaves: 511 levels are sent
    and read back, one more is an EncodeError (codec.MAX_NESTING) that says so, whatever the
    keys (a map with a bytes key at every level used to reach Python's recursion limit at 332
    levels and blame the nesting limit)."""
    inner_leaf = 0 if isinstance(leaf, (int, float)) else 1  # a container leaf is a level itself
    deepest = _containers(511 - inner_leaf, wrap, leaf)
    frames = CODEC.encode(deepest)
    assert CODEC.decode([bytes(memoryview(frame).cast("B")) for frame in frames]) == deepest
    with pytest.raises(EncodeError, match="^lists and maps may nest at most 511 deep in one extension level$"):
        CODEC.encode(_containers(512 - inner_leaf, wrap, leaf))

def _peak_bytes(function) -> int:
    tracemalloc.start()
    try:
        function()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_header_size_limit_is_checked_before_unpacking():
    nils = MAX_HEADER_SIZE  # one byte more than the limit allows, with the 8 bytes of framing
    header = b"\x93\x01\x00\xdd" + nils.to_bytes(4, "big") + b"\xc0" * nils

    def decode():
        with pytest.raises(DecodeError, match="MAX_HEADER_SIZE"):
            CODEC.decode([header])

    assert _peak_bytes(decode) < 64 * 1024  # unpacked, 4 Mi nils would be a 32 MB list


def test_header_size_limit_on_encode_and_a_header_at_the_limit_decodes():
    with pytest.raises(EncodeError, match="MAX_HEADER_SIZE"):
        CODEC.encode([0.5] * (MAX_HEADER_SIZE // 9 + 1))  # a float is 9 bytes of msgpack
    count = MAX_HEADER_SIZE - 8
    at_limit = b"\x93\x01\x00\xdd" + count.to_bytes(4, "big") + b"\xc0" * count
    assert len(at_limit) == MAX_HEADER_SIZE
    assert CODEC.decode([at_limit]) == [None] * count


@pytest.mark.parametrize("claim", [
    b"\xdd\xff\xff\xff\xff",  # array32 of 4 G items
    b"\xdf\xff\xff\xff\xff",  # map32
    b"\xdb\xff\xff\xff\xff",  # str32 of 4 GiB
    b"\xc6\xff\xff\xff\xff",  # bin32
    b"\xc9\xff\xff\xff\xff\x01",  # ext32 of type 1
])
@pytest.mark.parametrize("level", [0, 1, FAST_LEVELS + 2])
def test_container_length_claims_beyond_the_document_allocate_nothing(claim, level):
    """msgpack's unpackb derives max_*_len from its input's length, the deep levels from
    max_buffer_size: a 10-byte document cannot make the decoder allocate for 4 G items."""
    body = claim + b"\x00" * 8
    frames = _message(_tuples(level, body) if level else body)

    def decode():
        with pytest.raises(DecodeError):
            CODEC.decode(frames)

    assert _peak_bytes(decode) < 256 * 1024  # the deep levels' Unpacker costs ~100 KB whatever the claim


TIMESTAMPS = {
    "fixext4": b"\xd6\xff" + b"\x00" * 4,
    "fixext8": b"\xd7\xff" + b"\x00" * 8,
    "ext8 of 12": b"\xc7\x0c\xff" + b"\x00" * 12,
    "ext8 of 4": b"\xc7\x04\xff" + b"\x00" * 4,
    "ext16 of 8": b"\xc8\x00\x08\xff" + b"\x00" * 8,
    "ext32 of 12": b"\xc9\x00\x00\x00\x0c\xff" + b"\x00" * 12,
}


@pytest.mark.parametrize("encoding", TIMESTAMPS)
@pytest.mark.parametrize("where", ["top", "list", "map key", "map value", "tuple", "deep tuple", "plugin"])
def test_timestamp_extension_is_refused_wherever_it_is(encoding, where):
    assert isinstance(msgpack.unpackb(TIMESTAMPS[encoding]), msgpack.Timestamp)  # msgpack would accept it
    stamp = TIMESTAMPS[encoding]
    body = {
        "top": stamp,
        "list": b"\x93\x01\x02" + b"\x91" + stamp,
        "map key": b"\x81" + stamp + b"\x01",
        "map value": b"\x81\xa1k" + stamp,
        "tuple": _tuples(1, stamp),
        "deep tuple": _tuples(FAST_LEVELS + 3, b"\x92\x01" + stamp),
        "plugin": msgpack.packb(msgpack.ExtType(15, b"\x92\xa9PIL.Image" + stamp)),
    }[where]
    with pytest.raises(DecodeError, match="Timestamp|codec id"):
        CODEC.decode(_message(body))


def test_timestamp_marker_bytes_inside_plain_values_are_fine():
    value = {"s": "\xff\xd7", "b": [b"\xd7\xff\x00\x00\x00\x00\x00\x00\x00\x00"], "f": [5e-324, -1, 255]}
    frames = CODEC.encode(value)
    assert b"\xd7\xff" in bytes(frames[1]) or b"\xff" in frames[0]
    assert CODEC.decode(frames) == value


@pytest.mark.parametrize("code", [0, 16, 127, -2, -128])
def test_unknown_extension_codes_are_refused(code):
    with pytest.raises(DecodeError, match=f"unknown extension code {code}"):
        CODEC.decode(_message(b"\xd4" + code.to_bytes(1, "big", signed=True) + b"\x01"))  # fixext 1


def test_error_messages_are_bounded():
    huge = "x" * 1_000_000
    bodies = [
        msgpack.packb(msgpack.ExtType(15, msgpack.packb([huge, 1]))),  # a 1 MB codec id
        msgpack.packb(msgpack.ExtType(9, msgpack.packb([0, huge, [1], False]))),  # a 1 MB dtype
        msgpack.packb(msgpack.ExtType(8, msgpack.packb([0, huge, [1]]))),  # a 1 MB memoryview format
        b"\xdb" + len(huge).to_bytes(4, "big") + b"\xff" * len(huge),  # 1 MB of invalid UTF-8
    ]
    for body in bodies:
        with pytest.raises(DecodeError) as caught:
            CODEC.decode(_message(body, [b"\x00" * 8]))
        assert len(str(caught.value)) <= MAX_ERROR_CHARS, str(caught.value)[:300]


@pytest.mark.parametrize("count", [
    msgpack.packb(msgpack.ExtType(9, msgpack.packb([0, "<u1", [2], False]))),  # an array (found by the fuzz test)
    msgpack.packb(msgpack.ExtType(1, b"\x90")),  # a tuple
    b"\xc3",  # True, which == 1 in Python
    b"\xa1\x31",  # the string "1"
])
def test_buffer_count_must_be_an_int(count):
    with pytest.raises(DecodeError, match="buffers"):
        CODEC.decode([b"\x93\x01" + count + b"\xc0", b"\x01\x02"])
