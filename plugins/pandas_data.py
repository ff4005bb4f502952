"""pandas DataFrame and Series as an Arrow IPC stream plus a small layout record (no pickle).

Arrow carries the columns and the index exactly for every common dtype (numeric, bool, nullable,
string, categorical, datetime64 with and without tz, timedelta, MultiIndex) and keeps a
RangeIndex as metadata. Three things it cannot carry exactly travel in the layout record:

- column labels and index level names: Arrow field names are strings, so the frame is converted
  with positional names and the real labels (any hashable: ints, tuples, timestamps, mixed,
  duplicates) are sent as values the codec encodes;
- object-dtype string columns and index levels, which Arrow would turn into pandas' ``str`` dtype;
- the ``freq`` of a DatetimeIndex or TimedeltaIndex.

The frame's data is copied once into the IPC stream on send; on receive ``to_pandas`` builds
ordinary writable pandas columns from the received frame.

The common frame of sensor logs and features (numpy number, bool, datetime64 and timedelta64
columns over a RangeIndex) skips pandas' own Arrow converter, whose Python work per column
(about 45 µs) made a 200-column frame cost 9 ms to send. Its columns become Arrow arrays
directly, the stream carries no pandas metadata, and the row range travels in the layout record;
Arrow maps those dtypes back exactly.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from wrapyfi_like.exceptions import DecodeError
from wrapyfi_like.plugins.arrow_ipc import read_stream, write_stream
from wrapyfi_like.utils.core_utils import Plugin, PluginRegistrar

_LAYOUT_KEYS = frozenset({"columns", "index_names", "object_columns", "object_levels", "freq", "rows"})
_PLAIN_KINDS = frozenset("biufMm")  # numpy bool, int, float, datetime64, timedelta64: exact without metadata
_SCALAR_LABELS = (str, int, float, bool, bytes, type(None), np.generic, dt.datetime, dt.date, dt.timedelta)


class _PandasPlugin(Plugin):
    """Shared conversion; subclasses say how their object becomes a frame and back."""

    codec_id: str

    def encode(self, obj: Any, *args: Any, **kwargs: Any) -> tuple[bool, dict]:
        frame = self.to_frame(obj)
        layout = {
            "columns": _index_to_wire(self.columns_of(obj)),
            "index_names": [_label_to_wire(name) for name in frame.index.names],
            "object_columns": [i for i, dtype in enumerate(frame.dtypes) if dtype == object],
            "object_levels": [i for i, level in enumerate(_level_values(frame.index)) if level.dtype == object],
            "freq": getattr(frame.index, "freqstr", None),
            "rows": None,
        }
        names = [f"c{i}" for i in range(frame.shape[1])]
        plain_columns = _plain_columns(frame)
        if plain_columns is None:
            positional = frame.set_axis(names, axis=1)
            positional.index = positional.index.set_names([None] * frame.index.nlevels)
            table = pa.Table.from_pandas(positional)
        else:
            table = pa.Table.from_arrays([pa.array(column) for column in plain_columns], names=names)
            layout["rows"] = _index_to_wire(frame.index)
        return True, {"__wrapyfi__": (self.codec_id, write_stream(table.to_batches(), table.schema), layout)}

    def decode(self, obj_type: str, obj_full: tuple, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        if len(obj_full) != 3:
            raise DecodeError(f"a {self.codec_id} payload has 3 fields, got {len(obj_full)}")
        _, stream, layout = obj_full
        if not isinstance(layout, dict) or set(layout) != _LAYOUT_KEYS:
            raise DecodeError(f"a {self.codec_id} layout must be a dict with keys {sorted(_LAYOUT_KEYS)}")
        schema, batches = read_stream(stream)
        # integer_object_nulls: an object column of ints with None comes back as that, not as floats
        frame = pa.Table.from_batches(batches, schema=schema).to_pandas(integer_object_nulls=True)
        columns = _index_from_wire(layout["columns"])
        if len(columns) != self.column_count(frame):
            raise DecodeError(f"{self.codec_id} layout names {len(columns)} columns, the data has {frame.shape[1]}")
        if layout["rows"] is not None:
            frame.index = _row_range_from_wire(layout["rows"], len(frame))
        _restore_index(frame, layout)
        for position in _positions(layout["object_columns"], frame.shape[1]):
            frame.isetitem(position, frame.iloc[:, position].astype(object))
        return True, self.from_frame(frame, columns)

    def to_frame(self, obj: Any) -> pd.DataFrame:
        raise NotImplementedError

    def columns_of(self, obj: Any) -> pd.Index:
        raise NotImplementedError

    def column_count(self, frame: pd.DataFrame) -> int:
        return frame.shape[1]

    def from_frame(self, frame: pd.DataFrame, columns: pd.Index) -> Any:
        raise NotImplementedError


@PluginRegistrar.register(types=(pd.DataFrame,))
class PandasDataFrame(_PandasPlugin):
    codec_id = "pandas.DataFrame"

    def to_frame(self, obj: pd.DataFrame) -> pd.DataFrame:
        return obj

    def columns_of(self, obj: pd.DataFrame) -> pd.Index:
        return obj.columns

    def from_frame(self, frame: pd.DataFrame, columns: pd.Index) -> pd.DataFrame:
        return frame.set_axis(columns, axis=1)


@PluginRegistrar.register(types=(pd.Series,))
class PandasSeries(_PandasPlugin):
    codec_id = "pandas.Series"

    def to_frame(self, obj: pd.Series) -> pd.DataFrame:
        return obj.to_frame(name="values")

    def columns_of(self, obj: pd.Series) -> pd.Index:
        return pd.Index([obj.name], dtype=object, tupleize_cols=False)

    def column_count(self, frame: pd.DataFrame) -> int:
        if frame.shape[1] != 1:
            raise DecodeError(f"a pandas.Series stream must hold one column, got {frame.shape[1]}")
        return 1

    def from_frame(self, frame: pd.DataFrame, columns: pd.Index) -> pd.Series:
        return frame.iloc[:, 0].rename(columns[0])


def _plain_columns(frame: pd.DataFrame) -> list[np.ndarray] | None:
    """The columns as numpy arrays if every one is a native-endian number, bool, datetime64 or
    timedelta64 and the rows are a RangeIndex (what Arrow carries exactly without pandas metadata);
    else None."""
    dtypes = list(frame.dtypes)
    if not dtypes or not isinstance(frame.index, pd.RangeIndex):
        return None  # without columns, an Arrow table cannot say how many rows it has
    if not all(isinstance(dtype, np.dtype) and dtype.kind in _PLAIN_KINDS and dtype.isnative for dtype in dtypes):
        return None
    if len(set(dtypes)) == 1:
        return list(frame.to_numpy().T)  # one dtype: one 2-D array, often the frame's own block
    return [series.to_numpy() for _, series in frame.items()]


def _row_range_from_wire(wire: Any, row_count: int) -> pd.RangeIndex:
    rows = _index_from_wire(wire)
    if not isinstance(rows, pd.RangeIndex) or len(rows) != row_count:
        raise DecodeError(f"layout rows {wire!r:.80} do not fit a stream of {row_count} rows")
    return rows


def _label_to_wire(label: Any) -> Any:
    """A label as a value the codec can encode (pandas scalars become numpy ones)."""
    if isinstance(label, pd.Timestamp):
        return label.to_datetime64()
    if isinstance(label, pd.Timedelta):
        return label.to_timedelta64()
    if isinstance(label, tuple):
        return tuple(_label_to_wire(item) for item in label)
    return label


def _level_values(index: pd.Index) -> list[pd.Index]:
    """Each level's values by position (``get_level_values(0)`` would look up a level *named* 0)."""
    positional = index.set_names(list(range(index.nlevels)))
    return [positional.get_level_values(i) for i in range(index.nlevels)]


