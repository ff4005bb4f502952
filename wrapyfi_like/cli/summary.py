"""Printable summaries of decoded messages: big payloads shown as ``shape dtype min/max/mean``.

An image or a tensor is megabytes of numbers that tell a person nothing in a terminal; its shape,
dtype and value range tell what arrived. Libraries are recognised by type name, so nothing here
imports torch, pandas, pyarrow or PIL.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Optional

import numpy as np

SHORT_BYTES = 32
"""bytes-like values up to this length are shown in full; longer ones only by length."""


class Summary:
    """Stands in for a large value: a type name and its facts (shape, dtype, min, max, mean …)."""

    def __init__(self, kind: str, **facts: Any) -> None:
        self.kind = kind
        self.facts = facts

    def text(self) -> str:
        parts = [f"{name}={_fact_text(value)}" for name, value in self.facts.items()]
        return f"<{self.kind} {' '.join(parts)}>"

    def as_json(self) -> dict:
        return {"type": self.kind, **self.facts}


def _fact_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "(" + ", ".join(str(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return str(value)


def _range(values: np.ndarray) -> dict:
    """min/max/mean of numeric (or bool) values; nothing for empty or non-numeric ones."""
    if values.size == 0 or not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
        return {}
    if np.issubdtype(values.dtype, np.complexfloating):
        return {}
    as_float = values.astype(np.float64, copy=False)
    return {"min": _number(as_float.min()), "max": _number(as_float.max()), "mean": _number(as_float.mean())}


def _number(value: Any) -> Any:
    value = float(value)
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _ndarray(value: np.ndarray) -> Summary:
    return Summary("ndarray", shape=list(value.shape), dtype=str(value.dtype), **_range(value))


def _tensor(value: Any) -> Summary:
    facts: dict = {"shape": list(value.shape), "dtype": str(value.dtype), "device": str(value.device)}
    if value.numel() and (value.is_floating_point() or not value.is_complex()):
        detached = value.detach()
        facts.update(min=_number(detached.min()), max=_number(detached.max()),
                     mean=_number(detached.double().mean()))
    return Summary("Tensor", **facts)


def _frame(value: Any) -> Summary:
    numeric = value.select_dtypes(include="number").to_numpy(dtype=np.float64) if hasattr(value, "columns") \
        else (value.to_numpy(dtype=np.float64) if value.dtype.kind in "biuf" else np.empty(0))
    facts: dict = {"shape": list(value.shape)}
    if hasattr(value, "columns"):
        facts["columns"] = [str(c) for c in value.columns]
    else:
        facts["dtype"] = str(value.dtype)
    return Summary(type(value).__name__, **facts, **_range(numeric))


def _arrow(value: Any) -> Summary:
    if hasattr(value, "num_columns"):
        return Summary(type(value).__name__, rows=value.num_rows, columns=list(value.column_names))
    return Summary(type(value).__name__, length=len(value), value_type=str(value.type))


def _pil_image(value: Any) -> Summary:
    return Summary("Image", size=list(value.size), mode=value.mode, **_range(np.asarray(value)))


_BY_LIBRARY_AND_NAME = {
    ("torch", "Tensor"): _tensor,
    ("pandas", "DataFrame"): _frame,
    ("pandas", "Series"): _frame,
    ("pyarrow", "Table"): _arrow,
    ("pyarrow", "RecordBatch"): _arrow,
    ("pyarrow", "ChunkedArray"): _arrow,
    ("pyarrow", "Array"): _arrow,
    ("PIL", "Image"): _pil_image,
}


def _library_summary(value: Any) -> Optional[Summary]:
    """The summary for a known library's type (or a subclass of one), by library and class name."""
    for cls in type(value).__mro__:
        summary = _BY_LIBRARY_AND_NAME.get((cls.__module__.split(".")[0], cls.__qualname__))
        if summary is not None:
            return summary(value)
    return None


def summarise(value: Any) -> Any:
    """The same tree with every large value replaced by a :class:`Summary`."""
    if isinstance(value, (str, int, float, bool, type(None), complex, dt.date, dt.time, dt.timedelta)):
        return value
    if isinstance(value, np.ndarray):
        return _ndarray(value)
    if isinstance(value, np.generic):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        size = memoryview(value).nbytes
        return bytes(value) if size <= SHORT_BYTES else Summary(type(value).__name__, len=size)
    if isinstance(value, dict):
        return {key: summarise(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return type(value)(summarise(item) for item in value)
    return _library_summary(value) or value


def to_text(value: Any) -> str:
    """A repr of a summarised tree, with summaries in ``<…>``."""
    if isinstance(value, Summary):
        return value.text()
    if isinstance(value, dict):
        return "{" + ", ".join(f"{to_text(k)}: {to_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, tuple):
        inner = ", ".join(to_text(item) for item in value)
        return f"({inner}{',' if len(value) == 1 else ''})"
    if isinstance(value, list):
        return "[" + ", ".join(to_text(item) for item in value) + "]"
    if isinstance(value, (set, frozenset)) and value:
        inner = "{" + ", ".join(to_text(item) for item in value) + "}"
        return inner if isinstance(value, set) else f"frozenset({inner})"
    return repr(value)


def to_json(value: Any) -> Any:
    """A JSON-ready form of a summarised tree (str keys, lists for tuples/sets, ISO dates)."""
    if isinstance(value, Summary):
        return value.as_json()
    if isinstance(value, dict):
        return {k if isinstance(k, str) else to_text(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json(item) for item in value]
    if isinstance(value, (bool, int, str, type(None))):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, np.generic):
        return to_json(value.item())
    if isinstance(value, complex):
        return {"real": value.real, "imag": value.imag}
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return {"type": "bytes", "len": len(value), "hex": value.hex()}
    return repr(value)
