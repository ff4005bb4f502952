"""The array metadata the codec keeps between messages (a stream's arrays keep dtype and shape):
what is kept never stands in for a check that depends on the message itself, is never confused
between arrays that differ, and stays bounded whatever peers send."""

import msgpack
import numpy as np
import pytest

from wrapyfi_like.encoding import Codec
from wrapyfi_like.encoding import codec as codec_module
from wrapyfi_like.exceptions import DecodeError
from wrapyfi_like.utils.core_utils import Plugin, PluginRegistrar

pytestmark = pytest.mark.timeout(60)

CODEC = Codec()


def _array_message(meta: list, buffers: list) -> list:
    """A message whose value is one array extension with metadata ``[index, dtype, shape, fortran]``."""
    ext = msgpack.packb(msgpack.ExtType(int(codec_module.Ext.NDARRAY), msgpack.packb(meta)))
    return [b"\x93\x01" + msgpack.packb(len(buffers)) + ext, *buffers]


def test_a_known_layout_still_checks_each_message_buffer():
    good = _array_message([0, "<f4", [4], False], [bytearray(16)])
    assert CODEC.decode(good).shape == (4,)  # now kept
    with pytest.raises(DecodeError, match="needs 16 bytes, frame has 12"):
        CODEC.decode(_array_message([0, "<f4", [4], False], [bytearray(12)]))
    with pytest.raises(DecodeError, match="buffer index 1 out of range"):
        CODEC.decode(_array_message([1, "<f4", [4], False], [bytearray(16), bytearray(16)])[:-1])
    assert CODEC.decode(_array_message([1, "<f4", [4], False], [bytearray(4), bytearray(16)])).shape == (4,)


def test_refused_metadata_is_refused_every_time():
    for _ in range(3):
        with pytest.raises(DecodeError, match="not allowed on the wire|bad dtype"):
            CODEC.decode(_array_message([0, "|O8", [1], False], [bytearray(8)]))


def test_arrays_that_differ_in_any_way_are_never_confused():
    values = [np.arange(6, dtype=np.float32), np.arange(6, dtype=np.int32), np.arange(6, dtype=">f4"),
              np.arange(6, dtype=np.float32).reshape(2, 3), np.asfortranarray(np.arange(6.0).reshape(2, 3)),
              np.arange(6, dtype=np.float32).reshape(3, 2), np.arange(6, dtype=np.float32)[::2]]
    for _ in range(2):  # the second round meets kept metadata on both sides
        for value in values:
            for message in (value, [np.zeros(3, np.uint8), value], (value, value.copy())):
                decoded = CODEC.decode(CODEC.encode(message))
                arrays = [decoded] if isinstance(decoded, np.ndarray) else list(decoded)
                for sent, got in zip([message] if isinstance(message, np.ndarray) else message, arrays):
                    assert got.dtype == sent.dtype and got.shape == sent.shape
                    np.testing.assert_array_equal(got, sent)
                    assert got.flags.f_contiguous == (sent.ndim > 1 and sent.flags.f_contiguous
                                                      and not sent.flags.c_contiguous) or got.flags.c_contiguous


def test_memoryviews_that_differ_in_any_way_are_never_confused():
    views = [memoryview(np.arange(6.0)), memoryview(np.arange(6.0).reshape(2, 3)), memoryview(b"abcdef"),
             memoryview(np.arange(6, dtype=np.int16)), memoryview(b"abcdefgh")[::2]]
    for _ in range(2):  # the second round meets kept metadata on both sides
        for view in views:
            for message in (view, [b"x", view], (view, view)):
                decoded = CODEC.decode(CODEC.encode(message))
                for sent, got in zip([message] if isinstance(message, memoryview) else message, [decoded]
                                     if isinstance(message, memoryview) else decoded):
                    assert bytes(got) == bytes(sent)
                    if isinstance(sent, memoryview):
                        assert (got.format, got.shape) == (sent.format, sent.shape)


