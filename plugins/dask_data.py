"""dask Arrays, DataFrames and Series as their computed blocks (numpy) or partitions (pandas).

A dask collection is a recipe, not data: its task graph holds arbitrary Python callables, and a
graph travels only by pickle. So the sender computes it, once (``dask.compute`` of every block
together, so shared work runs once), and sends the results block by block:

- an Array as ``("dask.Array", chunks, dtype, blocks)``: ``blocks`` lists the numpy arrays of the
  block grid in C order, each a buffer in a frame of its own, never concatenated into one array;
  the receiver gets a dask Array with the same chunks whose blocks *are* the received frames
  (no copy until you compute);
- a DataFrame or Series as ``("dask.DataFrame", partitions, divisions)``: each partition is a
  pandas object the pandas plugin sends (Arrow IPC, one frame each), and ``divisions`` (the
  partition boundaries, or ``None`` where dask does not know them) travels as a pandas Series
  the same way, so index values of any dtype stay exact. The receiver gets a dask collection with
  the same partitions and divisions.

Chunks and divisions computed from the received blocks must match what the message announces;
at most :data:`MAX_BLOCKS` blocks or partitions travel in one value (a dask graph holds one task
per block: a peer must not be able to make a listener build millions).
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd

from wrapyfi_like.encoding.arrays import check_dtype, is_shape
from wrapyfi_like.exceptions import DecodeError, EncodeError
from wrapyfi_like.utils.core_utils import Plugin, PluginRegistrar

MAX_BLOCKS = 100_000
"""Blocks of an Array, or partitions of a DataFrame, one message may carry (both sides)."""


@PluginRegistrar.register(types=(da.Array,))
class DaskArray(Plugin):
    """Sends dask Arrays of numpy blocks (any dtype the codec's arrays carry), computing them once."""

    codec_id = "dask.Array"

    def encode(self, obj: da.Array, *args: Any, **kwargs: Any) -> tuple[bool, dict]:
        _check_count(math.prod(obj.numblocks), "blocks")
        check_dtype(obj.dtype)
        computed = dask.compute(*obj.to_delayed().ravel().tolist())
        other = next((block for block in computed if not isinstance(block, (np.ndarray, np.generic))), None)
        if other is not None:
            raise EncodeError(f"dask arrays of {type(other).__module__}.{type(other).__qualname__} blocks cannot be "
                              "sent; as numpy they would lose what that type adds (units, sparsity, device)")
        blocks = [np.asarray(block) for block in computed]
        grid = np.empty(obj.numblocks, dtype=object)
        for index, block in zip(np.ndindex(*obj.numblocks), blocks):
            grid[index] = block
        return True, {"__wrapyfi__": (self.codec_id, _chunks_of(grid), obj.dtype.str, blocks)}

    def decode(self, obj_type: str, obj_full: tuple, *args: Any, **kwargs: Any) -> tuple[bool, da.Array]:
        if len(obj_full) != 4:
            raise DecodeError(f"a dask.Array payload has 4 fields, got {len(obj_full)}")
        _, chunks, dtype, blocks = obj_full
        if type(chunks) is not list or not all(is_shape(sizes) and sizes for sizes in chunks):
            raise DecodeError("dask.Array chunks must be a list of non-empty lists of sizes")
        numblocks = tuple(len(sizes) for sizes in chunks)
        if type(blocks) is not list or len(blocks) != math.prod(numblocks):
            raise DecodeError(f"dask.Array chunks {numblocks} need {math.prod(numblocks)} blocks")
        _check_count(len(blocks), "blocks", DecodeError)
        if type(dtype) is not str or not all(isinstance(block, np.ndarray) and block.dtype.str == dtype
                                             for block in blocks):
            raise DecodeError(f"every dask.Array block must be a numpy array of dtype {dtype!r:.40}")
        name = f"from-wire-{uuid.uuid4().hex}"
        graph = {}
        for index, block in zip(np.ndindex(*numblocks), blocks):
            expected = tuple(sizes[i] for sizes, i in zip(chunks, index))
            if block.shape != expected:
                raise DecodeError(f"dask.Array block {index} has shape {block.shape}, the chunks say {expected}")
            graph[(name, *index)] = block
        meta = np.empty((0,) * len(chunks), dtype=blocks[0].dtype)
        return True, da.Array(graph, name, tuple(map(tuple, chunks)), meta=meta)


@PluginRegistrar.register(types=(dd.DataFrame, dd.Series))
class DaskDataFrame(Plugin):
    """Sends dask DataFrames and Series partition by partition through the pandas plugin."""

    codec_id = "dask.DataFrame"

    def encode(self, obj: Any, *args: Any, **kwargs: Any) -> tuple[bool, dict]:
        _check_count(obj.npartitions, "partitions")
        partitions = list(dask.compute(*obj.to_delayed()))
        divisions = pd.Series(list(obj.divisions)) if obj.known_divisions else None
        return True, {"__wrapyfi__": (self.codec_id, partitions, divisions)}

    def decode(self, obj_type: str, obj_full: tuple, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        if len(obj_full) != 3:
            raise DecodeError(f"a dask.DataFrame payload has 3 fields, got {len(obj_full)}")
        _, partitions, divisions = obj_full
        if type(partitions) is not list or not partitions:
            raise DecodeError("dask.DataFrame partitions must be a non-empty list")
        _check_count(len(partitions), "partitions", DecodeError)
        kind = type(partitions[0])
        if kind not in (pd.DataFrame, pd.Series) or not all(type(part) is kind for part in partitions):
            raise DecodeError("dask.DataFrame partitions must be all pandas DataFrames or all Series")
        meta = partitions[0].iloc[:0]
        if not all(_same_layout(part, meta) for part in partitions[1:]):
            raise DecodeError("dask.DataFrame partitions differ in their columns or dtypes")
        if divisions is None:
            bounds = (None,) * (len(partitions) + 1)
        elif type(divisions) is not pd.Series or len(divisions) != len(partitions) + 1:
            raise DecodeError(f"{len(partitions)} partitions need {len(partitions) + 1} divisions")
        elif not divisions.is_monotonic_increasing:
            raise DecodeError("dask.DataFrame divisions must be sorted")
        else:
            bounds = tuple(divisions)
        name = f"from-wire-{uuid.uuid4().hex}"
        parts = [dask.delayed(part, name=f"{name}-{i}") for i, part in enumerate(partitions)]
        return True, dd.from_delayed(parts, meta=meta, divisions=bounds, verify_meta=False)


def _same_layout(part: Any, meta: Any) -> bool:
    """Whether a partition has the columns and dtypes (a Series: the name and dtype) of the first."""
    if isinstance(meta, pd.DataFrame):
        return part.dtypes.equals(meta.dtypes)
    return part.name == meta.name and part.dtype == meta.dtype


def _chunks_of(grid: np.ndarray) -> list:
    """Each axis's chunk sizes, read off the computed blocks (so unknown chunk sizes become known)."""
    chunks = []
    for axis in range(grid.ndim):
        first = tuple(slice(None) if i == axis else 0 for i in range(grid.ndim))
        chunks.append([block.shape[axis] for block in grid[first]])
    return chunks


def _check_count(count: int, what: str, error: type = EncodeError) -> None:
    if count > MAX_BLOCKS:
        raise error(f"a dask value of {count} {what} exceeds MAX_BLOCKS = {MAX_BLOCKS}; rechunk or repartition first")
