"""The pyarrow plugins: Array, ChunkedArray, RecordBatch and Table, nested types, zero-copy receive."""

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")

from wrapyfi_like.encoding import Codec  # noqa: E402
from wrapyfi_like.plugins import pyarrow_data  # noqa: E402
from wrapyfi_like.testing import PluginConformance, wire_copy  # noqa: E402


def _nested_arrays():
    return {
        "int64": pa.array([1, None, 3], type=pa.int64()),
        "float16": pa.array(np.array([0.5, 1.5], dtype=np.float16)),
        "string": pa.array(["a", None, "ccc"]),
        "large_binary": pa.array([b"\x00\xff", b""], type=pa.large_binary()),
        "list": pa.array([[1, 2], None, []], type=pa.list_(pa.int32())),
        "struct": pa.array([{"x": 1, "y": "a"}, {"x": None, "y": "b"}]),
        "dictionary": pa.array(["red", "green", "red", None]).dictionary_encode(),
        "map": pa.array([[("k", 1)], []], type=pa.map_(pa.string(), pa.int64())),
        "timestamp_tz": pa.array([0, 10**9], type=pa.timestamp("ns", tz="Europe/Paris")),
        "decimal": pa.array([1, 2], type=pa.decimal128(10, 2)),
        "nested_list_of_struct": pa.array([[{"a": [1.0]}], [{"a": None}]]),
    }


def _columns():
    """The nested arrays cut to one length, so they fit in one batch (slices are a case too)."""
    return {name: array.slice(0, 2) for name, array in _nested_arrays().items()}


def _assert_arrow_equal(expected, actual):
    assert type(actual) is type(expected)
    if hasattr(expected, "type"):
        assert actual.type == expected.type
    else:
        assert actual.schema.equals(expected.schema, check_metadata=True)
    assert actual.equals(expected)


class TestArrayConformance(PluginConformance):
    plugin = pyarrow_data.ArrowArray

    def samples(self):
        return _nested_arrays()

    def assert_equal(self, expected, actual):
        _assert_arrow_equal(expected, actual)

    def empty_sample(self):
        return pa.array([], type=pa.float64())

    def non_contiguous_sample(self):
        return pa.array([1, None, 3, 4, 5, None, 7]).slice(2, 4)

    def read_only_sample(self):
        values = np.arange(10, dtype=np.int32)
        values.flags.writeable = False
        return pa.array(values)

    def large_sample(self):
        return pa.array(np.arange(2**20, dtype=np.float64))


class TestChunkedArrayConformance(PluginConformance):
    plugin = pyarrow_data.ArrowChunkedArray

    def samples(self):
        return {"two_chunks": pa.chunked_array([[1, 2], [None, 4, 5]]),
                "nested": pa.chunked_array([_nested_arrays()["struct"]])}

    def assert_equal(self, expected, actual):
        _assert_arrow_equal(expected, actual)
        assert [len(chunk) for chunk in actual.chunks] == [len(chunk) for chunk in expected.chunks]

    def empty_sample(self):
        return pa.chunked_array([], type=pa.string())


class TestRecordBatchConformance(PluginConformance):
    plugin = pyarrow_data.ArrowRecordBatch

    def samples(self):
        return {"all_types": pa.RecordBatch.from_pydict(_columns(), metadata={b"origin": b"test"})}

    def assert_equal(self, expected, actual):
        _assert_arrow_equal(expected, actual)

    def empty_sample(self):
        return pa.RecordBatch.from_pydict({"a": pa.array([], type=pa.int8())})

    def non_contiguous_sample(self):
        return pa.RecordBatch.from_pydict({"a": list(range(10)), "b": [str(i) for i in range(10)]}).slice(3, 4)


class TestTableConformance(PluginConformance):
    plugin = pyarrow_data.ArrowTable

    def samples(self):
        table = pa.Table.from_pydict(_columns())
        return {
            "all_types": table.replace_schema_metadata({"k": "v"}),
            "multi_chunk": pa.concat_tables([table, table]),
        }

    def assert_equal(self, expected, actual):
        _assert_arrow_equal(expected, actual)

    def empty_sample(self):
        return pa.table({"a": pa.array([], type=pa.int64())})

    def large_sample(self):
        return pa.table({"x": np.arange(2**19, dtype=np.int64)})


def test_received_table_points_into_the_received_frame():
    codec = Codec()
    frames = wire_copy(codec.encode(pa.table({"x": np.arange(1000, dtype=np.int64)})))
    table = codec.decode(frames)
    (frame,) = [f for f in frames[1:] if len(f) > 8000]
    start = np.frombuffer(frame, dtype=np.uint8).ctypes.data
    data_address = table.column("x").chunk(0).buffers()[1].address
    assert start <= data_address < start + len(frame)


@pytest.mark.parametrize("version, safe", [
    ("13.0.0", False), ("14.0.0", False), ("0.17.1", False),
    ("14.0.1", True), ("14.0.2", True), ("25.0.1", True), ("15.0.0.dev123", True),
])
def test_pyarrow_older_than_14_0_1_is_refused(version, safe):
    """CVE-2023-47248: such versions unpickle while reading IPC, which the plugins do on receive."""
    from wrapyfi_like.plugins.arrow_ipc import check_pyarrow_version

    if safe:
        check_pyarrow_version(version)
    else:
        with pytest.raises(ImportError, match="CVE-2023-47248"):
            check_pyarrow_version(version)