def _index_to_wire(index: pd.Index) -> dict:
    if isinstance(index, pd.RangeIndex):
        return {"range": [index.start, index.stop, index.step], "name": _label_to_wire(index.name)}
    levels = _level_values(index)
    return {
        "levels": [[_label_to_wire(label) for label in level] for level in levels],
        "dtypes": [str(level.dtype) for level in levels],
        "names": [_label_to_wire(name) for name in index.names],
        "multi": isinstance(index, pd.MultiIndex),
    }


def _index_from_wire(wire: Any) -> pd.Index:
    if isinstance(wire, dict) and set(wire) == {"range", "name"}:
        bounds = wire["range"]
        if not isinstance(bounds, list) or len(bounds) != 3 or not all(type(n) is int for n in bounds):
            raise DecodeError(f"bad RangeIndex bounds {bounds!r:.80}")
        return pd.RangeIndex(*bounds, name=_label_from_wire(wire["name"]))
    if not isinstance(wire, dict) or set(wire) != {"levels", "dtypes", "names", "multi"}:
        raise DecodeError("bad column index layout")
    levels, dtypes, names = wire["levels"], wire["dtypes"], wire["names"]
    if not (isinstance(levels, list) and isinstance(dtypes, list) and isinstance(names, list)
            and len(levels) == len(dtypes) == len(names) >= 1 and all(isinstance(d, str) for d in dtypes)
            and all(isinstance(level, list) and len(level) == len(levels[0]) for level in levels)):
        raise DecodeError("bad column index layout")
    if not wire["multi"] and len(levels) != 1:
        raise DecodeError("a flat column index has one level")
    built = [_level_from_wire(level, dtype, _label_from_wire(name)) for level, dtype, name in zip(levels, dtypes, names)]
    return pd.MultiIndex.from_arrays(built) if wire["multi"] else built[0]


