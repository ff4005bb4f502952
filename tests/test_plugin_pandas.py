"""The pandas plugin: every common dtype, index kind and column label survives exactly."""

import datetime as dt

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

from pandas.testing import assert_frame_equal, assert_series_equal  # noqa: E402

from wrapyfi_like.encoding import Codec  # noqa: E402
from wrapyfi_like.plugins import pandas_data  # noqa: E402
from wrapyfi_like.testing import PluginConformance, round_trip  # noqa: E402
from wrapyfi_like.testing.conformance import wire_copy  # noqa: E402


def _all_dtypes(rows=4):
    return pd.DataFrame({
        "int64": np.arange(rows, dtype=np.int64),
        "int8": np.arange(rows, dtype=np.int8),
        "uint32": np.arange(rows, dtype=np.uint32),
        "float64": np.linspace(0, 1, rows),
        "float32": np.full(rows, np.nan, dtype=np.float32),
        "bool": np.arange(rows) % 2 == 0,
        "str": ["a", "b", None, "d"][:rows],
        "object_str": pd.Series(["x", "y", "z", "w"][:rows], dtype=object),
        "Int64": pd.array([1, None, 3, 4][:rows], dtype="Int64"),
        "boolean": pd.array([True, None, False, True][:rows], dtype="boolean"),
        "string": pd.array(["a", None, "c", "d"][:rows], dtype="string"),
        "Float64": pd.array([1.5, None, 2.0, 3.0][:rows], dtype="Float64"),
        "category": pd.Categorical(["a", "b", "a", "c"][:rows]),
        "ordered": pd.Categorical(["a", "b", "a", "c"][:rows], categories=["c", "b", "a", "z"], ordered=True),
        "datetime": pd.date_range("2024-01-01", periods=rows, freq="h"),
        "datetime_tz": pd.date_range("2024-03-31 00:30", periods=rows, freq="h", tz="Europe/Paris"),
        "datetime_ns": pd.date_range("2024-01-01", periods=rows, freq="D").astype("datetime64[ns]"),
        "timedelta": pd.to_timedelta(np.arange(rows), unit="s"),
        "dates": [dt.date(2024, 1, day + 1) for day in range(rows)],
    })


class TestDataFrameConformance(PluginConformance):
    plugin = pandas_data.PandasDataFrame

    def samples(self):
        index = pd.MultiIndex.from_arrays(
            [pd.Index(["a", "a", "b"], dtype=object), [1, 2, 1],
             pd.date_range("2024", periods=3, tz="UTC")], names=["key", 0, ("t", 1)])
        return {
            "all_dtypes": _all_dtypes(),
            "int_columns": pd.DataFrame({0: [1, 2], 1: [3, 4]}),
            "float_and_none_columns": pd.DataFrame({0.5: [1, 2], None: [3, 4]}),
            "mixed_columns": pd.DataFrame({0: [1, 2], "a": [3, 4], (1, "b"): [5, 6]}),
            "duplicate_columns": pd.DataFrame([[1, 2]], columns=["a", "a"]),
            "multiindex_columns": pd.DataFrame(
                [[1, 2]], columns=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["l0", None])),
            "timestamp_columns": pd.DataFrame([[1, 2]], columns=pd.date_range("2024", periods=2, tz="Asia/Tokyo")),
            "named_columns": pd.DataFrame({"a": [1]}).rename_axis(columns="cols"),
            "multiindex_rows": pd.DataFrame({"x": [1.0, 2.0, 3.0]}, index=index),
            "object_index": pd.DataFrame({"x": [1, 2]}, index=pd.Index(["p", "q"], dtype=object, name=5)),
            "string_index": pd.DataFrame({"x": [1, 2]}, index=pd.Index(["p", "q"], name="name")),
            "datetime_index_freq": pd.DataFrame({"x": [1, 2, 3]}, index=pd.date_range("2024", periods=3, freq="2D")),
            "timedelta_index": pd.DataFrame({"x": [1, 2]}, index=pd.to_timedelta([1, 2], unit="min")),
            "range_index_step": pd.DataFrame({"x": [1, 2]}, index=pd.RangeIndex(5, 9, 2, name="r")),
            "categorical_index": pd.DataFrame({"x": [1, 2]}, index=pd.CategoricalIndex(["u", "v"])),
            "plain_one_dtype": pd.DataFrame(np.arange(12.0).reshape(3, 4), columns=list("abcd")),
            "plain_mixed_dtypes": pd.DataFrame({
                "int8": np.arange(3, dtype=np.int8), "uint64": np.array([0, 1, 2**64 - 1], dtype=np.uint64),
                "float16": np.arange(3, dtype=np.float16), "float32": np.array([1, np.nan, 3], dtype=np.float32),
                "bool": [True, False, True],
                "datetime_ms": np.array(["2024-01-01T00:00:00.001", "NaT", "1969-12-31"], dtype="datetime64[ms]"),
                "timedelta_us": np.array([1, -2, 3], dtype="timedelta64[us]")}, index=pd.RangeIndex(10, 4, -2, name=("r", 1))),
            "no_columns": pd.DataFrame(index=pd.RangeIndex(3)),
            "object_ints_and_none": pd.DataFrame({"ids": pd.Series([1, None, 2**40], dtype=object)}),
        }

    def assert_equal(self, expected, actual):
        assert_frame_equal(actual, expected, check_freq=True, check_flags=True)

    def empty_sample(self):
        return pd.DataFrame({"a": pd.Series([], dtype="int64"), "b": pd.Series([], dtype=object)})

    def non_contiguous_sample(self):
        return pd.DataFrame(np.arange(40.0).reshape(8, 5)[:, ::2], columns=["a", "b", "c"]).iloc[::3]

    def read_only_sample(self):
        values = np.arange(12.0).reshape(4, 3)
        values.flags.writeable = False
        return pd.DataFrame(values, copy=False)

    def large_sample(self):
        return pd.DataFrame({"x": np.arange(2**19, dtype=np.float64), "y": np.ones(2**19, dtype=np.int32)})


