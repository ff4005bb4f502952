"""zarr Arrays and Groups as their values plus the layout needed to rebuild them in memory.

A zarr array is a view of a store (memory, a folder, a bucket), and a store is not something a
message can carry: a path on the sender's disk names nothing on the receiver's. So what travels
is the array's *values*, read from its store once on send (``arr[...]``: every chunk read and
decompressed), as one numpy buffer in a frame of its own, with ``shape``, ``chunks``, dtype (the
buffer's), ``fill_value``, ``attrs`` and the zarr format (2 or 3). The receiver writes them into a
new in-memory zarr array (a ``MemoryStore``) with the same layout: for an array backed by files,
that is an in-memory copy of its contents, not a handle to the files, and writing to it changes
nothing on the sender's side.

Compressors, filters and shards are not carried: the received array uses zarr's default codecs.
A codec list is configuration that names code to run on read, and numcodecs has a ``Pickle``
codec; a receiver must not let a peer choose it.

An Array is ``("zarr.Array", array)``; a Group is ``("zarr.Group", [attrs, zarr_format], members)``,
``members`` listing ``[path, attrs, array-or-None]`` for every group and array below it (parents
before children). Each array is ``[values, shape, chunks, fill_value, attrs, zarr_format]``.
Received shapes must match the values, and an array may have at most :data:`MAX_CHUNKS` chunks
and a group :data:`MAX_MEMBERS` members (each costs the receiver work of its own).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import zarr

from wrapyfi_like.encoding.arrays import check_dtype, is_shape
from wrapyfi_like.exceptions import DecodeError, EncodeError
from wrapyfi_like.utils.core_utils import Plugin, PluginRegistrar

MAX_CHUNKS = 100_000
"""Chunks one array may have, checked on both sides."""
MAX_MEMBERS = 10_000
"""Groups and arrays one group may hold, at any depth, checked on both sides."""
_FORMATS = (2, 3)


@PluginRegistrar.register(types=(zarr.Array,))
class ZarrArray(Plugin):
    """Sends zarr arrays of numpy-typed values; see the module docstring."""

    codec_id = "zarr.Array"

    def encode(self, obj: zarr.Array, *args: Any, **kwargs: Any) -> tuple[bool, dict]:
        return True, {"__wrapyfi__": (self.codec_id, _array_to_wire(obj))}

    def decode(self, obj_type: str, obj_full: tuple, *args: Any, **kwargs: Any) -> tuple[bool, zarr.Array]:
        if len(obj_full) != 2:
            raise DecodeError(f"a zarr.Array payload has 2 fields, got {len(obj_full)}")
        spec = _array_from_wire(obj_full[1])
        return True, _write_array(zarr.storage.MemoryStore(), None, spec)


@PluginRegistrar.register(types=(zarr.Group,))
class ZarrGroup(Plugin):
    """Sends zarr groups with every group and array below them."""

    codec_id = "zarr.Group"

    def encode(self, obj: zarr.Group, *args: Any, **kwargs: Any) -> tuple[bool, dict]:
        members = sorted(obj.members(max_depth=None), key=lambda member: member[0].count("/"))
        if len(members) > MAX_MEMBERS:
            raise EncodeError(f"a zarr group of {len(members)} members exceeds MAX_MEMBERS = {MAX_MEMBERS}")
        wire = [[path, dict(member.attrs), _array_to_wire(member) if isinstance(member, zarr.Array) else None]
                for path, member in members]
        return True, {"__wrapyfi__": (self.codec_id, [dict(obj.attrs), obj.metadata.zarr_format], wire)}

    def decode(self, obj_type: str, obj_full: tuple, *args: Any, **kwargs: Any) -> tuple[bool, zarr.Group]:
        if len(obj_full) != 3:
            raise DecodeError(f"a zarr.Group payload has 3 fields, got {len(obj_full)}")
        _, root, members = obj_full
        if type(root) is not list or len(root) != 2:
            raise DecodeError("a zarr.Group's root must be [attrs, zarr_format]")
        attrs, zarr_format = root
        if not isinstance(attrs, dict) or type(zarr_format) is not int or zarr_format not in _FORMATS:
            raise DecodeError("a zarr.Group needs a dict of attrs and a zarr format of 2 or 3")
        if type(members) is not list or len(members) > MAX_MEMBERS:
            raise DecodeError(f"zarr.Group members must be a list of at most MAX_MEMBERS = {MAX_MEMBERS}")
        store = zarr.storage.MemoryStore()
        group = zarr.create_group(store=store, attributes=attrs, zarr_format=zarr_format)
        for member in members:
            if type(member) is not list or len(member) != 3 or type(member[0]) is not str or not member[0]:
                raise DecodeError("a zarr.Group member must be [path, attrs, array or None]")
            path, member_attrs, array = member
            if array is None:
                if not isinstance(member_attrs, dict):
                    raise DecodeError(f"zarr group {path!r:.80} needs a dict of attrs")
                group.create_group(path, attributes=member_attrs)
            else:
                spec = _array_from_wire(array)
                if spec["attributes"] != member_attrs:
                    raise DecodeError(f"zarr array {path!r:.80} announces two different attrs")
                _write_array(store, path, spec)
        return True, group


def _array_to_wire(array: zarr.Array) -> list:
    check_dtype(array.dtype)
    _check_chunks(array.shape, array.chunks, EncodeError)
    values = np.asarray(array[...])
    return [values, list(array.shape), list(array.chunks), array.fill_value, dict(array.attrs),
            array.metadata.zarr_format]


def _array_from_wire(array: Any) -> dict:
    if type(array) is not list or len(array) != 6:
        raise DecodeError("a zarr array must be [values, shape, chunks, fill_value, attrs, zarr_format]")
    values, shape, chunks, fill_value, attrs, zarr_format = array
    if not isinstance(values, np.ndarray) or not is_shape(shape) or values.shape != tuple(shape):
        raise DecodeError(f"zarr values must be a numpy array of the announced shape {shape!r:.80}")
    if not is_shape(chunks) or len(chunks) != len(shape) or 0 in chunks:
        raise DecodeError(f"zarr chunks must be one positive size per dimension, got {chunks!r:.80}")
    _check_chunks(shape, chunks, DecodeError)
    if not isinstance(attrs, dict) or type(zarr_format) is not int or zarr_format not in _FORMATS:
        raise DecodeError("a zarr array needs a dict of attrs and a zarr format of 2 or 3")
    return {"values": values, "shape": tuple(shape), "chunks": tuple(chunks), "fill_value": fill_value,
            "attributes": attrs, "zarr_format": zarr_format}


def _write_array(store: Any, path: Any, spec: dict) -> zarr.Array:
    values = spec["values"]
    array = zarr.create_array(store=store, name=path, shape=spec["shape"], chunks=spec["chunks"], dtype=values.dtype,
                              fill_value=spec["fill_value"], attributes=spec["attributes"],
                              zarr_format=spec["zarr_format"])
    if values.size:
        array[...] = values
    return array


def _check_chunks(shape: Any, chunks: Any, error: type) -> None:
    count = math.prod(-(-size // chunk) for size, chunk in zip(shape, chunks))
    if count > MAX_CHUNKS:
        raise error(f"a zarr array of {count} chunks exceeds MAX_CHUNKS = {MAX_CHUNKS}; use larger chunks")
