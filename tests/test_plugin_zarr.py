"""The zarr plugins: an array's values and layout, rebuilt in memory; groups with their members."""

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")

from scientific_samples import decode_with_fields, payload  # noqa: E402
from wrapyfi_like.encoding import Codec  # noqa: E402
from wrapyfi_like.exceptions import DecodeError, EncodeError  # noqa: E402
from wrapyfi_like.plugins import zarr_data  # noqa: E402
from wrapyfi_like.testing import PluginConformance, round_trip  # noqa: E402

# zarr warns that fixed-length strings have no zarr v3 specification yet, on both sides
pytestmark = pytest.mark.filterwarnings("ignore::zarr.errors.UnstableSpecificationWarning")


def _assert_array_equal(expected, actual):
    assert isinstance(actual, zarr.Array) and isinstance(actual.store, zarr.storage.MemoryStore)
    assert (actual.shape, actual.chunks, actual.dtype) == (expected.shape, expected.chunks, expected.dtype)
    assert actual.metadata.zarr_format == expected.metadata.zarr_format
    assert dict(actual.attrs) == dict(expected.attrs)
    np.testing.assert_array_equal(np.asarray(actual.fill_value), np.asarray(expected.fill_value))
    values = actual[...]
    assert values.dtype == expected.dtype
    np.testing.assert_array_equal(values, expected[...])


def _assert_group_equal(expected, actual):
    assert isinstance(actual, zarr.Group) and dict(actual.attrs) == dict(expected.attrs)
    assert actual.metadata.zarr_format == expected.metadata.zarr_format
    want = dict(expected.members(max_depth=None))
    got = dict(actual.members(max_depth=None))
    assert sorted(got) == sorted(want)
    for path, member in want.items():
        if isinstance(member, zarr.Array):
            _assert_array_equal(member, got[path])
        else:
            assert isinstance(got[path], zarr.Group) and dict(got[path].attrs) == dict(member.attrs)


def _with_attrs(array, **attrs):
    array.attrs.update(attrs)
    return array


class TestArrayConformance(PluginConformance):
    plugin = zarr_data.ZarrArray

    def samples(self):
        return {
            "Wrapyfi's example": zarr.array(np.random.default_rng(0).random((10, 10)), chunks=(5, 5)),
            "int16 with attrs and a fill value": _with_attrs(
                zarr.create_array(store={}, shape=(7,), chunks=(3,), dtype="i2", fill_value=-1), units="mm"),
            "partly written": (lambda a: (a.__setitem__(slice(0, 2), 5), a)[1])(
                zarr.create_array(store={}, shape=(6,), chunks=(2,), dtype="f4", fill_value=np.nan)),
            "0-d": zarr.array(np.float64(3.0)),
            "strings": zarr.array(np.array(["ab", "c"])),
            "zarr format 2": zarr.create_array(store={}, shape=(4,), chunks=(2,), dtype="u1", zarr_format=2),
        }

    def assert_equal(self, expected, actual):
        _assert_array_equal(expected, actual)

    def empty_sample(self):
        return zarr.array(np.zeros((0, 3)))

    def non_contiguous_sample(self):
        return zarr.array(np.arange(100).reshape(10, 10)[::3, ::-2], chunks=(2, 2))

    def read_only_sample(self):
        source = zarr.array(np.arange(20.0), chunks=(8,))
        return zarr.open_array(source.store, mode="r")

    def large_sample(self):
        return zarr.array(np.ones(600_000), chunks=(100_000,))


class TestGroupConformance(PluginConformance):
    plugin = zarr_data.ZarrGroup

    def samples(self):
        group = zarr.group(attributes={"title": "example"})
        group.create_array("dataset1", data=np.random.default_rng(0).integers(0, 100, 50), chunks=(10,))
        group.create_array("dataset2", data=np.random.default_rng(1).random(100), chunks=(10,))
        sub = group.create_group("sub", attributes={"level": 1})
        sub.create_array("deep", data=np.arange(3, dtype="i2"), chunks=(2,), attributes={"a": [1, 2]})
        return {"nested": group, "empty": zarr.group(), "format 2": zarr.group(zarr_format=2)}

    def assert_equal(self, expected, actual):
        _assert_group_equal(expected, actual)

    def empty_sample(self):
        group = zarr.group()
        group.create_array("nothing", shape=(0,), dtype="f8", chunks=(1,))
        return group

    def non_contiguous_sample(self):
        group = zarr.group()
        group.create_array("view", data=np.arange(30.0).reshape(5, 6)[::2, ::-1], chunks=(2, 2))
        return group

    def read_only_sample(self):
        group = zarr.group()
        group.create_array("a", data=np.arange(4), chunks=(2,))
        return zarr.open_group(group.store, mode="r")

    def large_sample(self):
        group = zarr.group()
        group.create_array("big", data=np.ones(600_000), chunks=(100_000,))
        return group


def test_an_array_backed_by_files_arrives_as_an_in_memory_copy(tmp_path):
    on_disk = zarr.create_array(store=str(tmp_path / "data.zarr"), shape=(5,), chunks=(2,), dtype="i4")
    on_disk[...] = np.arange(5)
    received = round_trip(Codec(), on_disk)
    assert isinstance(received.store, zarr.storage.MemoryStore)
    received[0] = 99
    assert on_disk[0] == 0 and received[...].tolist() == [99, 1, 2, 3, 4]


def test_compressors_are_not_taken_from_the_sender():
    array = zarr.create_array(store={}, shape=(4,), chunks=(2,), dtype="f8", compressors=None)
    fields = payload(array)
    assert not any("compress" in repr(field) for field in fields[1][1:])
    received = round_trip(Codec(), array)
    assert received.compressors != array.compressors  # the receiver's default codecs


def test_values_that_do_not_match_the_shape_are_refused():
    array = zarr.array(np.arange(6), chunks=(2,))
    fields = payload(array)
    fields[1][1] = [5]
    with pytest.raises(DecodeError, match="shape"):
        decode_with_fields(array, fields)


def test_chunk_and_member_counts_are_bounded_on_both_sides(monkeypatch):
    monkeypatch.setattr(zarr_data, "MAX_CHUNKS", 3)
    array = zarr.array(np.arange(8), chunks=(2,))
    with pytest.raises(EncodeError, match="MAX_CHUNKS"):
        Codec().encode(array)
    fields = ["zarr.Array", [np.arange(8), [8], [2], 0, {}, 3]]
    with pytest.raises(DecodeError, match="MAX_CHUNKS"):
        decode_with_fields(zarr.array(np.arange(2), chunks=(2,)), fields)
    monkeypatch.setattr(zarr_data, "MAX_MEMBERS", 1)
    group = zarr.group()
    group.create_group("a")
    group.create_group("b")
    with pytest.raises(EncodeError, match="MAX_MEMBERS"):
        Codec().encode(group)
    with pytest.raises(DecodeError, match="MAX_MEMBERS"):
        decode_with_fields(zarr.group(), ["zarr.Group", [{}, 3], [["a", {}, None], ["b", {}, None]]])
