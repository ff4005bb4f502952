"""pandas DataFrame and Series as raw numeric blocks plus an Arrow IPC stream for the rest (no pickle).

A frame's numpy columns (ints, uints, floats, complex, bool in either byte order; datetime64,
timedelta64) travel as raw buffers, one per dtype: all float64 columns of a frame form one 2-D block in
pandas' own layout, sent without a copy when the frame holds them in one block (as a frame built
from one 2-D array does) and otherwise copied once. The receiver wraps each received frame with
``np.frombuffer`` and hands it to pandas as a block, so those columns *are* the receive buffers.
This is what makes a 200×200 float frame cheap: the Arrow round trip it replaces cost about 45 µs
of Python work per column on each side.

Every other column (nullable and string dtypes, categoricals, tz-aware datetimes, object columns)
and every index but a RangeIndex goes through pandas' Arrow converter as one IPC stream, which
carries them exactly. Three things Arrow cannot carry exactly travel in the layout record:

- column labels and index level names: Arrow field names are strings, so the stream's columns get
  positional names and the real labels (any hashable: ints, tuples, timestamps, mixed,
  duplicates) are sent as values the codec encodes;
- object-dtype string columns and index levels, which Arrow would turn into pandas' ``str`` dtype;
- the ``freq`` of a DatetimeIndex or TimedeltaIndex.

A RangeIndex travels as its bounds. The frame is rebuilt with
``pandas.api.internals.create_dataframe_from_blocks`` (pandas 3), which takes the blocks as they
are instead of copying and consolidating them as the DataFrame constructor would.

Received blocks are untrusted: each must be 2-D, of a raw dtype pandas stores as such (datetime
units s, ms, us, ns), with as many rows as the index and as many columns as its positions, and the
positions of all blocks and of the stream's columns together must name every column once; the
codec has already checked that each buffer's length is the declared shape times the item size.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
try:
    from pandas.api.internals import create_dataframe_from_blocks
except ImportError as error:  # pandas 2: say so instead of a bare "cannot import name"
    raise ImportError(f"the pandas plugin needs pandas>=3 (installed: {pd.__version__}); "
                      "pip install -c constraints.txt -e '.[pandas]' in a checkout") from error

from wrapyfi_like.exceptions import DecodeError
from wrapyfi_like.plugins.arrow_ipc import read_stream, write_stream
from wrapyfi_like.utils.core_utils import Plugin, PluginRegistrar

_LAYOUT_KEYS = frozenset({"columns", "index_names", "object_columns", "object_levels", "freq", "rows", "blocks"})
_RAW_KINDS = frozenset("biufcmM")  # numpy bool, int, uint, float, complex, datetime64, timedelta64
_TIME_UNITS = frozenset({("s", 1), ("ms", 1), ("us", 1), ("ns", 1)})  # the datetime64 units pandas stores
_SCALAR_LABELS = (str, int, float, bool, bytes, type(None), np.generic, dt.datetime, dt.date, dt.timedelta)
_PLAIN_LABELS = frozenset({str, int, float, bool, type(None)})  # labels msgpack carries as they are


class _PandasPlugin(Plugin):
    """Shared conversion; subclasses say how their object becomes a frame and back."""

    codec_id: str

    def encode(self, obj: Any, *args: Any, **kwargs: Any) -> tuple[bool, dict]:
        frame = self.to_frame(obj)
        dtypes = frame.dtypes.tolist()
        groups, others = _split_columns(dtypes)
        ranged = isinstance(frame.index, pd.RangeIndex)
        layout = {
            "columns": _index_to_wire(self.columns_of(obj)),
            "index_names": [_label_to_wire(name) for name in frame.index.names],
            "object_columns": [i for i, position in enumerate(others) if dtypes[position] == object],
            "object_levels": [] if ranged else
            [i for i, level in enumerate(_level_values(frame.index)) if level.dtype == object],
            "freq": getattr(frame.index, "freqstr", None),
            "rows": _index_to_wire(frame.index) if ranged else None,
            "blocks": list(groups.values()),
        }
        stream = None
        if others or not ranged:
            rest = frame.iloc[:, others].set_axis([f"c{i}" for i in range(len(others))], axis=1)
            rest.index = rest.index.set_names([None] * frame.index.nlevels)
            table = pa.Table.from_pandas(rest, preserve_index=not ranged)
            stream = write_stream(table.to_batches(), table.schema)
        return True, {"__wrapyfi__": (self.codec_id, layout, _blocks(frame, groups, others), stream)}

    def decode(self, obj_type: str, obj_full: tuple, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        if len(obj_full) != 4:
            raise DecodeError(f"a {self.codec_id} payload has 4 fields, got {len(obj_full)}")
        _, layout, blocks, stream = obj_full
        if not isinstance(layout, dict) or set(layout) != _LAYOUT_KEYS:
            raise DecodeError(f"a {self.codec_id} layout must be a dict with keys {sorted(_LAYOUT_KEYS)}")
        positions = layout["blocks"]
        if not isinstance(blocks, list) or not isinstance(positions, list) or len(blocks) != len(positions):
            raise DecodeError(f"a {self.codec_id} payload must hold one list of positions per block")
        columns = _index_from_wire(layout["columns"])
        count = self.column_count(len(columns))
        rest = None
        if stream is not None:
            schema, batches = read_stream(stream)
            # integer_object_nulls: an object column of ints with None comes back as that, not as floats
            rest = pa.Table.from_batches(batches, schema=schema).to_pandas(integer_object_nulls=True)
        if layout["rows"] is not None:
            index = _index_from_wire(layout["rows"])
            if not isinstance(index, pd.RangeIndex) or (rest is not None and len(rest) != len(index)):
                raise DecodeError(f"layout rows {layout['rows']!r:.80} do not fit the data")
        elif rest is None:
            raise DecodeError(f"a {self.codec_id} payload without a row range must carry its index in a stream")
        else:
            index = rest.index
        index = _restore_index(index, layout)
        placements, others = _block_positions(positions, count, 0 if rest is None else rest.shape[1])
        parts = [(_block_from_wire(block, len(positions), len(index)), positions)
                 for block, positions in zip(blocks, placements)]
        as_object = set(_positions(layout["object_columns"], len(others)))
        for i, position in enumerate(others):
            parts.append((_column_values(rest.iloc[:, i], i in as_object), np.array([position])))
        return True, self.from_frame(create_dataframe_from_blocks(parts, index=index, columns=columns))

    def to_frame(self, obj: Any) -> pd.DataFrame:
        raise NotImplementedError

    def columns_of(self, obj: Any) -> pd.Index:
        raise NotImplementedError

    def column_count(self, count: int) -> int:
        return count

    def from_frame(self, frame: pd.DataFrame) -> Any:
        raise NotImplementedError


@PluginRegistrar.register(types=(pd.DataFrame,))
class PandasDataFrame(_PandasPlugin):
    codec_id = "pandas.DataFrame"

    def to_frame(self, obj: pd.DataFrame) -> pd.DataFrame:
        return obj

    def columns_of(self, obj: pd.DataFrame) -> pd.Index:
        return obj.columns

    def from_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame


@PluginRegistrar.register(types=(pd.Series,))
class PandasSeries(_PandasPlugin):
    codec_id = "pandas.Series"

    def to_frame(self, obj: pd.Series) -> pd.DataFrame:
        return obj.to_frame(name="values")

    def columns_of(self, obj: pd.Series) -> pd.Index:
        return pd.Index([obj.name], dtype=object, tupleize_cols=False)

    def column_count(self, count: int) -> int:
        if count != 1:
            raise DecodeError(f"a pandas.Series payload must hold one column, got {count}")
        return 1

    def from_frame(self, frame: pd.DataFrame) -> pd.Series:
        return frame.iloc[:, 0]


def _is_raw(dtype: Any) -> bool:
    """Whether a column of ``dtype`` travels as a raw block (see the module docstring); pandas keeps
    numbers in either byte order, datetimes only in the machine's."""
    return isinstance(dtype, np.dtype) and dtype.kind in _RAW_KINDS and (dtype.isnative or dtype.kind not in "mM")