def test_what_is_kept_stays_bounded_whatever_peers_send():
    for length in range(3 * codec_module.MAX_KEPT_LAYOUTS):
        CODEC.decode(_array_message([0, "|u1", [length], False], [bytearray(length)]))
        CODEC.encode(np.zeros(length, np.uint8))
        CODEC.encode(memoryview(bytes(length)))
    assert len(codec_module._ARRAY_LAYOUTS) <= codec_module.MAX_KEPT_LAYOUTS
    assert len(codec_module._ARRAY_METADATA) <= codec_module.MAX_KEPT_LAYOUTS
    assert len(codec_module._VIEW_METADATA) <= codec_module.MAX_KEPT_LAYOUTS


def test_long_metadata_is_decoded_but_not_kept(monkeypatch):
    monkeypatch.setattr(codec_module, "MAX_KEPT_METADATA", 8)
    meta = [0, "<f8", [2, 2], False]  # 12 bytes
    assert CODEC.decode(_array_message(meta, [bytearray(32)])).shape == (2, 2)
    assert msgpack.packb(meta) not in codec_module._ARRAY_LAYOUTS


def test_a_known_byte_view_still_checks_each_message_buffer():
    view = [0, "B", [16]]
    ext = msgpack.packb(msgpack.ExtType(int(codec_module.Ext.MEMORYVIEW), msgpack.packb(view)))
    for _ in range(2):  # the second time meets the kept metadata
        assert CODEC.decode([b"\x93\x01\x01" + ext, bytearray(range(16))]).tobytes() == bytes(range(16))
    with pytest.raises(DecodeError):  # 12 bytes are no view of 16
        CODEC.decode([b"\x93\x01\x01" + ext, bytearray(12)])
    for _ in range(2):
        assert len(codec_module._BYTE_VIEWS) <= codec_module.MAX_KEPT_LAYOUTS
        assert CODEC.decode(CODEC.encode(memoryview(np.arange(4.0)))).tolist() == [0.0, 1.0, 2.0, 3.0]


class _Raw:
    """A value whose plugin returns the fields it is given after its codec id (a tensor's shape:
    raw bytes, then plain metadata)."""

    def __init__(self, fields):
        self.fields = fields


@PluginRegistrar.register(types=(_Raw,))
class _RawPlugin(Plugin):
    codec_id = "tests.kept.Raw"

    def encode(self, obj, *args, **kwargs):
        return True, {"__wrapyfi__": (self.codec_id, *obj.fields)}

    def decode(self, obj_type, obj_full, *args, **kwargs):
        return True, _Raw(list(obj_full[1:]))


@pytest.mark.parametrize("fields", [
    [memoryview(b"r" * 16), "float32", [2, 2], "cpu", False, None, 1.5],
    [memoryview(np.arange(4.0)), "float64", [4], "cpu", True],
    [memoryview(b"r" * 16), "float32", [4, 2 ** 70], "cpu", False],  # beyond 64 bits: the general path
    [memoryview(b"r" * 16), "float32", (2, 2), {"device": "cpu"}],  # not flat: the general path
], ids=["flat", "array-view", "big-int", "nested"])
def test_plugin_byte_views_with_flat_metadata_encode_as_the_general_path_does(monkeypatch, fields):
    codec = Codec()
    assert codec_module._flat_metadata(["id", *fields], 2) == (not isinstance(fields[2], tuple))
    fast = codec.encode([_Raw(fields), _Raw(fields)])
    monkeypatch.setattr(codec_module, "_flat_metadata", lambda fields, start: False)
    general = codec.encode([_Raw(fields), _Raw(fields)])
    assert fast[0] == general[0] and [bytes(b) for b in fast[1:]] == [bytes(b) for b in general[1:]]
    for got in codec.decode(fast):
        assert bytes(got.fields[0]) == bytes(fields[0]) and got.fields[1:] == list(fields[1:])


