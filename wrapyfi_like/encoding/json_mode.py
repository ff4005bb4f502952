"""JSON mode: any object tree the binary codec carries <-> one UTF-8 JSON frame.

Binary mode is the fast path; JSON mode exists so that a browser, ``jq`` or a peer in another
language can read and write messages with nothing but a JSON parser. The body is one document
``{"wrapyfi_like": 1, "value": <tree>}`` (no buffers). JSON carries null, bool, finite floats,
64-bit ints, str, lists and str-keyed dicts as themselves; everything else becomes a marker, so
every value binary mode round-trips exactly also round-trips exactly here (docs/wire.md):

- numpy arrays: ``{"data_b64": ..., "shape": [...], "dtype": "<f4"}``, the layout of Truss
  Chains' ``NumpyArrayField`` (Truss writes ``"float32"``: names without byte order decode too);
  C order; only the dtype kinds binary mode allows.
- anything else: ``{"__wrapyfi__": [name, ...]}``, Wrapyfi's marker shape, with the names in
  :data:`MARKERS`. A user dict that would read as a marker or an array (a ``__wrapyfi__`` key, or
  exactly the keys ``data_b64``, ``shape``, ``dtype``) is written in the ``dict`` form, so it
  comes back as the same dict.

Most messages are plain JSON already (dicts of numbers, strings and lists of them): those cost one
orjson call each way. The sender's :func:`_is_plain` looks at each container once, at C speed
where it can, and the receiver counts the body's braces, or looks for the words ``__wrapyfi__``
and ``data_b64`` in it, to know no dict in it can be a marker; anything else takes the marker walk.

Decoding treats every byte as untrusted: the document nests at most :data:`MAX_JSON_DEPTH`
containers (checked by orjson before our walk: 1024, then by the walk), every marker's layout,
dtype and size is checked, and anything wrong raises :class:`DecodeError`. orjson is imported
when this module is, i.e. on the first JSON message, never by ``import wrapyfi_like``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
import operator
import re
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import orjson

from wrapyfi_like.encoding import arrays, temporal
from wrapyfi_like.encoding.codec import all_numbers
from wrapyfi_like.exceptions import DecodeError, EncodeError
from wrapyfi_like.limits import MAX_DEPTH
from wrapyfi_like.logs import truncate

if TYPE_CHECKING:
    from wrapyfi_like.encoding.codec import Codec

JSON_VERSION = 1
MAX_JSON_DEPTH = 254
"""Containers (lists, dicts; a marker counts as its dict and its list) a JSON body's value may
nest: orjson serialises at most 255 levels, and the body's own object is one of them."""
MARKER = "__wrapyfi__"
ARRAY_KEYS = frozenset({"data_b64", "shape", "dtype"})
_MARKER_KEY, _ARRAY_KEY = MARKER.encode(), b"data_b64"
MARKERS = ("tuple", "set", "frozenset", "int", "float", "complex", "bytes", "bytearray", "memoryview",
           "numpy.scalar", "datetime", "date", "time", "timedelta", "dict", "plugin")
"""Every marker name of version 1 (docs/wire.md, "JSON body")."""
_INT_MIN, _INT_MAX = -(2 ** 63), 2 ** 64 - 1  # what orjson writes as a JSON number
_SCALARS = frozenset({str, bool, type(None)})
_JSON_LEAVES = frozenset({str, bool, type(None), int, float})
_STR = frozenset({str})
_FLOATS = frozenset({float})
_AS_IS = frozenset({str, bool, type(None), int})
"""Leaves orjson writes exactly as they are (it refuses the ints out of 64-bit range)."""
_AS_IS_OR_FLOAT = _AS_IS | {float}
_CONTAINERS = frozenset({dict, list})
_PLAIN_OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS
"""orjson refuses subclasses of str, int, list and dict (and str subclass keys), as the walk does."""
_NUMPY_NAME = re.compile(r"(bool|u?int(8|16|32|64)|float(16|32|64)|complex(64|128)|bytes[0-9]+|str[0-9]+)")
"""numpy's dtype names Truss writes (``str(dtype)``); byte-order strings go to the binary checks."""


