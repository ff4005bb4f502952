"""pyarrow Array, ChunkedArray, RecordBatch and Table as Arrow IPC streams in out-of-band frames.

Every kind travels as one IPC stream (see :mod:`arrow_ipc`), so nested, struct, list and
dictionary types, nulls, slices and schema metadata all survive, and the received object's
buffers are the received frame. An Array is sent as a one-column batch, a ChunkedArray as a
one-column table with one batch per chunk (its chunking is kept).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from wrapyfi_like.exceptions import DecodeError
from wrapyfi_like.plugins.arrow_ipc import read_stream, write_stream
from wrapyfi_like.utils.core_utils import Plugin, PluginRegistrar

_COLUMN = "values"


class _ArrowPlugin(Plugin):
    """Shared decode checks; each subclass converts one pyarrow kind to and from a table."""

    codec_id: str

    def encode(self, obj: Any, *args: Any, **kwargs: Any) -> tuple[bool, dict]:
        batches, schema = self.to_batches(obj)
        return True, {"__wrapyfi__": (self.codec_id, write_stream(batches, schema))}

    def decode(self, obj_type: str, obj_full: tuple, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        if len(obj_full) != 2:
            raise DecodeError(f"a {self.codec_id} payload has 2 fields, got {len(obj_full)}")
        return True, self.from_batches(*read_stream(obj_full[1]))

    def to_batches(self, obj: Any) -> tuple[list[pa.RecordBatch], pa.Schema]:
        raise NotImplementedError

    def from_batches(self, schema: pa.Schema, batches: list[pa.RecordBatch]) -> Any:
        raise NotImplementedError


def _single_column(schema: pa.Schema, codec_id: str) -> pa.DataType:
    if len(schema) != 1:
        raise DecodeError(f"a {codec_id} stream must hold one column, got {len(schema)}")
    return schema.field(0).type


def _single_batch(batches: list[pa.RecordBatch], codec_id: str) -> pa.RecordBatch:
    if len(batches) != 1:
        raise DecodeError(f"a {codec_id} stream must hold one batch, got {len(batches)}")
    return batches[0]


@PluginRegistrar.register(types=(pa.Array,))
class ArrowArray(_ArrowPlugin):
    codec_id = "pyarrow.Array"

    def to_batches(self, obj: pa.Array) -> tuple[list[pa.RecordBatch], pa.Schema]:
        batch = pa.RecordBatch.from_arrays([obj], names=[_COLUMN])
        return [batch], batch.schema

    def from_batches(self, schema: pa.Schema, batches: list[pa.RecordBatch]) -> pa.Array:
        _single_column(schema, self.codec_id)
        return _single_batch(batches, self.codec_id).column(0)


@PluginRegistrar.register(types=(pa.ChunkedArray,))
class ArrowChunkedArray(_ArrowPlugin):
    codec_id = "pyarrow.ChunkedArray"

    def to_batches(self, obj: pa.ChunkedArray) -> tuple[list[pa.RecordBatch], pa.Schema]:
        schema = pa.schema([pa.field(_COLUMN, obj.type)])
        return [pa.RecordBatch.from_arrays([chunk], schema=schema) for chunk in obj.chunks], schema

    def from_batches(self, schema: pa.Schema, batches: list[pa.RecordBatch]) -> pa.ChunkedArray:
        value_type = _single_column(schema, self.codec_id)
        return pa.chunked_array([batch.column(0) for batch in batches], type=value_type)


@PluginRegistrar.register(types=(pa.RecordBatch,))
class ArrowRecordBatch(_ArrowPlugin):
    codec_id = "pyarrow.RecordBatch"

    def to_batches(self, obj: pa.RecordBatch) -> tuple[list[pa.RecordBatch], pa.Schema]:
        return [obj], obj.schema

    def from_batches(self, schema: pa.Schema, batches: list[pa.RecordBatch]) -> pa.RecordBatch:
        return _single_batch(batches, self.codec_id)


@PluginRegistrar.register(types=(pa.Table,))
class ArrowTable(_ArrowPlugin):
    codec_id = "pyarrow.Table"

    def to_batches(self, obj: pa.Table) -> tuple[list[pa.RecordBatch], pa.Schema]:
        return obj.to_batches(), obj.schema

    def from_batches(self, schema: pa.Schema, batches: list[pa.RecordBatch]) -> pa.Table:
        return pa.Table.from_batches(batches, schema=schema)
