"""numpy arrays and scalars to and from (metadata, one raw buffer).

An array travels as its raw bytes in a frame of its own; only dtype, shape and memory order go in
the header. C- and Fortran-ordered arrays are sent without copying; any other layout is made
contiguous once. On receive, ``np.frombuffer`` wraps the received frame itself, so the array *is*
the receive buffer (writable, because ZeroMQ frames are).

Received metadata is untrusted: only plain numeric, bool, complex, datetime, bytes and unicode
dtypes are accepted (never object or structured dtypes), and the buffer length must match the
shape exactly.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

import numpy as np

from wrapyfi_like.exceptions import DecodeError, EncodeError

SAFE_KINDS = frozenset("biufcmMSU")


def check_dtype(dtype: np.dtype) -> None:
    if dtype.kind not in SAFE_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise EncodeError(
            f"numpy arrays of dtype {dtype} cannot be sent: only bool, integer, float, complex, "
            "datetime64/timedelta64, bytes and str dtypes travel as raw buffers (object and "
            "structured dtypes would need pickle); convert the array or write a plugin "
            "(docs/plugins.md)"
        )


def flat_bytes(array: np.ndarray) -> memoryview:
    """The array's bytes in C order as one flat byte view (copied only if not C-contiguous).

    memoryview's ``cast`` is one call where numpy's ``reshape`` and ``view`` are two, and each
    costs 5-10 µs when a message comes alone to a cold CPU; so the common array, C-contiguous
    and numeric, is tried first with nothing before it. memoryview refuses the others:
    non-contiguous arrays are made contiguous, datetime64/timedelta64 arrays (no buffer
    protocol) go through numpy's uint8 view, and empty views, which have no bytes, cannot be cast.
    """
    try:
        return memoryview(array).cast("B")
    except (TypeError, ValueError):
        pass
    contiguous = np.ascontiguousarray(array)
    if not contiguous.size:
        return memoryview(b"")
    if contiguous.dtype.kind in "mM":
        return memoryview(contiguous.reshape(-1).view(np.uint8))
    return memoryview(contiguous).cast("B")


def layout_from_wire(meta: Any) -> tuple[np.dtype, tuple, str, int]:
    """``(dtype, shape, order, nbytes)`` as received metadata ``[dtype, shape, fortran]`` says,
    every field checked. It depends on the metadata alone, so the codec keeps it for the next
    message with the same metadata bytes (a stream's arrays rarely change shape)."""
    if type(meta) is not list or len(meta) != 3:
        raise DecodeError(f"array metadata must be [dtype, shape, fortran], got {meta!r:.80}")
    dtype_str, shape, fortran = meta
    dtype = _safe_dtype(dtype_str)
    if not is_shape(shape):
        raise DecodeError(f"array shape must be a list of non-negative ints, got {shape!r:.80}")
    nbytes = math.prod(shape) * dtype.itemsize
    return dtype, tuple(shape), "F" if fortran else "C", nbytes


def wrap(layout: tuple[np.dtype, tuple, str, int], buffer: memoryview) -> np.ndarray:
    """``buffer`` as the array ``layout`` describes, after checking that its size matches."""
    dtype, shape, order, nbytes = layout
    if nbytes != buffer.nbytes:
        raise DecodeError(
            f"array of shape {shape} and dtype {dtype} needs {nbytes} bytes, frame has {buffer.nbytes}"
        )
    flat = np.frombuffer(buffer, dtype)  # positional: numpy parses a keyword argument in 0.3 µs
    return flat if len(shape) == 1 else flat.reshape(shape, order=order)


def is_shape(shape: Any) -> bool:
    """Whether a received ``shape`` is a list of non-negative ints (checked in C, no generator)."""
    return type(shape) is list and _INTS.issuperset(map(type, shape)) and min(shape, default=0) >= 0


_INTS = frozenset({int})


def scalar_to_wire(value: np.generic) -> list:
    check_dtype(value.dtype)
    # numpy gives the empty bytes/str scalar (itemsize 0) a NUL item in tobytes(); none travels
    return [value.dtype.str, value.tobytes() if value.dtype.itemsize else b""]


def scalar_from_wire(meta: Any) -> np.generic:
    if not isinstance(meta, list) or len(meta) != 2 or not isinstance(meta[1], bytes):
        raise DecodeError(f"numpy scalar must be [dtype, bytes], got {meta!r:.80}")
    if meta[1] == b"" and meta[0] in _EMPTY_SCALARS:
        return _EMPTY_SCALARS[meta[0]]
    dtype = _safe_dtype(meta[0])
    if len(meta[1]) != dtype.itemsize:
        raise DecodeError(f"numpy scalar of dtype {dtype} needs {dtype.itemsize} bytes")
    return np.frombuffer(meta[1], dtype=dtype)[0]


_DTYPE_SYNTAX = re.compile(r"[<>|=]?[biufcmMSU][0-9]+(?:\[[0-9]*[a-zA-Z]+\])?")
"""The dtype strings of docs/wire.md (``dtype.str``): byte order, kind, item size, datetime unit."""
_EMPTY_SCALARS = {"|S0": np.bytes_(b""), "<U0": np.str_(""), ">U0": np.str_("")}
"""The empty bytes and str scalars: their dtypes have no size, which no array may have (found by
tests/test_fuzz_codec.py)."""


def _safe_dtype(dtype_str: Any) -> np.dtype:
    if type(dtype_str) is not str or len(dtype_str) > 32:
        raise DecodeError(f"bad dtype {dtype_str!r:.80}")
    return _checked_dtype(dtype_str)


@functools.lru_cache(maxsize=64)
def _checked_dtype(dtype_str: str) -> np.dtype:
    """The dtype ``dtype_str`` names, if it may travel; the last 64 names checked are kept (they
    come from the network, so the cache is bounded), because parsing one costs as much as the
    rest of decoding an array."""
    if _DTYPE_SYNTAX.fullmatch(dtype_str) is None:  # before numpy parses it: its aliases warn, and warnings are peer-triggered log lines
        raise DecodeError(f"bad dtype {dtype_str!r}: not byte order, kind, size (e.g. '<f8', '<M8[ns]')")
    try:
        dtype = np.dtype(dtype_str)
    except TypeError as error:
        raise DecodeError(f"bad dtype {dtype_str!r}: {error}") from None
    if dtype.kind not in SAFE_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise DecodeError(f"dtype {dtype_str!r} is not allowed on the wire")
    if dtype.itemsize == 0:
        raise DecodeError(f"dtype {dtype_str!r} has no size")
    return dtype