def encode(codec: Codec, obj: Any) -> list:
    """``[body]``: one UTF-8 JSON document; :class:`EncodeError` names what cannot be encoded."""
    if not codec.inline_encoders and _is_plain(obj, 1):
        try:
            return [orjson.dumps({"wrapyfi_like": JSON_VERSION, "value": obj}, option=_PLAIN_OPTIONS)]
        except orjson.JSONEncodeError:  # an int past 64 bits or a key that is not a str: markers below
            pass
    tree = _Encoder(codec).prepare(obj, 1)
    try:
        return [orjson.dumps({"wrapyfi_like": JSON_VERSION, "value": tree})]
    except orjson.JSONEncodeError as error:  # only the nesting limit gets past prepare
        raise EncodeError(f"cannot encode this {type(obj).__qualname__} as JSON: {error}") from None


def is_json(first_frame: memoryview) -> bool:
    """Whether a body is JSON mode: it starts with ``{`` (a binary body starts with 0x93, which no
    UTF-8 text does)."""
    return first_frame[:1] == b"{"


def decode(codec: Codec, frames: Sequence[Any]) -> Any:
    if len(frames) != 1:
        raise DecodeError(f"a JSON body is one frame, this message has {len(frames)}")
    body = frames[0]
    large = len(body) > _SCAN_FIRST_BYTES
    if type(body) is not bytes:  # a small frame is copied for the scans, a large one read in place
        body = memoryview(body).cast("B") if large else bytes(body)
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise DecodeError(f"malformed JSON body: {truncate(error)}") from None
    if type(document) is not dict or len(document) != 2 or "value" not in document or "wrapyfi_like" not in document:
        raise DecodeError('a JSON body must be {"wrapyfi_like": 1, "value": ...}')
    if document["wrapyfi_like"] != JSON_VERSION or type(document["wrapyfi_like"]) is not int:
        raise DecodeError(f"unknown JSON body version {truncate(repr(document['wrapyfi_like']))}")
    value = document["value"]
    if _holds_no_marker(body, value, large):
        return value
    try:
        return _Decoder(codec).rebuild(value, 1)
    except DecodeError:
        raise
    except Exception as error:  # a marker's fields of the wrong type or range
        raise DecodeError(f"malformed JSON body: {type(error).__name__}: {truncate(error)}") from None


def _is_plain(value: Any, depth: int) -> bool:
    """Whether orjson writes ``value`` exactly as it is and a receiver reads it back the same:
    only str-keyed dicts, lists, str, bool, None, ints and finite floats, and no dict that reads
    as a marker or an array. orjson itself refuses big ints, subclasses and keys that are not
    str; tuples, enums and NaN it would write without complaint, so they are found here. Each
    container's items are looked at once, at C speed for the common list of one type."""
    kind = type(value)
    if depth > MAX_JSON_DEPTH:
        return False
    if kind is list:
        if not value:
            return True
        first = type(value[0])
        if first in _AS_IS_OR_FLOAT and operator.countOf(map(type, value), first) == len(value):
            # The common list of one type, its types counted exactly: a float Enum member is a
            # float too, and orjson would write it as its number. Floats must all be finite:
            # their sum is, unless one is NaN or infinite (or the sum overflows: then markers).
            return first is not float or math.isfinite(sum(value))
        items: Any = value
    elif kind is dict:
        if MARKER in value or (len(value) == 3 and value.keys() == ARRAY_KEYS):
            return False
        items = value.values()
    else:
        return kind in _AS_IS or (kind is float and value - value == 0.0)
    for item in items:
        kind = type(item)
        if kind in _AS_IS:
            continue
        if kind is float:
            if item - item != 0.0:  # NaN or infinity
                return False
        elif kind not in _CONTAINERS or not _is_plain(item, depth + 1):
            return False
    return True


