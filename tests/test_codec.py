"""The codec round-trips every supported type exactly and rejects what it cannot carry.

Every test that uses the ``codec`` fixture runs in binary and in JSON mode; the tests of buffers
(frames of their own, no copies) use ``binary``."""

import datetime as dt
import math
import zoneinfo

import msgpack
import numpy as np
import pytest

from wrapyfi_like.encoding import Codec
from wrapyfi_like.encoding.codec import Ext
from wrapyfi_like.exceptions import DecodeError, EncodeError
from wrapyfi_like.utils.core_utils import Plugin, PluginRegistrar


@pytest.fixture(scope="module", params=["binary", "json"])
def codec(request):
    return Codec(serializer=request.param)


@pytest.fixture(scope="module")
def binary():
    return Codec()


def wire(frames):
    """What a receiver gets: each frame as its own writable buffer, like ZeroMQ frames."""
    return [bytearray(memoryview(frame).cast("B")) for frame in frames]


def roundtrip(codec, value):
    return codec.decode(wire(codec.encode(value)))


def assert_exact(expected, actual):
    assert type(actual) is type(expected), (expected, actual)
    if isinstance(expected, np.ndarray):
        assert actual.dtype == expected.dtype and actual.shape == expected.shape
        np.testing.assert_array_equal(actual, expected)
    elif isinstance(expected, np.generic):
        assert actual.dtype == expected.dtype
        assert actual.tobytes() == expected.tobytes()
    elif isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(actual)
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected)
        for e, a in zip(expected, actual):
            assert_exact(e, a)
    elif isinstance(expected, dict):
        assert list(actual) == list(expected)
        for key in expected:
            assert type(next(k for k in actual if k == key)) is type(key)
            assert_exact(expected[key], actual[key])
    else:
        assert actual == expected
        if isinstance(expected, (dt.datetime, dt.time)):
            assert actual.tzinfo == expected.tzinfo and actual.fold == expected.fold


SCALARS = [
    None, True, False, 0, -1, 2**63 - 1, -(2**63), 2**64, 2**200, -(2**200) + 7,
    0.0, -0.0, 1.5, float("inf"), float("-inf"), float("nan"), 1 + 2j, complex(0, -1e300),
    "", "héllo ✓", b"", b"\x00\xff" * 10, bytearray(b"mutable"),
    dt.datetime(2024, 2, 29, 23, 59, 59, 999999),
    dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone.utc),
    dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=-3, minutes=-30), "NST")),
    dt.datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=zoneinfo.ZoneInfo("America/New_York")),
    dt.date(1, 1, 1), dt.time(0, 0), dt.time(13, 14, 15, 16, tzinfo=dt.timezone.utc),
    dt.timedelta(days=-3, seconds=5, microseconds=7),
]


@pytest.mark.parametrize("value", SCALARS, ids=repr)
def test_scalars_round_trip_exactly(codec, value):
    assert_exact(value, roundtrip(codec, value))


def test_containers_keep_their_types_at_every_depth(codec):
    value = {
        "tuple": (1, (2, (3, [4, (5,)])), []),
        "list": [(), [()], {"inner": (1.0, "x")}],
        3: "int key",
        (1, "a"): "tuple key",
        "set": {1, 2, 3},
        "frozenset": frozenset({"a", (1, 2)}),
        "empty": {},
        "nested": [[[[(1,)]]]],
        "bytes_in_list": [b"ab", bytearray(b"cd")],
    }
    result = roundtrip(codec, value)
    assert_exact({k: v for k, v in value.items() if not isinstance(v, (set, frozenset))},
                 {k: v for k, v in result.items() if not isinstance(v, (set, frozenset))})
    assert type(result["set"]) is set and result["set"] == value["set"]
    assert type(result["frozenset"]) is frozenset and result["frozenset"] == value["frozenset"]


def test_top_level_tuple_and_memoryview(codec):
    assert_exact((1, "a", None), roundtrip(codec, (1, "a", None)))
    view = memoryview(np.arange(6, dtype=np.int32).tobytes()).cast("i", [2, 3])
    result = roundtrip(codec, view)
    assert isinstance(result, memoryview)
    assert result.format == "i" and result.shape == (2, 3) and result.tolist() == view.tolist()


