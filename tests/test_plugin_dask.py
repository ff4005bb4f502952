"""The dask plugins: arrays block by block, DataFrames and Series partition by partition."""

import numpy as np
import pandas as pd
import pytest

dask = pytest.importorskip("dask")
import dask.array as da  # noqa: E402
import dask.dataframe as dd  # noqa: E402

from scientific_samples import decode_with_fields, payload  # noqa: E402
from wrapyfi_like.encoding import Codec  # noqa: E402
from wrapyfi_like.exceptions import DecodeError, EncodeError  # noqa: E402
from wrapyfi_like.plugins import dask_data  # noqa: E402
from wrapyfi_like.testing import PluginConformance, round_trip, wire_copy  # noqa: E402


def _assert_array_equal(expected, actual):
    assert isinstance(actual, da.Array)
    assert actual.chunks == expected.chunks and actual.dtype == expected.dtype
    computed = actual.compute()
    assert computed.dtype == expected.dtype
    np.testing.assert_array_equal(computed, expected.compute())


def _assert_frame_equal(expected, actual):
    assert type(actual) is type(expected)
    assert actual.npartitions == expected.npartitions and actual.divisions == expected.divisions
    for got, want in zip(actual.to_delayed(), expected.to_delayed()):  # partition by partition
        check = pd.testing.assert_frame_equal if isinstance(expected, dd.DataFrame) else pd.testing.assert_series_equal
        check(got.compute(), want.compute())


class TestArrayConformance(PluginConformance):
    plugin = dask_data.DaskArray

    def samples(self):
        return {
            "random 2-d": da.random.default_rng(0).random((10, 12), chunks=(4, 5)),
            "big-endian ints": da.from_array(np.arange(10, dtype=">i2"), chunks=3),
            "0-d": da.from_array(np.float32(1.5)),
            "datetimes": da.from_array(np.arange(6).astype("M8[s]"), chunks=4),
            "after boolean indexing (unknown chunk sizes)": (lambda x: x[x > 4])(da.arange(10, chunks=4)),
        }

    def assert_equal(self, expected, actual):
        if any(np.isnan(size) for sizes in expected.chunks for size in sizes):
            expected = expected.compute_chunk_sizes()
        _assert_array_equal(expected, actual)

    def empty_sample(self):
        return da.zeros((0, 4), chunks=2)

    def non_contiguous_sample(self):
        return da.from_array(np.arange(200.0).reshape(10, 20)[::2, ::-3], chunks=(2, 3)).T

    def read_only_sample(self):
        values = np.arange(12).reshape(3, 4)
        values.flags.writeable = False
        return da.from_array(values, chunks=2)

    def large_sample(self):
        return da.ones((1000, 1000), chunks=(250, 500))


class TestDataFrameConformance(PluginConformance):
    plugin = dask_data.DaskDataFrame

    def samples(self):
        frame = pd.DataFrame({"legs": [4, 2, 0, 4, 6], "wings": [0.0, 2.0, 0.0, 0.5, 4.0],
                              "when": pd.date_range("2024-01-01", periods=5, tz="UTC")})
        return {
            "frame, known divisions": dd.from_pandas(frame, npartitions=2),
            "datetime index": dd.from_pandas(frame.set_index("when"), npartitions=3),
            "series": dd.from_pandas(pd.Series([1, 2, 3, 4, 5, 6, 7], name="n"), npartitions=1),
            "unknown divisions": dd.from_pandas(frame, npartitions=2).clear_divisions(),
        }

    def assert_equal(self, expected, actual):
        _assert_frame_equal(expected, actual)

    def empty_sample(self):
        return dd.from_pandas(pd.DataFrame({"a": np.zeros(0)}), npartitions=1)

    def non_contiguous_sample(self):
        values = np.arange(60.0).reshape(10, 6)[::2, ::3]
        return dd.from_pandas(pd.DataFrame(values, columns=["x", "y"]), npartitions=2)

    def read_only_sample(self):
        values = np.arange(10.0)
        values.flags.writeable = False
        return dd.from_pandas(pd.DataFrame({"v": values}), npartitions=2)

    def large_sample(self):
        return dd.from_pandas(pd.DataFrame({"v": np.ones(600_000)}), npartitions=3)