def _holds_no_marker(body: Any, value: Any, large: bool) -> bool:
    """Whether a received ``value`` is final as orjson parsed it: no container too deep (each
    ``[`` and ``{`` may be one, the body's own ``{`` too) and no dict that may be a marker or an
    array. Where every dict hangs off dicts (:func:`_plain_dicts`), their keys say it; else: a
    marker's dict has the key ``__wrapyfi__`` and an array's the key ``data_b64``; in a body
    without a backslash every string is written as itself, so a body holding neither word holds
    neither dict, however deep its dicts nest (three C scans of the body instead of the marker
    walk, 0.5 µs instead of 4 for 1 KB).

    The scans cost with the body's bytes (1.3 ms for the 1.4 MB of a 1 MB array), the look at
    its dicts with their items (at most :data:`_DICT_WALK_ITEMS`): a ``large`` body (over
    :data:`_SCAN_FIRST_BYTES`) has its dicts looked at first, and an array or a marker found
    among them sends it to the walk before any scan (``{"seq": …, "data": <array>}``)."""
    is_dict = type(value) is dict
    if is_dict and (MARKER in value or (len(value) == 3 and value.keys() == ARRAY_KEYS)):
        return False  # found before scanning the body: an array's is 1.3 MB a MB
    dicts = _UNSEEN
    if large:  # its dicts before its bytes
        if is_dict:
            dicts = _plain_dicts(value)
            if dicts == _MARKED:
                return False
        if type(body) is not bytes:  # a received frame, read in place by orjson: the scans need bytes
            body = bytes(body)
    objects = body.count(b"{")
    if objects + body.count(b"[") > MAX_JSON_DEPTH + 1:
        return False
    if objects <= 2:  # the body's own dict and the value, checked above
        return is_dict or objects == 1
    if is_dict:
        if dicts == _UNSEEN:
            dicts = _plain_dicts(value)
        if dicts == objects - 1:  # every dict of the body, reached and checked
            return True
        if dicts == _MARKED:
            return False
    return b"\\" not in body and _MARKER_KEY not in body and _ARRAY_KEY not in body


def _plain_dicts(value: dict) -> int:
    """How many dicts ``value`` holds, itself included, reached through dicts only (not lists);
    :data:`_MARKED` if one of them may be a marker or an array, :data:`_TOO_MANY` if they hold
    more than :data:`_DICT_WALK_ITEMS` items in all. Each dict is one ``{`` of the body, so when
    this is the body's count less its own, no other dict exists: the common ``{"seq": …, "data":
    {…}}`` is settled by its two dicts' keys instead of three scans of the body (1 µs less for
    1 KB)."""
    found, budget, pending = 0, _DICT_WALK_ITEMS, [value]
    while pending:
        current = pending.pop()
        found += 1
        budget -= len(current)
        if budget < 0:
            return _TOO_MANY
        for item in current.values():
            if type(item) is dict:
                if MARKER in item or (len(item) == 3 and item.keys() == ARRAY_KEYS):
                    return _MARKED
                pending.append(item)
    return found


_DICT_WALK_ITEMS = 128
"""Items :func:`_plain_dicts` looks at before leaving the question to the scans of the body,
which cost about as much as looking at 100 items of a 1 KB body, and grow with the body's bytes."""
_TOO_MANY, _MARKED, _UNSEEN = -1, -2, -3
_SCAN_FIRST_BYTES = 16384
"""A body's size from which its dicts are looked at before it is scanned (and a received frame
copied to bytes for the scans: orjson reads it in place): the walk's budget of :data:`_DICT_WALK_ITEMS` items costs about what
scanning 16 KB does."""


def _marker(name: str, *fields: Any) -> dict:
    return {MARKER: [name, *fields]}


def _b64(buffer: Any) -> str:
    return base64.b64encode(buffer).decode("ascii")