NUMERIC_DTYPES = ["?", "i1", "u1", "<i2", ">i2", "<u2", "<i4", ">i4", "<u4", "<i8", ">u8",
                  "<f2", "<f4", ">f4", "<f8", ">f8", "<c8", ">c16", "<M8[ns]", "<M8[D]", "<m8[us]",
                  "S5", "<U3"]


@pytest.mark.parametrize("dtype", NUMERIC_DTYPES)
def test_arrays_of_every_dtype(codec, dtype):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 100, size=(3, 4)).astype(dtype)
    result = roundtrip(codec, array)
    assert_exact(array, result)
    assert result.dtype.str == np.dtype(dtype).str


@pytest.mark.parametrize("shape", [(), (0,), (0, 3), (5,), (2, 3, 4), (1, 1, 1, 1)])
def test_arrays_of_any_shape(codec, shape):
    array = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    assert_exact(array, roundtrip(codec, array))


def test_fortran_and_non_contiguous_arrays(codec):
    base = np.arange(60, dtype=np.int64).reshape(3, 4, 5)
    for array in (np.asfortranarray(base), base[:, ::2, 1:4], base.T, base[::-1], base[..., 0]):
        assert_exact(array, roundtrip(codec, array))


@pytest.mark.parametrize("array", [np.asfortranarray(np.ones((100, 50))), np.ones((100, 50), dtype=">f4"),
                                   np.arange(8).astype("<M8[s]"), np.array([["ab", "c"]])])
def test_contiguous_arrays_are_sent_without_copy(binary, array):
    _, buffer = binary.encode(array)
    assert np.shares_memory(np.frombuffer(buffer, dtype=np.uint8), array)


def test_received_array_is_the_receive_buffer_and_writable(binary):
    array = np.arange(1000, dtype=np.float32)
    frames = wire(binary.encode(array))
    result = binary.decode(frames)
    assert result.flags.writeable
    result[0] = 42.0
    assert np.frombuffer(frames[1], np.float32)[0] == 42.0


def test_numpy_scalars_keep_their_dtype(codec):
    for scalar in (np.float32(1.5), np.float64(2.5), np.int8(-3), np.uint64(2**64 - 1), np.bool_(True),
                   np.complex64(1 - 1j), np.datetime64("2020-01-01T00:00", "m"), np.timedelta64(5, "s"),
                   np.float16(0.25)):
        assert_exact(scalar, roundtrip(codec, scalar))


def test_arrays_are_separate_frames_not_in_the_header(binary):
    array = np.zeros(1 << 16, dtype=np.uint8)
    frames = binary.encode({"a": array, "b": b"x" * 5000})
    assert len(frames) == 3
    assert len(frames[0]) < 200



@pytest.mark.parametrize("tail", [[b"raw" * 2000], [bytearray(b"x" * 6000)], [memoryview(b"m" * 6000)],
                                  [{"inner": b"y" * 6000}], [[b"z" * 6000]],
                                  [float("inf"), float("-inf"), b"w" * 6000], [1e308, 1e308, b"v" * 6000],
                                  [3 + 4j, b"n" * 6000], [10 ** 400, b"o" * 6000]],
                         ids=["bytes", "bytearray", "memoryview", "dict", "list", "infinities", "overflowing-sum",
                              "complex", "huge-int"])
def test_bytes_after_floats_in_a_list_still_travel_out_of_band(codec, tail):
    """A list starting with floats takes the fast all-numbers check; one bytes-like item must still be found."""
    value = [0.5, 1.5, *tail]
    if codec.serializer == "binary":
        frames = codec.encode(value)
        assert len(frames) == 2 and len(frames[0]) < 200
    assert_exact(value, roundtrip(codec, value))


WIDE = {f"k{index}": index for index in range(12)}  # wider than the walk's own loop (codec._LOOPED_ITEMS)


@pytest.mark.parametrize("value", [
    {b"k" * 6000: 1}, {"a": 1, "b": b"x" * 6000}, {"a": {"b": bytearray(6000)}},
    {"a": [1, memoryview(b"m" * 6000)]}, {"a": [0.5, b"x" * 6000]}, {"a": [{"b": b"x" * 6000}]},
    {"a": [[b"x" * 6000]]}, {"a": {"b": {b"k" * 6000: 1}}}, {**WIDE, "z": b"x" * 6000},
    {**WIDE, "z": {"y": b"x" * 6000}}, {**WIDE, "z": [0.5, b"x" * 6000]}, {"a": {**WIDE, "z": b"x" * 6000}},
    {"a": [[0.5, 1.5], [[{"b": b"x" * 6000}]]]},
], ids=["key", "value", "nested-dict", "list", "after-floats", "list-of-dicts", "list-of-lists", "nested-key",
        "wide", "wide-nested", "wide-list", "nested-wide", "deep-list"])
