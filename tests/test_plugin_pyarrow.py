"""The pyarrow plugins: Array, ChunkedArray, RecordBatch and Table, nested types, zero-copy receive."""

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")

from wrapyfi_like.encoding import Codec  # noqa: E402
from wrapyfi_like.exceptions import DecodeError  # noqa: E402
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


def test_kept_schemas_never_confuse_tables_that_differ_only_in_their_schema():
    """A received schema is parsed once per distinct schema message (plugins/arrow_ipc.py): the
    same column bytes under another name, type or metadata must arrive with their own schema."""
    values = np.arange(4, dtype=np.int64)
    tables = [pa.table({"a": values}), pa.table({"b": values}), pa.table({"a": values}).replace_schema_metadata({"k": "v"}),
              pa.table({"a": pa.array(values, type=pa.timestamp("ns"))}), pa.table({"a": values, "c": values[::-1].copy()})]
    codec = Codec()
    for _ in range(2):  # the second round meets every schema kept
        for table in tables:
            _assert_arrow_equal(table, codec.decode(wire_copy(codec.encode(table))))


def test_streams_with_dictionaries_are_read_by_the_stream_reader():
    table = pa.table({"d": pa.array(["x", "y", "x"]).dictionary_encode(), "n": [1, 2, 3]})
    codec = Codec()
    for _ in range(2):
        _assert_arrow_equal(table, codec.decode(wire_copy(codec.encode(table))))


def _stream(*messages):
    return memoryview(b"".join(bytes(message) for message in messages) + b"\xff\xff\xff\xff\x00\x00\x00\x00")


def test_a_stream_that_lacks_its_dictionary_or_schema_is_refused():
    from wrapyfi_like.plugins.arrow_ipc import read_stream

    table = pa.table({"d": pa.array(["x", "y"]).dictionary_encode()})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    schema, dictionary, batch = list(pa.ipc.MessageReader.open_stream(sink.getvalue()))
    assert (schema.type, dictionary.type, batch.type) == ("schema", "dictionary", "record batch")
    for broken in (_stream(schema.serialize(), batch.serialize()), _stream(batch.serialize()), _stream()):
        with pytest.raises(DecodeError, match="corrupt Arrow IPC stream"):
            read_stream(broken)


def test_kept_schemas_stay_bounded_whatever_peers_send(monkeypatch):
    from wrapyfi_like.plugins import arrow_ipc

    monkeypatch.setattr(arrow_ipc, "MAX_KEPT_SCHEMA_BYTES", 2048)
    codec = Codec()
    for count in range(3 * arrow_ipc.MAX_KEPT_SCHEMAS):
        table = pa.table({f"c{index}": [index] for index in range(count + 1)})
        _assert_arrow_equal(table, codec.decode(wire_copy(codec.encode(table))))
        assert len(arrow_ipc._SCHEMAS) <= arrow_ipc.MAX_KEPT_SCHEMAS
    assert all(len(key) <= 2048 for key in arrow_ipc._SCHEMAS)