class _Encoder:
    """One encode call's walk: returns the JSON tree, reusing the caller's containers where
    nothing in them needs a marker."""

    __slots__ = ("codec", "levels", "inlining")

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.levels = 0  # extension-like markers inside markers, bounded by MAX_DEPTH as in binary
        self.inlining: Any = None  # the type whose inline serializer's output is being prepared

    def prepare(self, value: Any, depth: int) -> Any:
        kind = type(value)
        if kind in _SCALARS:
            return value
        if kind is int:
            return value if _INT_MIN <= value <= _INT_MAX else _big_int(value)
        if kind is float:
            return value if value - value == 0.0 else _marker("float", repr(value))
        if depth > MAX_JSON_DEPTH:
            raise EncodeError(f"the value nests more than MAX_JSON_DEPTH = {MAX_JSON_DEPTH} containers (JSON mode)")
        if self.codec.inline_encoders and kind in self.codec.inline_encoders and kind is not self.inlining:
            return self.nested(_inline, value, depth)
        if kind is dict:
            return self.dict(value, depth)
        if kind is list:
            if _SCALARS.issuperset(map(type, value)) or (_FLOATS.issuperset(map(type, value)) and _finite(value)):
                return value
            return [self.prepare(item, depth + 1) for item in value]
        if kind is np.ndarray or isinstance(value, np.memmap):
            return _array(value)
        encoder = _ENCODERS.get(kind)
        if encoder is not None:
            return self.nested(encoder, value, depth)
        if isinstance(value, np.generic):
            return self.nested(_numpy_scalar, value, depth)
        plugin = self.codec.encoder_plugin(kind)
        if plugin is not None:
            return self.nested(self.plugin, (plugin, value), depth)
        raise EncodeError(
            f"cannot encode an object of type {kind.__module__}.{kind.__qualname__}: no built-in encoder "
            "and no plugin handles it (docs/plugins.md)"
        )

    def nested(self, encoder: Any, value: Any, depth: int) -> dict:
        """A marker: its fields are prepared two levels down (its dict and its list)."""
        self.levels += 1
        if self.levels > MAX_DEPTH:
            raise EncodeError(f"the value nests extension values more than MAX_DEPTH = {MAX_DEPTH} deep")
        marker = encoder(self, value, depth + 2)
        self.levels -= 1
        return marker

    def dict(self, value: dict, depth: int) -> dict:
        if _STR.issuperset(map(type, value)) and MARKER not in value and not (
                len(value) == 3 and value.keys() == ARRAY_KEYS):
            if _SCALARS.issuperset(map(type, value.values())):
                return value
            return {key: item if type(item) in _SCALARS or _plain_number(item) else self.prepare(item, depth + 1)
                    for key, item in value.items()}
        return self.nested(_pairs, value, depth)

    def plugin(self, _: Any, plugin_and_value: tuple, depth: int) -> dict:
        fields = self.codec.plugin_fields(*plugin_and_value)
        return _marker("plugin", fields[0], *(self.prepare(field, depth + 1) for field in fields[1:]))


def _inline(run: _Encoder, value: Any, depth: int) -> dict:
    codec_id, payload = run.codec.inline_encode(value)
    outer, run.inlining = run.inlining, type(value)  # a T its serializer returns is encoded as usual
    prepared = run.prepare(payload, depth + 1)
    run.inlining = outer
    return _marker("plugin", codec_id, prepared)


def _plain_number(value: Any) -> bool:
    """Whether ``value`` is an int or float JSON writes as itself (checked here without a call
    to :meth:`_Encoder.prepare`: the common dict of numbers)."""
    kind = type(value)
    return (kind is float and value - value == 0.0) or (kind is int and _INT_MIN <= value <= _INT_MAX)


def _big_int(value: int) -> dict:
    try:
        return _marker("int", str(value))
    except ValueError:  # Python's int-to-text limit (sys.get_int_max_str_digits: 4300 digits)
        raise EncodeError(f"an int of {value.bit_length()} bits has more digits than JSON mode writes "
                          "(4300); send it in binary mode") from None


def _finite(floats: list) -> bool:
    """Whether a list of floats holds no NaN or infinity, at C speed (an overflowing sum is not
    proof of anything: the caller then checks each item)."""
    try:
        return math.isfinite(math.fsum(floats))
    except (OverflowError, ValueError):
        return False


def _array(value: np.ndarray) -> dict:
    arrays.check_dtype(value.dtype)
    return {"data_b64": _b64(arrays.flat_bytes(np.ascontiguousarray(value))), "shape": list(value.shape),
            "dtype": value.dtype.str}


def _items(run: _Encoder, values: Any, depth: int) -> list:
    return [run.prepare(item, depth + 1) for item in values]


def _pairs(run: _Encoder, value: dict, depth: int) -> dict:
    return _marker("dict", [[run.prepare(key, depth + 2), run.prepare(item, depth + 2)]
                            for key, item in value.items()])


def _numpy_scalar(run: _Encoder, value: np.generic, depth: int) -> dict:
    dtype_str, raw = arrays.scalar_to_wire(value)
    if value.dtype.kind in "biu" or (value.dtype.kind == "f" and value.dtype.itemsize <= 8):
        return _marker("numpy.scalar", dtype_str, run.prepare(value.item(), depth + 1))
    return _marker("numpy.scalar", dtype_str, _marker("bytes", _b64(raw)))


