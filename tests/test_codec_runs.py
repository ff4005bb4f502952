"""The codec keeps one encode and one decode run (and its packers) per thread between messages:
a run in use is never shared (an encode or decode inside another gets its own), a run at rest
holds nothing of the last message, a failed message leaves nothing behind for the next one, and
threads never see each other's runs."""

import gc
import weakref
from concurrent.futures import ThreadPoolExecutor

import msgpack
import numpy as np
import pytest

from wrapyfi_like.encoding import Codec
from wrapyfi_like.encoding import codec as codec_module
from wrapyfi_like.exceptions import DecodeError, EncodeError
from wrapyfi_like.limits import MAX_DEPTH

pytestmark = pytest.mark.timeout(60)

INNER = Codec()


class Wrapped:
    """A type whose inline serializer and deserializer run a whole encode and decode of their own."""

    def __init__(self, value):
        self.value = value


def _serialize(wrapped: Wrapped) -> list:
    frames = INNER.encode(wrapped.value)  # inside the outer encode, on the same thread
    return [bytes(frame) for frame in frames]


def _deserialize(frames: list) -> Wrapped:
    return Wrapped(INNER.decode(frames))  # inside the outer decode, on the same thread


OUTER = Codec(inline={Wrapped: (_serialize, _deserialize)})


def _equal(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_equal, a, b))
    if isinstance(a, dict):
        return type(b) is dict and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def test_an_encode_or_decode_inside_another_gets_a_run_of_its_own():
    inner = {"a": np.arange(3, dtype=np.int16), "b": b"xy", "t": (1, 2.5)}
    value = [np.arange(4.0), Wrapped(inner), np.arange(5, dtype=np.uint8), b"after"]
    frames = OUTER.encode(value)
    assert len(frames) == 1 + 3 + 3  # the outer arrays and bytes, and the inner message's frames as bytes
    decoded = OUTER.decode([bytes(frame) for frame in frames])
    assert _equal(decoded[0], value[0]) and _equal(decoded[2], value[2]) and decoded[3] == b"after"
    assert _equal(decoded[1].value, inner)


def test_a_run_at_rest_holds_nothing_of_the_last_message():
    codec = Codec()
    array = np.arange(64, dtype=np.float32)
    sent = weakref.ref(array)
    frames = codec.encode({"seq": 1, "data": array})
    del array, frames
    gc.collect()
    assert sent() is None

    header = codec.encode(np.zeros(16, np.uint8))[0]
    frame = np.arange(16, dtype=np.uint8)
    received = weakref.ref(frame)
    value = codec.decode([header, frame])
    assert value.base is not None and value.sum() == frame.sum()
    del value, frame
    gc.collect()
    assert received() is None


def test_a_failed_message_holds_nothing_either():
    codec = Codec()
    array = np.arange(8.0)
    sent = weakref.ref(array)
    with pytest.raises(EncodeError):
        codec.encode([array, object()])
    del array
    gc.collect()
    assert sent() is None

    header = codec.encode(np.zeros(16, np.uint8))[0]
    frame = np.arange(12, dtype=np.uint8)  # the header says 16 bytes
    received = weakref.ref(frame)
    with pytest.raises(DecodeError, match="needs 16 bytes"):
        codec.decode([header, frame])
    del frame
    gc.collect()
    assert received() is None


def _nested(levels: int):
    value = 1
    for _ in range(levels):
        value = (value,)
    return value


def test_a_failed_message_leaves_the_next_one_exact():
    codec = Codec()
    deepest = _nested(MAX_DEPTH)
    reference = Codec().encode(deepest)  # before any failure in this thread's runs
    for _ in range(2):
        with pytest.raises(EncodeError, match="MAX_DEPTH"):
            codec.encode(_nested(MAX_DEPTH + 1))
        with pytest.raises(EncodeError, match="cannot encode an object"):
            codec.encode(["x" * 100, {"k": [1.5, (2, object())]}])
        assert codec.encode(deepest) == reference  # depth and packers start afresh
        assert codec.encode({"k": ["x" * 100]}) == [b"\x93\x01\x00" + msgpack.packb({"k": ["x" * 100]})]

        too_deep = b"\x93\x01\x00" + msgpack.packb(_ext_nest(MAX_DEPTH + 1))
        with pytest.raises(DecodeError, match="MAX_DEPTH"):
            codec.decode([too_deep])
        assert codec.decode(reference) == deepest


def _ext_nest(levels: int) -> msgpack.ExtType:
    value = 1
    for _ in range(levels):
        value = msgpack.ExtType(int(codec_module.Ext.TUPLE), msgpack.packb([value]))
    return value


def test_threads_never_share_a_run():
    codec = Codec()

    def work(seed: int) -> int:
        for step in range(300):
            value = {"seq": step, "data": np.full(seed + 1, seed, np.int32), "t": (seed, b"%d" % step),
                     "values": [float(seed)] * (seed + 1)}
            decoded = codec.decode([bytes(frame) for frame in codec.encode(value)])
            assert _equal(decoded, value)
        return seed

    with ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(work, range(8))) == list(range(8))


def test_a_large_header_does_not_keep_its_packer():
    codec = Codec()
    big = ["%08d" % i for i in range(20000)]  # a 180 KB header
    assert len(codec.encode(big)[0]) > codec_module.MAX_KEPT_PACK_SIZE
    assert codec_module._idle_runs.encode.packers == []  # this thread's packer, grown to 180 KB, was let go
    codec.encode({"k": 1})
    assert len(codec_module._idle_runs.encode.packers) == 1



def test_a_failed_message_does_not_keep_its_packers():
    """A packer keeps the buffer it grew; one that failed mid-pack never reached the size check,
    so a failure drops the run's packers (a 180 KB header, then a type nobody encodes)."""
    codec = Codec()
    codec.encode({"k": 1})
    assert len(codec_module._idle_runs.encode.packers) == 1
    with pytest.raises(EncodeError):
        codec.encode(["%08d" % i for i in range(20000)] + [object()])
    assert codec_module._idle_runs.encode.packers == []
    assert codec.decode(codec.encode({"k": 2})) == {"k": 2}


@pytest.mark.parametrize("value", [
    {"k": (b"xy",), "arr": np.arange(3), "n": 1},  # bytes inside a tuple inside a dict that walks no further
    [1.5, b"ab", 2.5],  # a list that starts with a float but is not all numbers
    {b"key": 1, "n": [bytearray(b"cd")]},  # a bytes key: the dict is rebuilt
    {"seq": 3, "data": {"m": memoryview(b"ef"), "l": [[b"gh"]]}},
])
def test_bytes_like_values_still_travel_as_frames(value):
    frames = Codec().encode(value)
    assert len(frames) > 1 and all(code not in frames[0] for code in (b"\xc4", b"\xc5", b"\xc6"))  # no msgpack bin
    decoded = Codec().decode(tuple(bytes(frame) for frame in frames))  # any sequence of any bytes-like frames
    if isinstance(value, dict) and "data" in value:
        assert bytes(decoded["data"]["m"]) == b"ef" and decoded["data"]["l"] == [[b"gh"]]
    else:
        assert _equal(decoded, value)


def test_a_float_led_list_with_an_item_whose_float_fails_is_an_encode_error():
    """The number check reads items as floats; an object whose ``__float__`` raises makes the list
    a walked one, and the codec then names the type it cannot encode (not the object's error)."""
    class Odd:
        def __float__(self) -> float:
            raise RuntimeError("not a number")

    with pytest.raises(EncodeError, match="Odd"):
        Codec().encode([1.5, Odd()])