def test_bytes_anywhere_in_a_dict_still_travel_out_of_band(binary, value):
    """The walk's quick check of dicts (codec._EncodeRun._dict) hands a dict to the packer as it
    is only if no key, value, nested dict or list holds a bytes-like value: any one it missed
    would be copied into the header."""
    frames = binary.encode(value)
    assert len(frames) == 2 and len(frames[0]) < 200
    assert_exact(value, roundtrip(binary, value))


def test_one_bytes_like_object_under_several_keys_travels_once_per_place(binary):
    """The walk copies a dict or list when one of its items changes: the same object under
    several keys or in a list, or b"" (one object in CPython), is a buffer of its own in each
    place, in the order the items come."""
    blob, nested = b"x" * 6000, {"inner": memoryview(b"m" * 6000)}
    value = {"n": 1, "a": blob, "b": blob, "e1": b"", "e2": b"", "d1": nested, "d2": nested, "l": [blob, nested]}
    frames = binary.encode(value)
    assert len(frames) == 1 + 8 and len(frames[0]) < 200
    assert [bytes(frame) for frame in frames[1:]] == [blob, blob, b"", b"", b"m" * 6000, b"m" * 6000, blob, b"m" * 6000]
    assert_exact(value, roundtrip(binary, value))


@pytest.mark.parametrize("value", [object(), np.array([object()]), {"key": [1, 2, lambda: 0]},
                                   np.zeros(2, dtype=[("a", "i4")])], ids=["object", "object-array", "nested", "structured"])
def test_unsupported_types_raise_type_error_naming_the_type(codec, value):
    with pytest.raises(TypeError) as error:
        codec.encode(value)
    assert isinstance(error.value, EncodeError)
    assert "plugin" in str(error.value) or "dtype" in str(error.value)


class Envelope:
    """A value whose plugin returns the fields it is given."""

    def __init__(self, fields):
        self.fields = fields


@PluginRegistrar.register(types=(Envelope,))
class EnvelopePlugin(Plugin):
    codec_id = "tests.codec.Envelope"

    def encode(self, obj, *args, **kwargs):
        return True, {"__wrapyfi__": (self.codec_id, *obj.fields)}

    def decode(self, obj_type, obj_full, *args, **kwargs):
        return True, Envelope(list(obj_full[1:]))


@pytest.mark.parametrize("fields", [
    ["name", memoryview(b"m" * 6000), [3, 4], None, True, 1.5],
    ["name", (1, 2), memoryview(b"m" * 6000)],
    [2 ** 70, -(2 ** 80)],
    [np.arange(6.0), {"inner": bytearray(b"b" * 6000)}, dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)],
    [{1, 2}, frozenset({3}), 1 + 2j, np.float32(0.5)],
], ids=["native", "tuple", "big-ints", "array-bytes-datetime", "sets-complex-numpy-scalar"])
def test_plugin_fields_of_every_kind_round_trip(codec, fields):
    """Whatever a plugin puts in its fields (natively packed values, buffers, values only the
    codec's own encoders carry) comes back exactly."""
    received = roundtrip(codec, Envelope(fields)).fields
    assert_exact(fields, received)


class BaseMessage:
    def __init__(self, text):
        self.text = text


class DerivedMessage(BaseMessage):
    pass


@PluginRegistrar.register(types=(BaseMessage,))
class BaseMessagePlugin(Plugin):
    codec_id = "tests.codec.BaseMessage"
    message_type = BaseMessage

    def encode(self, obj, *args, **kwargs):
        return True, {"__wrapyfi__": (self.codec_id, obj.text)}

    def decode(self, obj_type, obj_full, *args, **kwargs):
        return True, self.message_type(obj_full[1])


def test_a_plugin_registered_after_a_type_was_encoded_takes_over_its_more_derived_type(binary):
    """The codec keeps the plugin it found for each type; a later, more specific registration
    still wins from the next message on. (Binary only: the registration is global, so a second
    run would find it made.)"""
    assert type(roundtrip(binary, DerivedMessage("a"))) is BaseMessage

    @PluginRegistrar.register(types=(DerivedMessage,))
    class DerivedMessagePlugin(BaseMessagePlugin):
        codec_id = "tests.codec.DerivedMessage"
        message_type = DerivedMessage

    received = roundtrip(binary, DerivedMessage("b"))
    assert type(received) is DerivedMessage and received.text == "b"