def _memoryview(run: _Encoder, value: memoryview, depth: int) -> dict:
    flat = value.cast("B") if value.c_contiguous else memoryview(value.tobytes())
    return _marker("memoryview", _b64(flat), value.format, list(value.shape))


def _complex(run: _Encoder, value: complex, depth: int) -> dict:
    return _marker("complex", run.prepare(value.real, depth + 1), run.prepare(value.imag, depth + 1))


def _temporal(name: str, to_wire: Any) -> Any:
    return lambda run, value, depth: _marker(name, *(run.prepare(field, depth + 1) for field in to_wire(value)))


_ENCODERS = {
    tuple: lambda run, value, depth: _marker("tuple", _items(run, value, depth)),
    set: lambda run, value, depth: _marker("set", _items(run, value, depth)),
    frozenset: lambda run, value, depth: _marker("frozenset", _items(run, value, depth)),
    bytes: lambda run, value, depth: _marker("bytes", _b64(value)),
    bytearray: lambda run, value, depth: _marker("bytearray", _b64(value)),
    memoryview: _memoryview,
    complex: _complex,
    dt.datetime: _temporal("datetime", temporal.datetime_to_wire),
    dt.date: _temporal("date", temporal.date_to_wire),
    dt.time: _temporal("time", temporal.time_to_wire),
    dt.timedelta: _temporal("timedelta", temporal.timedelta_to_wire),
}


class _Decoder:
    """One decode call's walk: rebuilds markers and arrays, returns plain JSON as it came."""

    __slots__ = ("codec", "levels")

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.levels = 0

    def rebuild(self, value: Any, depth: int) -> Any:
        kind = type(value)
        if kind is list:
            if depth > MAX_JSON_DEPTH:
                raise DecodeError(f"JSON body nests more than MAX_JSON_DEPTH = {MAX_JSON_DEPTH} containers")
            if all_numbers(value) or _JSON_LEAVES.issuperset(map(type, value)):
                return value
            return [self.rebuild(item, depth + 1) for item in value]
        if kind is not dict:
            return value
        if depth > MAX_JSON_DEPTH:
            raise DecodeError(f"JSON body nests more than MAX_JSON_DEPTH = {MAX_JSON_DEPTH} containers")
        if MARKER in value:
            return self.marker(value, depth)
        if len(value) == 3 and value.keys() == ARRAY_KEYS:
            return _array_from_json(value)
        if _JSON_LEAVES.issuperset(map(type, value.values())):
            return value
        return {key: item if type(item) in _JSON_LEAVES else self.rebuild(item, depth + 1)
                for key, item in value.items()}

    def marker(self, value: dict, depth: int) -> Any:
        fields = value[MARKER]
        if len(value) != 1 or type(fields) is not list or not fields or type(fields[0]) is not str:
            raise DecodeError(f'a marker must be {{"{MARKER}": [name, ...]}} alone')
        decoder = _DECODERS.get(fields[0])
        if decoder is None:
            raise DecodeError(f"unknown JSON marker {truncate(repr(fields[0]))}")
        self.levels += 1
        if self.levels > MAX_DEPTH:
            raise DecodeError(f"extension values nest more than MAX_DEPTH = {MAX_DEPTH} deep")
        if depth + 1 > MAX_JSON_DEPTH:
            raise DecodeError(f"JSON body nests more than MAX_JSON_DEPTH = {MAX_JSON_DEPTH} containers")
        rebuilt = decoder(self, [self.rebuild(field, depth + 2) for field in fields[1:]])
        self.levels -= 1
        return rebuilt

    def plugin(self, fields: list) -> Any:
        if not fields or type(fields[0]) is not str:
            raise DecodeError("a plugin marker must start with its codec id")
        return self.codec.plugin_value(fields)


def _unb64(text: Any) -> bytes:
    if type(text) is not str:
        raise DecodeError(f"expected base64 text, got {type(text).__name__}")
    try:  # base64.b64decode(text, validate=True) without its copy of the text to bytes (1.4 MB a MB)
        return binascii.a2b_base64(text, strict_mode=True)
    except ValueError as error:  # binascii.Error, or a character past ASCII
        raise DecodeError(f"bad base64: {error}") from None