LONE_ARRAYS = [np.arange(256, dtype=np.float32), np.asfortranarray(np.arange(6.0).reshape(2, 3)),
               np.arange(10)[::2], np.array(True), np.zeros(0), np.arange(3, dtype=">i4"),
               np.array(["ab"], dtype="U2"), np.arange(3).astype("M8[s]"), np.arange(24, dtype=np.uint8).reshape(2, 3, 4)]


class _Unrelated:
    pass


def test_a_message_that_is_one_array_has_the_bytes_of_any_other_message():
    general = Codec(inline={_Unrelated: (lambda value: 0, lambda payload: _Unrelated())})  # takes the general path
    for _ in range(2):  # the second round meets kept metadata and headers on both sides
        for value in LONE_ARRAYS:
            frames = CODEC.encode(value)
            assert [bytes(frame) for frame in frames] == [bytes(frame) for frame in general.encode(value)]
            for received in ([bytes(frame) for frame in frames], [memoryview(bytearray(frame)) for frame in frames]):
                decoded = CODEC.decode(received)
                assert decoded.dtype == value.dtype and decoded.shape == value.shape
                np.testing.assert_array_equal(decoded, value)


def test_a_message_that_is_one_array_is_decoded_without_a_parse_once_its_metadata_is_known(monkeypatch):
    value = np.arange(256, dtype=np.float32)
    frames = CODEC.encode(value)
    CODEC.decode(frames)  # its metadata is now known

    def no_parse(*args, **kwargs):
        raise AssertionError("parsed")

    monkeypatch.setattr(codec_module.msgpack, "unpackb", no_parse)
    np.testing.assert_array_equal(CODEC.decode([frames[0], bytearray(frames[1])]), value)
    with pytest.raises(DecodeError, match="needs 1024 bytes, frame has 1020"):  # each message's frame is still checked
        CODEC.decode([frames[0], bytearray(1020)])
    with pytest.raises(DecodeError, match="not bytes-like"):
        CODEC.decode([frames[0], 1024])
    with pytest.raises(DecodeError, match="parsed"):  # anything else takes the general path
        CODEC.decode([frames[0], frames[1], frames[1]])
    with pytest.raises(DecodeError, match="parsed"):
        CODEC.decode([bytes(frames[0]) + b"\xc0", frames[1]])


def test_a_header_like_one_array_with_unknown_metadata_is_checked_in_full():
    shape = [7, 3]  # metadata no other test sends
    meta = msgpack.packb([0, "<f8", shape, False])
    header = b"\x93\x01\x01\xc7" + bytes([len(meta), 9]) + meta
    assert CODEC.decode([header, bytearray(7 * 3 * 8)]).shape == (7, 3)
    bad = msgpack.packb([0, "|O8", [7, 3], False])
    with pytest.raises(DecodeError, match="not allowed on the wire|bad dtype"):
        CODEC.decode([b"\x93\x01\x01\xc7" + bytes([len(bad), 9]) + bad, bytearray(7 * 3 * 8)])
    with pytest.raises(DecodeError, match="buffer index 1 out of range"):
        other = msgpack.packb([1, "<f8", shape, False])
        CODEC.decode([b"\x93\x01\x01\xc7" + bytes([len(other), 9]) + other, bytearray(7 * 3 * 8)])


def test_kept_metadata_of_a_second_array_never_makes_a_lone_array():
    first, second = np.zeros((5, 3)), np.ones((5, 3))
    CODEC.decode(CODEC.encode([first, second]))  # both metadata kept: buffer index 0 and 1, of one size
    meta = msgpack.packb([1, "<f8", [5, 3], False])
    with pytest.raises(DecodeError, match="buffer index 1 out of range"):
        CODEC.decode([b"\x93\x01\x01\xc7" + bytes([len(meta), 9]) + meta, bytearray(5 * 3 * 8)])