def _split_columns(dtypes: list) -> tuple[dict[Any, list[int]], list[int]]:
    """The positions of the raw columns by dtype, and the positions of the others."""
    distinct = set(dtypes)
    if len(distinct) == 1 and _is_raw(dtypes[0]):
        return {dtypes[0]: list(range(len(dtypes)))}, []
    raw = {dtype for dtype in distinct if _is_raw(dtype)}
    groups: dict[Any, list[int]] = {}
    others = []
    for position, dtype in enumerate(dtypes):
        if dtype in raw:
            groups.setdefault(dtype, []).append(position)
        else:
            others.append(position)
    return groups, others


def _blocks(frame: pd.DataFrame, groups: dict[Any, list[int]], others: list[int]) -> list[np.ndarray]:
    """Each group's columns as one (columns, rows) array, pandas' block layout: the frame's own
    memory when all columns share one dtype and one block, else a copy per group."""
    if len(groups) == 1 and not others:
        return [frame.to_numpy().T]
    return [frame.iloc[:, positions].to_numpy().T for positions in groups.values()]


def _block_positions(wire: list, count: int, streamed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Each block's column positions and the positions no block names (the stream's ``streamed``
    columns), in order; together they must name each of the ``count`` columns once. The count is
    checked against the positions before anything of its size is allocated."""
    if not all(isinstance(block, list) and block and set(map(type, block)) == {int} for block in wire):
        raise DecodeError(f"block positions must be non-empty lists of ints, got {wire!r:.80}")
    if sum(map(len, wire)) + streamed != count:
        raise DecodeError(f"the blocks hold {sum(map(len, wire))} columns and the stream {streamed}, "
                          f"the layout names {count}")
    positions = []
    taken = np.zeros(count, dtype=bool)
    for block in wire:
        if not 0 <= min(block) <= max(block) < count:
            raise DecodeError(f"block positions {block!r:.80} must name columns of the {count}")
        placement = np.array(block, dtype=np.int64)
        taken[placement] = True
        positions.append(placement)
    if np.count_nonzero(taken) != count - streamed:
        raise DecodeError("two blocks or positions name the same column")
    return positions, np.flatnonzero(~taken)


def _block_from_wire(block: Any, columns: int, rows: int) -> np.ndarray:
    """A received block, checked against the shape the layout gives it; copied only if read-only
    (a frame's columns are writable)."""
    if not isinstance(block, np.ndarray) or block.shape != (columns, rows) or not _is_raw(block.dtype):
        raise DecodeError(f"a block must be a ({columns}, {rows}) array of a numpy number, bool, datetime64 or "
                          f"timedelta64 dtype, got {type(block).__name__} {getattr(block, 'shape', '')!s:.40} "
                          f"{getattr(block, 'dtype', '')!s:.40}")
    if block.dtype.kind in "mM" and np.datetime_data(block.dtype) not in _TIME_UNITS:
        raise DecodeError(f"pandas stores datetime64/timedelta64 in s, ms, us or ns, not {block.dtype}")
    return block if block.flags.writeable else block.copy(order="K")


def _column_values(column: pd.Series, as_object: bool) -> Any:
    """One stream column as a block: its extension array, or a writable (1, rows) numpy array."""
    if as_object:
        column = column.astype(object)
    if isinstance(column.dtype, np.dtype):
        return column.to_numpy(copy=True).reshape(1, -1)
    return column.array


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
    if not isinstance(index, pd.MultiIndex):
        return [index]
    positional = index.set_names(list(range(index.nlevels)))
    return [positional.get_level_values(i) for i in range(index.nlevels)]


def _index_to_wire(index: pd.Index) -> dict:
    if isinstance(index, pd.RangeIndex):
        return {"range": [index.start, index.stop, index.step], "name": _label_to_wire(index.name)}
    levels = _level_values(index)
    return {
        "levels": [_level_to_wire(level) for level in levels],
        "dtypes": [str(level.dtype) for level in levels],
        "names": [_label_to_wire(name) for name in index.names],
        "multi": isinstance(index, pd.MultiIndex),
    }


def _level_to_wire(level: pd.Index) -> list:
    """A level's labels; a level of plain labels (the usual str or int column names) is sent
    as its list, checked in one pass instead of label by label."""
    labels = level.tolist()
    if _PLAIN_LABELS.issuperset(map(type, labels)):
        return labels
    return [_label_to_wire(label) for label in labels]


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


@functools.lru_cache(maxsize=64)
def _pandas_dtype(name: str) -> Any:
    """pandas' dtype for a name; looking one up costs about 30 µs, and a stream of frames names
    the same few dtypes again and again."""
    return pd.api.types.pandas_dtype(name)


def _level_from_wire(labels: list, dtype_name: str, name: Any) -> pd.Index:
    """One index level; tz-aware timestamps arrive as UTC datetime64 values (see _label_to_wire)."""
    dtype = _pandas_dtype(dtype_name)
    plain = _PLAIN_LABELS.issuperset(map(type, labels))
    values = labels if plain else [_label_from_wire(label) for label in labels]
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


def _restore_index(index: pd.Index, layout: dict) -> pd.Index:
    """``index`` with the names, object-dtype levels and freq the layout gives it."""
    names = layout["index_names"]
    if not isinstance(names, list) or len(names) != index.nlevels:
        raise DecodeError(f"layout names {names!r:.80} do not fit an index of {index.nlevels} levels")
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
    names = [_label_from_wire(name) for name in names]
    return index if list(index.names) == names else index.set_names(names)


def _positions(positions: Any, count: int) -> list[int]:
    if not isinstance(positions, list) or not all(type(p) is int and 0 <= p < count for p in positions):
        raise DecodeError(f"bad positions {positions!r:.80} for {count} items")
    return positions