def _level_from_wire(labels: list, dtype_name: str, name: Any) -> pd.Index:
    """One index level; tz-aware timestamps arrive as UTC datetime64 values (see _label_to_wire)."""
    dtype = pd.api.types.pandas_dtype(dtype_name)
    values = [_label_from_wire(label) for label in labels]
    if isinstance(dtype, pd.DatetimeTZDtype):
        utc = pd.DatetimeIndex(np.array(values, dtype=f"datetime64[{dtype.unit}]"))
        return utc.tz_localize("UTC").tz_convert(dtype.tz).rename(name)
    return pd.Index(values, dtype=dtype, name=name, tupleize_cols=False)  # tuples stay labels


def _label_from_wire(label: Any) -> Any:
    if isinstance(label, tuple):
        return tuple(_label_from_wire(item) for item in label)
    if not isinstance(label, _SCALAR_LABELS):
        raise DecodeError(f"a pandas label cannot be a {type(label).__name__}")
    return label


def _restore_index(frame: pd.DataFrame, layout: dict) -> None:
    names = layout["index_names"]
    if not isinstance(names, list) or len(names) != frame.index.nlevels:
        raise DecodeError(f"layout names {names!r:.80} do not fit an index of {frame.index.nlevels} levels")
    index = frame.index
    for level in _positions(layout["object_levels"], index.nlevels):
        if isinstance(index, pd.MultiIndex):
            index = index.set_levels(index.levels[level].astype(object), level=level)
        else:
            index = index.astype(object)
    freq = layout["freq"]
    if freq is not None:
        if not isinstance(freq, str) or not isinstance(index, (pd.DatetimeIndex, pd.TimedeltaIndex)):
            raise DecodeError(f"bad index freq {freq!r:.40}")
        index = type(index)(index, freq=freq)
    frame.index = index.set_names([_label_from_wire(name) for name in names])


def _positions(positions: Any, count: int) -> list[int]:
    if not isinstance(positions, list) or not all(type(p) is int and 0 <= p < count for p in positions):
        raise DecodeError(f"bad positions {positions!r:.80} for {count} items")
    return positions