def test_subclasses_are_not_flattened_silently(codec):
    import collections
    import enum

    class Color(enum.IntEnum):
        RED = 1

    for value in (Color.RED, collections.OrderedDict(a=1), np.ma.masked_array([1, 2], mask=[0, 1])):
        with pytest.raises(EncodeError, match=type(value).__qualname__):
            codec.encode(value)


BAD_MESSAGES = {
    "empty": [],
    "garbage header": [b"\x00\x01garbage"],
    "wrong version": [bytes([0x93, 0x02]) + msgpack.packb(0) + msgpack.packb(None)],
    "truncated": [Codec().encode({"a": [1, 2, 3]})[0][:-2]],
    "missing buffer": Codec().encode(np.arange(3))[:1],
    "extra buffer": [*Codec().encode(np.arange(3)), b"extra"],
    "short buffer": [Codec().encode(np.arange(3))[0], b"\x00" * 5],
    "unknown ext": [bytes([0x93, 0x01, 0x00]) + msgpack.packb(msgpack.ExtType(99, b""))],
    "unknown codec id": [bytes([0x93, 0x01, 0x00]) + msgpack.packb(msgpack.ExtType(Ext.PLUGIN, msgpack.packb(["no.such.plugin", 1])))],
    "object dtype": [bytes([0x93, 0x01, 0x01]) + msgpack.packb(msgpack.ExtType(Ext.NDARRAY, msgpack.packb([0, "|O", [1], False]))), b"\x00" * 8],
    "negative shape": [bytes([0x93, 0x01, 0x01]) + msgpack.packb(msgpack.ExtType(Ext.NDARRAY, msgpack.packb([0, "<f4", [-1], False]))), b"\x00" * 4],
    "bad buffer index": [bytes([0x93, 0x01, 0x00]) + msgpack.packb(msgpack.ExtType(Ext.BYTES, msgpack.packb(5)))],
    "tuple not list": [bytes([0x93, 0x01, 0x00]) + msgpack.packb(msgpack.ExtType(Ext.TUPLE, msgpack.packb(3)))],
    "bad datetime": [bytes([0x93, 0x01, 0x00]) + msgpack.packb(msgpack.ExtType(Ext.DATETIME, msgpack.packb([2020, 13, 1, 0, 0, 0, 0, 0, None])))],
    "unhashable key": [bytes([0x93, 0x01, 0x00]) + b"\x81" + msgpack.packb(msgpack.ExtType(Ext.SET, msgpack.packb([1]))) + b"\x01"],
}


@pytest.mark.parametrize("frames", BAD_MESSAGES.values(), ids=BAD_MESSAGES.keys())
def test_malformed_messages_raise_decode_error_only(codec, frames):
    with pytest.raises(DecodeError):
        codec.decode(frames)


def test_random_bytes_never_raise_anything_but_decode_error(codec):
    rng = np.random.default_rng(1)
    valid = codec.encode({"a": (1, 2.5, "x"), "b": np.arange(4), "c": {1, 2}})
    header = bytes(valid[0])
    for _ in range(3000):
        mutated = bytearray(header)
        for position in rng.integers(0, len(mutated), size=rng.integers(1, 4)):
            mutated[position] = rng.integers(0, 256)
        cut = rng.integers(1, len(mutated) + 1)
        try:
            codec.decode([bytes(mutated[:cut]), *wire(valid[1:])])
        except DecodeError:
            pass


def test_a_list_of_a_float_and_a_numpy_complex_scalar_round_trips_without_a_warning():
    """The all-real fast check reads items as floats; a numpy complex scalar then warns, which
    must neither reach the user nor, under warnings-as-errors, break the send."""
    import subprocess
    import sys
    import warnings

    value = [1.0, np.complex128(1 + 2j), np.float32(2.5)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = Codec().decode([bytes(memoryview(frame).cast("B")) for frame in Codec().encode(value)])
    assert back == value and [type(item) for item in back] == [float, np.complex128, np.float32]
    script = ("import numpy as np; from wrapyfi_like.encoding import Codec; "
              "Codec().encode([1.0, np.complex64(1j)])")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")