class TestSeriesConformance(PluginConformance):
    plugin = pandas_data.PandasSeries

    def samples(self):
        return {
            "named": pd.Series([1, 2, 3], name="s"),
            "unnamed": pd.Series([1.5, None]),
            "tuple_name": pd.Series(["a", "b"], dtype=object, name=(1, "x")),
            "int_name": pd.Series(pd.Categorical(["a", "b"]), name=7),
            "tz": pd.Series(pd.date_range("2024", periods=2, tz="US/Eastern"), index=pd.Index(["p", "q"])),
        }

    def assert_equal(self, expected, actual):
        assert_series_equal(actual, expected, check_freq=True)

    def empty_sample(self):
        return pd.Series([], dtype="float32", name="empty")

    def non_contiguous_sample(self):
        return pd.Series(np.arange(20)[::3])


def _fields(obj):
    plugin = pandas_data.PandasSeries() if isinstance(obj, pd.Series) else pandas_data.PandasDataFrame()
    _, encoded = plugin.encode(obj)
    return plugin, encoded["__wrapyfi__"]


def _one_dtype_inserted_column_by_column():
    frame = pd.DataFrame(index=pd.RangeIndex(3))
    for name in "abc":
        frame[name] = np.arange(3.0)
    return frame


@pytest.mark.parametrize("frame, block_dtypes, has_stream", [
    (pd.DataFrame(np.arange(40000.0).reshape(200, 200), columns=[f"c{i}" for i in range(200)]), ["float64"], False),
    (_one_dtype_inserted_column_by_column(), ["float64"], False),
    (pd.DataFrame({"a": [1.0, 2.0], "i": [1, 2], "b": [3.0, 4.0], "t": pd.to_datetime(["2024-01-01", "2024-01-02"]),
                   "z": np.array([1j, 2], dtype=np.complex64)}), ["float64", "int64", "datetime64[us]", "complex64"],
     False),
    (pd.DataFrame({"a": [1.0, 2.0]}, index=pd.Index([3, 4])), ["float64"], True),
    (pd.DataFrame({"a": [1.0, 2.0], "o": pd.Series(["x", "y"], dtype=object)}), ["float64"], True),
    (pd.DataFrame({"a": [1.0, 2.0], "i": pd.array([1, None], dtype="Int64")}), ["float64"], True),
    (pd.DataFrame({"big_endian": np.array([1.0, 2.0], dtype=">f8")}), [">f8"], False),
    (pd.DataFrame(index=pd.RangeIndex(2)), [], False),
])
def test_numpy_columns_travel_as_one_raw_block_per_dtype(frame, block_dtypes, has_stream):
    """Numpy columns need no Arrow conversion: one 2-D buffer per dtype; only the other columns
    and a non-range index make an Arrow stream."""
    _, (_, layout, blocks, stream) = _fields(frame)
    assert [str(block.dtype) for block in blocks] == block_dtypes
    assert (stream is not None) == has_stream
    assert sorted(p for positions in layout["blocks"] for p in positions) == [
        i for i, dtype in enumerate(frame.dtypes) if str(dtype) in block_dtypes]
    assert_frame_equal(round_trip(Codec(), frame), frame)


def test_a_one_dtype_frame_is_sent_without_a_copy_and_received_in_place():
    frame = pd.DataFrame(np.arange(40000.0).reshape(200, 200), columns=[f"c{i}" for i in range(200)])
    _, (_, _, blocks, _) = _fields(frame)
    assert np.shares_memory(blocks[0], frame.to_numpy())
    codec = Codec()
    wire = wire_copy(codec.encode(frame))
    received = codec.decode(wire)
    assert_frame_equal(received, frame)
    assert any(np.shares_memory(received.to_numpy(), np.frombuffer(buffer, dtype=np.uint8)) for buffer in wire[1:])


def test_frame_received_from_read_only_buffers_is_writable():
    """A transport may hand over read-only frames (bytes); the blocks are then copied once."""
    codec = Codec()
    frame = pd.DataFrame({"a": [1.0, 2.0], "i": [1, 2]})
    received = codec.decode([bytes(memoryview(part).cast("B")) for part in codec.encode(frame)])
    received.loc[0, "a"] = 9.0
    received.loc[1, "i"] = 7
    assert received["a"].tolist() == [9.0, 2.0] and received["i"].tolist() == [1, 7]