def test_wrapyfi_example_values_arrive_with_their_chunks_and_partitions():
    frame = pd.DataFrame({"num_legs": [4, 2, 0, 4], "num_wings": [0, 2, 0, 0]}, index=[10, 3, 7, 1])
    message = {"dask_dataframe": dd.from_pandas(frame, npartitions=2),
               "dask_array": da.random.random((1000, 1000), chunks=(250, 250)),
               "dask_series": dd.from_pandas(pd.Series([1, 2, 3, 4, 5, 6, 7]), npartitions=1)}
    received = round_trip(Codec(), message)
    _assert_frame_equal(message["dask_dataframe"], received["dask_dataframe"])
    _assert_frame_equal(message["dask_series"], received["dask_series"])
    _assert_array_equal(message["dask_array"], received["dask_array"])


def test_blocks_travel_separately_and_the_received_array_is_built_on_the_frames():
    array = da.arange(1000, chunks=250)
    codec = Codec()
    frames = codec.encode(array)
    assert len(frames) == 5 and all(memoryview(frame).nbytes == 2000 for frame in frames[1:])
    received_frames = wire_copy(frames)
    received = codec.decode(received_frames)
    received_frames[3][:8] = np.int64(-1).tobytes()
    assert received[500].compute() == -1  # the third block is the third received frame


def test_graph_is_computed_once_for_all_blocks():
    calls = []

    def block(x):
        calls.append(1)
        return x + 1

    array = da.ones(8, chunks=2).map_blocks(block)
    calls.clear()  # map_blocks may call the function on an empty array to learn the dtype
    Codec().encode(array)
    assert len(calls) == 4


def test_blocks_that_do_not_match_the_chunks_are_refused():
    array = da.arange(6, chunks=3)
    fields = payload(array)
    fields[1] = [[3, 2]]
    fields[3] = [np.arange(3), np.arange(3)]
    with pytest.raises(DecodeError, match="block"):
        decode_with_fields(array, fields)
    fields = payload(array)
    fields[3] = [np.arange(3), np.arange(3.0)]
    with pytest.raises(DecodeError, match="dtype"):
        decode_with_fields(array, fields)


def test_block_and_partition_counts_are_bounded_on_both_sides(monkeypatch):
    monkeypatch.setattr(dask_data, "MAX_BLOCKS", 3)
    with pytest.raises(EncodeError, match="MAX_BLOCKS"):
        Codec().encode(da.ones(8, chunks=2))
    array = da.ones(3, chunks=1)
    fields = payload(array)
    fields[1], fields[3] = [[1, 1, 1, 1]], [np.ones(1)] * 4
    with pytest.raises(DecodeError, match="MAX_BLOCKS"):
        decode_with_fields(array, fields)
    frame = dd.from_pandas(pd.DataFrame({"a": range(8)}), npartitions=4)
    with pytest.raises(EncodeError, match="MAX_BLOCKS"):
        Codec().encode(frame)


def test_unsorted_or_miscounted_divisions_are_refused():
    frame = dd.from_pandas(pd.DataFrame({"a": range(8)}), npartitions=2)
    fields = payload(frame)
    fields[2] = pd.Series([0, 7, 4])
    with pytest.raises(DecodeError, match="sorted"):
        decode_with_fields(frame, fields)
    fields[2] = pd.Series([0, 7])
    with pytest.raises(DecodeError, match="divisions"):
        decode_with_fields(frame, fields)


def test_blocks_of_other_array_types_are_an_encode_error():
    pint = pytest.importorskip("pint")
    units = pint.get_application_registry()
    array = da.arange(4, chunks=2).map_blocks(lambda block, meter=units.meter: block * meter, meta=np.empty(0, np.int64))
    with pytest.raises(EncodeError, match="pint.*units"):
        Codec().encode(array)