def _dtype(name: Any) -> np.dtype:
    if type(name) is str and _NUMPY_NAME.fullmatch(name):
        return arrays._safe_dtype(np.dtype(name).str)
    return arrays._safe_dtype(name)


def _array_from_json(value: dict) -> np.ndarray:
    dtype, shape = _dtype(value["dtype"]), value["shape"]
    if not arrays.is_shape(shape):
        raise DecodeError(f"array shape must be a list of non-negative ints, got {truncate(repr(shape))}")
    data = _unb64(value["data_b64"])
    if len(data) != math.prod(shape) * dtype.itemsize:
        raise DecodeError(f"array of shape {shape} and dtype {dtype} needs {math.prod(shape) * dtype.itemsize} "
                          f"bytes, got {len(data)}")
    return np.frombuffer(bytearray(data), dtype=dtype).reshape(shape)


def _exactly(count: int, name: str, fields: list) -> list:
    if len(fields) != count:
        raise DecodeError(f"a {name} marker holds {count} field(s), got {len(fields)}")
    return fields


def _list_field(name: str, fields: list) -> list:
    (items,) = _exactly(1, name, fields)
    if type(items) is not list:
        raise DecodeError(f"a {name} marker holds a list")
    return items


def _int(fields: list) -> int:
    (text,) = _exactly(1, "int", fields)
    if type(text) is not str or not re.fullmatch(r"-?[0-9]{1,4300}", text):
        raise DecodeError("an int marker holds decimal digits")
    return int(text)


def _float(fields: list) -> float:
    (text,) = _exactly(1, "float", fields)
    if text not in ("nan", "inf", "-inf"):
        raise DecodeError('a float marker holds "nan", "inf" or "-inf"')
    return float(text)


def _complex_from_json(fields: list) -> complex:
    real, imag = _exactly(2, "complex", fields)
    if type(real) is not float or type(imag) is not float:
        raise DecodeError("a complex marker holds two floats")
    return complex(real, imag)


def _memoryview_from_json(fields: list) -> memoryview:
    data, fmt, shape = _exactly(3, "memoryview", fields)
    if type(fmt) is not str or not arrays.is_shape(shape):
        raise DecodeError("a memoryview marker holds [base64, format, shape]")
    view = memoryview(_unb64(data))
    return view if fmt == "B" and shape == [view.nbytes] else view.cast(fmt, shape)


def _numpy_scalar_from_json(fields: list) -> np.generic:
    dtype_str, item = _exactly(2, "numpy.scalar", fields)
    if type(item) is bytes:
        return arrays.scalar_from_wire([dtype_str, item])
    dtype = arrays._safe_dtype(dtype_str)
    if dtype.kind not in "biuf" or type(item) not in (bool, int, float):
        raise DecodeError(f"a numpy.scalar marker of dtype {dtype} holds base64 bytes")
    return dtype.type(item)


def _pairs_from_json(fields: list) -> dict:
    pairs = _list_field("dict", fields)
    if not all(type(pair) is list and len(pair) == 2 for pair in pairs):
        raise DecodeError("a dict marker holds [key, value] pairs")
    return dict(pairs)


_DECODERS = {
    "tuple": lambda run, fields: tuple(_list_field("tuple", fields)),
    "set": lambda run, fields: set(_list_field("set", fields)),
    "frozenset": lambda run, fields: frozenset(_list_field("frozenset", fields)),
    "int": lambda run, fields: _int(fields),
    "float": lambda run, fields: _float(fields),
    "complex": lambda run, fields: _complex_from_json(fields),
    "bytes": lambda run, fields: _unb64(*_exactly(1, "bytes", fields)),
    "bytearray": lambda run, fields: bytearray(_unb64(*_exactly(1, "bytearray", fields))),
    "memoryview": lambda run, fields: _memoryview_from_json(fields),
    "numpy.scalar": lambda run, fields: _numpy_scalar_from_json(fields),
    "datetime": lambda run, fields: temporal.datetime_from_wire(fields),
    "date": lambda run, fields: temporal.date_from_wire(fields),
    "time": lambda run, fields: temporal.time_from_wire(fields),
    "timedelta": lambda run, fields: temporal.timedelta_from_wire(fields),
    "dict": lambda run, fields: _pairs_from_json(fields),
    "plugin": _Decoder.plugin,
}