def _hostile(frame, **changes):
    plugin, (codec_id, layout, blocks, stream) = _fields(frame)
    fields = {"layout": dict(layout), "arrays": list(blocks), "stream": stream}
    for key, value in changes.items():
        if key in fields:
            fields[key] = value
        else:
            fields["layout"][key] = value
    return plugin, (codec_id, fields["layout"], fields["arrays"], fields["stream"])


_PLAIN = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0], "i": [1, 2, 3]})


@pytest.mark.parametrize("changes, message", [
    ({"blocks": [[0, 1], [1]]}, "same column"),
    ({"blocks": [[0, 0], [2]]}, "same column"),
    ({"blocks": [[0, 1], [3]]}, "columns of the 3"),
    ({"blocks": [[0, 1], [2, 3]]}, "blocks hold 4 columns and the stream 0, the layout names 3"),
    ({"columns": {"range": [0, 2**62, 1], "name": None}}, "the layout names 4611686018427387904"),
    ({"blocks": [[0, -1], [2]]}, "columns of the 3"),
    ({"blocks": [[0, True], [2]]}, "lists of ints"),
    ({"blocks": [[0, 2**70], [2]]}, "columns of the 3"),
    ({"blocks": [[], [2]]}, "lists of ints"),
    ({"blocks": [[0, 1], "2"]}, "lists of ints"),
    ({"blocks": [[0, 1]]}, "one list of positions per block"),
    ({"blocks": [[0], [1, 2]]}, r"\(1, 3\) array"),
    ({"rows": {"range": [0, 2**62, 1], "name": None}}, r"array"),
    ({"rows": {"range": [0, 4, 1], "name": None}}, r"\(2, 4\) array"),
    ({"arrays": [np.zeros((2, 3), dtype="datetime64[D]"), np.zeros((1, 3), dtype=np.int64)]}, "datetime64"),
    ({"arrays": [np.zeros((2, 3), dtype="S2"), np.zeros((1, 3), dtype=np.int64)]}, "numpy number"),
    ({"arrays": [np.zeros(6), np.zeros((1, 3), dtype=np.int64)]}, "numpy number"),
    ({"arrays": [np.zeros((2, 3), dtype=">M8[us]"), np.zeros((1, 3), dtype=np.int64)]}, "numpy number"),
    ({"arrays": [[1.0, 2.0], np.zeros((1, 3), dtype=np.int64)]}, "numpy number"),
    ({"columns": {"range": [0, 4, 1], "name": None}}, "the stream 0, the layout names 4"),
    ({"rows": None}, "without a row range"),
])
def test_hostile_layouts_are_decode_errors(changes, message):
    """A header that does not fit its buffers is refused before pandas sees it (issue 16)."""
    from wrapyfi_like.exceptions import DecodeError

    plugin, fields = _hostile(_PLAIN, **changes)
    with pytest.raises(DecodeError, match=message):
        plugin.decode(fields[0], fields)


def test_old_three_field_payload_is_a_decode_error():
    from wrapyfi_like.exceptions import DecodeError

    plugin, fields = _fields(_PLAIN)
    with pytest.raises(DecodeError, match="4 fields, got 3"):
        plugin.decode(fields[0], fields[:3])


def test_stream_rows_must_match_the_row_range():
    from wrapyfi_like.exceptions import DecodeError

    frame = pd.DataFrame({"o": pd.Series(["x", "y"], dtype=object)})
    plugin, fields = _hostile(frame, rows={"range": [0, 3, 1], "name": None})
    with pytest.raises(DecodeError, match="rows"):
        plugin.decode(fields[0], fields)


def test_caller_frame_is_not_modified():
    frame = pd.DataFrame({0: [1, 2], "b": pd.Series(["x", "y"], dtype=object)}, index=pd.Index([3, 4], name="i"))
    before = frame.copy(deep=True)
    round_trip(Codec(), frame)
    assert_frame_equal(frame, before)


def test_received_frame_is_writable():
    received = round_trip(Codec(), pd.DataFrame({"a": [1.0, 2.0]}))
    received.loc[0, "a"] = 9.0
    assert received["a"].tolist() == [9.0, 2.0]


def test_object_column_of_mixed_types_raises_a_clear_error():
    from wrapyfi_like.exceptions import EncodeError

    with pytest.raises(EncodeError, match="PandasDataFrame"):
        Codec().encode(pd.DataFrame({"mixed": pd.Series([1, "a"], dtype=object)}))


def test_labels_keep_their_python_types():
    frame = pd.DataFrame([[1, 2, 3]], columns=[0, "a", (1, "b")])
    series = pd.Series([1], name=("sensor", 2))
    codec = Codec()
    received_columns = list(round_trip(codec, frame).columns)
    assert [(type(label), label) for label in received_columns] == [(int, 0), (str, "a"), (tuple, (1, "b"))]
    assert [type(part) for part in received_columns[2]] == [int, str]
    name = round_trip(codec, series).name
    assert name == ("sensor", 2) and [type(part) for part in name] == [str, int]
