"""Arrow IPC streams: the byte format shared by the pyarrow and pandas plugins.

Writing a stream copies the column data once into one contiguous buffer, which then travels as a
single out-of-band frame. Reading wraps the received frame with ``pa.py_buffer``, so every
column of the result points into that frame: no copy on receive.

The received bytes are untrusted. A stream must end with Arrow's end-of-stream marker (otherwise
a stream cut at a message boundary would read as a shorter, valid table), and the result is
validated in full, so a corrupt offset or length raises :class:`DecodeError` here instead of
crashing later. pyarrow before 14.0.1 unpickles extension-type data while reading IPC
(CVE-2023-47248), so with such a version this module refuses to load and the plugins that read
streams stay unavailable (their failure is listed by ``wrapyfi-like plugins``).
"""

from __future__ import annotations

import re
from typing import Any, Optional

import pyarrow as pa

from wrapyfi_like.exceptions import DecodeError

_END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"
SAFE_PYARROW = (14, 0, 1)


def check_pyarrow_version(version: str) -> None:
    """Raise ImportError for a pyarrow older than :data:`SAFE_PYARROW` (see the module docstring)."""
    numbers = tuple(int(part) for part in re.findall(r"\d+", version)[:3])
    if numbers < SAFE_PYARROW:
        raise ImportError(
            f"pyarrow {version} unpickles data while reading IPC streams (CVE-2023-47248); "
            f"the Arrow plugins need pyarrow>=14.0.1: pip install -U 'pyarrow>=14.0.1'"
        )


check_pyarrow_version(pa.__version__)


def write_stream(batches: list[pa.RecordBatch], schema: pa.Schema) -> memoryview:
    """One IPC stream holding ``batches`` (zero or more) of ``schema``."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
    return memoryview(sink.getvalue()).cast("B")


def read_stream(stream: Any) -> tuple[pa.Schema, list[pa.RecordBatch]]:
    """The schema and batches of a received IPC stream; their columns point into ``stream`` itself."""
    if not isinstance(stream, memoryview):
        raise DecodeError(f"an Arrow IPC stream must arrive as a buffer, got {type(stream).__name__}")
    if stream.nbytes < len(_END_OF_STREAM) or stream[-len(_END_OF_STREAM):] != _END_OF_STREAM:
        raise DecodeError("Arrow IPC stream is truncated (no end-of-stream marker)")
    try:
        found = _read_record_batches(stream)
        if found is None:
            reader = pa.ipc.open_stream(pa.py_buffer(stream))
            found = reader.schema, list(reader)
        for batch in found[1]:
            batch.validate(full=True)
    except (pa.ArrowException, OSError, ValueError) as error:
        raise DecodeError(f"corrupt Arrow IPC stream: {type(error).__name__}: {error}") from None
    return found


def _read_record_batches(stream: memoryview) -> Optional[tuple[pa.Schema, list[pa.RecordBatch]]]:
    """A stream of a schema and record batches, read message by message with the schema parsed
    once per distinct schema message (``None``, for the stream reader: any other stream, such as
    one with dictionaries). A wide table's schema costs as much to parse as its batch to read."""
    messages = iter(pa.ipc.MessageReader.open_stream(pa.py_buffer(stream)))
    first = next(messages, None)
    if first is None or first.type != "schema":
        return None
    schema = _schema(first)
    batches = []
    for message in messages:
        if message.type != "record batch":
            return None
        batches.append(pa.ipc.read_record_batch(message, schema))
    return schema, batches


MAX_KEPT_SCHEMAS = 16
"""Received schemas kept parsed, by their message's bytes; all are forgotten when full."""
MAX_KEPT_SCHEMA_BYTES = 256 * 1024
"""The largest schema message kept (a 200-column table from pandas: 31 KB); larger ones are parsed
every time, so what is kept stays under ``MAX_KEPT_SCHEMAS * MAX_KEPT_SCHEMA_BYTES`` (4 MiB)."""
_SCHEMAS: dict[bytes, pa.Schema] = {}


def _schema(message: pa.ipc.Message) -> pa.Schema:
    """The schema of a received schema message, kept for the next message with the same bytes."""
    key = message.metadata.to_pybytes()
    schema = _SCHEMAS.get(key)
    if schema is None:
        schema = pa.ipc.read_schema(message)
        if len(key) <= MAX_KEPT_SCHEMA_BYTES:
            if len(_SCHEMAS) >= MAX_KEPT_SCHEMAS:
                _SCHEMAS.clear()
            _SCHEMAS[key] = schema
    return schema
