"""The codec: any supported object tree <-> ``[header, *buffers]``.

The header is one msgpack document ``[FORMAT_VERSION, buffer_count, value]``. msgpack carries
None, bool, int, float, str, list and dict natively; every other supported type is a msgpack
extension whose code is in :class:`Ext`. Large payloads (numpy arrays, bytes, bytearray,
memoryview, and whatever bytes-like objects or arrays a plugin returns) never enter the header:
they are appended to ``buffers`` and referenced by index, so the transport can send them as
frames of their own without copying, and the decoder can wrap the received frames in place.

msgpack runs with ``strict_types``, so subclasses (``np.float64`` is a ``float``, ``IntEnum`` is an
``int``, ``OrderedDict`` a ``dict``) are never silently flattened into their base type: they reach
the extension hook, which encodes them exactly or raises :class:`EncodeError`.

Decoding treats every byte as untrusted: the version, buffer count, each extension's layout,
dtypes and sizes are checked, and anything wrong raises :class:`DecodeError` (never anything else).

Limits (numbers in :mod:`wrapyfi_like.limits`; each checked on both sides, so anything the encoder
accepts decodes):

| limit | value | checked | proved by |
|---|---|---|---|
| header size | ``MAX_HEADER_SIZE`` = 4 MiB | encode: after packing (:class:`EncodeError`); decode: before unpacking | ``test_codec_bounds.py::test_header_size_limit*`` |
| nested extension values (tuple, set, frozenset, numpy scalar, datetime/date/time/timedelta, plugin object) | ``MAX_DEPTH`` = 64 | before each nested pack / unpack | ``test_codec_bounds.py::test_depth_*``, ``test_fuzz_codec.py::test_hostile_shapes_in_a_subprocess`` |
| lists and maps nested inside one extension level | ``MAX_NESTING`` = 511 encoding (counted by the walk that finds bytes-like values), 1024 decoding (msgpack's unpacker, no C recursion) | encode: the walk; decode: msgpack | ``test_codec_bounds.py::test_deep_lists_*``, ``test_codec_bounds.py::test_lists_and_maps_nest_511_deep_when_encoding`` |
| str, bin, array, map, ext lengths | at most the bytes of the document holding them (msgpack's ``unpackb`` derives ``max_*_len`` from the input's length; the deep levels set ``max_buffer_size``) | msgpack, before allocating | ``test_codec_bounds.py::test_container_length_claims_*`` |
| extension codes | 1–15 only; msgpack's Timestamp (-1) and any other code are refused | decode | ``test_codec_bounds.py::test_timestamp_*`` |
| error text | peer-chosen text in a :class:`DecodeError` is cut to ``wrapyfi_like.logs.PEER_TEXT_LIMIT`` characters, the whole message to ``MAX_ERROR_CHARS`` | decode | ``test_codec_bounds.py::test_error_messages_are_bounded`` |

Why 64 levels: each level costs one pass through msgpack's unpacker. ``unpackb`` keeps its parse
stack on the C stack (~40 KB a call), so only the first :data:`FAST_LEVELS` levels use it; deeper
levels use a heap-allocated ``msgpack.Unpacker`` (~4 KB of C stack a level). A decode at the limit
then needs well under 1 MiB of C stack (a thread with a 1 MiB stack decodes it: tested), and real
data nests tuples and datetimes a few levels, not dozens. Lists and maps do not count: msgpack
unpacks them without recursing.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
import struct
import sys
import threading
import warnings
from enum import IntEnum
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import msgpack
import numpy as np

from wrapyfi_like.encoding import arrays, temporal
from wrapyfi_like.exceptions import ConfigurationError, DecodeError, EncodeError
from wrapyfi_like.limits import MAX_DEPTH, MAX_HEADER_SIZE
from wrapyfi_like.logs import truncate
from wrapyfi_like.utils.core_utils import Plugin, PluginRegistrar
from wrapyfi_like.utils.plugin_set import PLUGIN_GUIDE, PluginSet

FORMAT_VERSION = 1
SERIALIZERS = ("binary", "json")
"""What a sender writes: ``[header, *buffers]`` (msgpack and raw buffers, the default) or one JSON
document (:mod:`wrapyfi_like.encoding.json_mode`). A receiver reads either: no setting needed."""
_HEADER_PREFIX = bytes([0x93, FORMAT_VERSION])  # msgpack: a 3-element array whose first item is the version
FAST_LEVELS = 4
"""Extension levels unpacked with ``msgpack.unpackb`` (fast, ~40 KB of C stack each); deeper
levels use a heap-allocated ``msgpack.Unpacker`` (~1 µs more each, ~4 KB of C stack)."""
MAX_ERROR_CHARS = 1000
"""Characters a :class:`DecodeError` from :meth:`Codec.decode` may hold, whatever the peer sent."""


class Ext(IntEnum):
    """msgpack extension codes of the wire format, version 1. Never renumber."""

    TUPLE = 1
    SET = 2
    FROZENSET = 3
    BIGINT = 4
    COMPLEX = 5
    BYTES = 6
    BYTEARRAY = 7
    MEMORYVIEW = 8
    NDARRAY = 9
    NPSCALAR = 10
    DATETIME = 11
    DATE = 12
    TIME = 13
    TIMEDELTA = 14
    PLUGIN = 15


_COMPLEX = struct.Struct("<dd")
_NDARRAY = int(Ext.NDARRAY)  # a plain int compares faster than the enum member
_ARRAY = np.ndarray  # one global lookup instead of two on every message


class Codec:
    """Encodes and decodes messages; build one per topic and reuse it for every message.

    ``plugins`` is the topic's :class:`~wrapyfi_like.utils.plugin_set.PluginSet`, built outside
    (the codec itself never scans paths or imports plugins); given none, one is built from
    ``allowed_plugins`` and ``plugin_kwargs`` (device maps, image settings …), so a bad setting
    fails when the communicator is created, not on the first message. A received codec id never
    makes this process import a library unless ``allowed_plugins`` names it (see PluginSet).

    ``serializer`` (one of :data:`SERIALIZERS`) is what :meth:`encode` writes; :meth:`decode`
    reads both, told apart by the first byte.

    ``inline`` (``{type: (serializer, deserializer)}``, from ``Annotated[T, Serializer(...),
    Deserializer(...)]`` hints) sends values of exactly those types as plugin objects with the
    codec id ``inline:<module>.<qualname>`` and payload ``serializer(value)``, encoded by this
    codec (arrays it returns stay buffers); consulted before the built-in encoders and plugins.
    """

    def __init__(self, allowed_plugins: Iterable[str] = (), serializer: str = "binary",
                 inline: Optional[Mapping[type, tuple[Optional[Callable], Optional[Callable]]]] = None,
                 plugins: Optional[PluginSet] = None, **plugin_kwargs: Any) -> None:
        if serializer not in SERIALIZERS:
            raise ConfigurationError(f"serializer must be one of {SERIALIZERS}, got {serializer!r:.200}")
        self.serializer = serializer
        self.inline_encoders = {kind: (inline_id(kind), ser) for kind, (ser, _) in (inline or {}).items() if ser}
        self._inline_decoders = {inline_id(kind): (kind, deser) for kind, (_, deser) in (inline or {}).items() if deser}
        self.plugins = PluginSet(allowed_plugins, **plugin_kwargs) if plugins is None else plugins
        self.plugin_layouts: dict[bytes, tuple] = {}
        """Received plugin payloads (at most :data:`MAX_KEPT_METADATA` bytes) whose plugin has
        ``decode_layout``, with the plugin, its checked layout, and the buffer index and size they
        named, and the plugin registrations they were checked under: kept per codec, because a
        layout may depend on the plugin's settings (a device map)."""
        if serializer == "json":
            self.encode = functools.partial(_json_mode().encode, self)

    def encode(self, obj: Any) -> list:
        """Return ``[header, *buffers]``; raises :class:`EncodeError` naming any unsupported type
        or exceeded limit."""
        if type(obj) is _ARRAY and not self.inline_encoders:  # the commonest message: one array
            return _lone_array(obj)
        run = _idle_runs.encode
        if run.codec is not None:  # this thread is inside an encode already (a plugin's, a serializer's)
            run = _EncodeRun()
        packed = False
        try:
            run.codec = self
            run.buffers = buffers = []
            body = run.pack(obj)
            packed = True
        except ValueError as error:  # msgpack's nesting limit
            raise EncodeError(
                f"cannot encode this {type(obj).__qualname__}: {error}; lists and maps may nest at most "
                f"511 deep and extension values (tuples, sets, …) at most {MAX_DEPTH} deep"
            ) from None
        except RecursionError:  # not the value's depth alone: the walk fits in the limit from a shallow stack
            raise EncodeError(
                f"cannot encode this {type(obj).__qualname__}: Python's recursion limit "
                f"({sys.getrecursionlimit()}) was reached, with the caller's own frames on the stack"
            ) from None
        finally:
            run.finish(packed)
        header = _header_start(len(buffers)) + body
        if len(header) > MAX_HEADER_SIZE:
            raise EncodeError(
                f"the header of this {type(obj).__qualname__} would be {len(header)} bytes; the limit "
                f"is MAX_HEADER_SIZE = {MAX_HEADER_SIZE} (send large sequences of numbers as numpy arrays, "
                "which travel as frames of their own)"
            )
        return [header, *buffers]

    def decode(self, frames: Sequence[Any]) -> Any:
        """Rebuild the object from ``[header, *buffers]`` (any bytes-like frames); any problem is a
        :class:`DecodeError` of at most :data:`MAX_ERROR_CHARS` characters."""
        if not frames:
            raise DecodeError("message has no header frame")
        header = frames[0]
        if type(header) is not memoryview:  # a transport's frames usually are memoryviews already
            header = memoryview(header)
        if header.nbytes > MAX_HEADER_SIZE:
            raise DecodeError(f"header of {header.nbytes} bytes exceeds MAX_HEADER_SIZE = {MAX_HEADER_SIZE}")
        if len(frames) == 2 and header.nbytes in _LONE_ARRAY_SIZES:
            raw = header.tobytes()
            if raw[:4] == _LONE_ARRAY_START and raw[5] == _NDARRAY and raw[4] == len(raw) - 6:
                known = _ARRAY_LAYOUTS.get(raw[6:])  # metadata decoded and checked before
                if known is not None and known[0] == 0:
                    return arrays.wrap(known[1], _frame(frames[1]))
        if header[:2] != _HEADER_PREFIX:
            if header[:1] == b"{":  # JSON mode (0x93 starts no UTF-8 text)
                return _json_mode().decode(self, frames)
            raise DecodeError(
                f"not a wrapyfi_like message of format version {FORMAT_VERSION} "
                f"(header starts {bytes(header[:8])!r})"
            )
        run = _idle_runs.decode
        if run.codec is not None:  # this thread is inside a decode already (a plugin's, a deserializer's)
            run = _DecodeRun()
        try:
            run.codec = self
            buffers = frames[1:]  # made memoryviews as they are used (_DecodeRun.buffer)
            run.buffers = buffers = buffers if type(buffers) is list else list(buffers)
            run.scan = _TIMESTAMP_MARKERS.search(header) is not None
            message = msgpack.unpackb(header, ext_hook=run.ext_hook, strict_map_key=False, raw=False)
            if run.scan:
                _refuse_timestamps(message)
        except DecodeError as error:
            if len(error.args[0]) > MAX_ERROR_CHARS:
                raise DecodeError(truncate(error.args[0], MAX_ERROR_CHARS)) from None
            raise
        except Exception as error:
            raise DecodeError(f"malformed message: {type(error).__name__}: {truncate(error)}") from None
        finally:  # idle again, holding no reference to the message's frames
            run.codec = run.buffers = None
            run.depth = 0
        version, buffer_count, value = message
        if type(buffer_count) is not int or buffer_count != len(buffers):  # an array here would not compare
            raise DecodeError(f"header announces {truncate(repr(buffer_count))} buffers, message has {len(buffers)}")
        return value

    def inline_encode(self, value: Any) -> Optional[tuple[str, Any]]:
        """``(codec_id, payload)`` if ``value``'s type has an inline serializer, else None."""
        found = self.inline_encoders.get(type(value))
        if found is None:
            return None
        codec_id, serialize = found
        try:
            return codec_id, serialize(value)
        except Exception as error:
            raise EncodeError(f"the inline serializer of {codec_id} failed: {type(error).__name__}: {error}") from error

    def inline_decode(self, codec_id: str, fields: Sequence[Any]) -> Any:
        """The value of a received inline object ``[codec_id, payload]``."""
        found = self._inline_decoders.get(codec_id)
        shown = truncate(repr(codec_id))
        if found is None:
            raise DecodeError(
                f"no inline deserializer for {shown} here: annotate the receiving method with the "
                "sender's Annotated[T, Serializer(...), Deserializer(...)], or pass "
                "serializers={T: (serializer, deserializer)} to register (docs/guide/messages.md)"
            )
        if len(fields) != 2:
            raise DecodeError(f"an inline object {shown} holds [codec_id, payload], got {len(fields)} fields")
        try:
            return found[1](fields[1])
        except Exception as error:
            raise DecodeError(f"the inline deserializer of {shown} failed: {type(error).__name__}: {truncate(error)}") from None

    def plugin_fields(self, plugin: Plugin, value: Any) -> Sequence[Any]:
        """``plugin``'s ``(codec_id, payload, ...)`` for ``value``, checked the same way in both
        body formats: a plugin that fails or answers in another shape is an :class:`EncodeError`
        naming it, and its codec id must be one a receiver can look up."""
        name = type(plugin).__name__
        try:
            ok, wrapped = plugin.encode(value)
        except EncodeError:
            raise
        except Exception as error:
            raise EncodeError(f"plugin {name} failed to encode {type(value).__qualname__}: {error}") from error
        fields = wrapped.get("__wrapyfi__") if ok and isinstance(wrapped, dict) else None
        if not isinstance(fields, (tuple, list)) or not fields or not isinstance(fields[0], str):
            raise EncodeError(
                f"plugin {name} did not return (True, {{'__wrapyfi__': (codec_id, payload, ...)}}) "
                f"for {type(value).__qualname__}"
            )
        if fields[0] not in PluginRegistrar.decoder_registry:
            raise EncodeError(f"plugin {name} returned codec id {fields[0]!r}, which no plugin is registered under")
        return fields

    def plugin_value(self, fields: list) -> Any:
        """The value of a received plugin object ``[codec_id, payload, ...]`` (an inline
        serializer's or a plugin's), in both body formats; whatever the plugin raises becomes a
        :class:`DecodeError` with the peer's codec id truncated."""
        codec_id = fields[0]
        if codec_id.startswith(INLINE_PREFIX):
            return self.inline_decode(codec_id, fields)
        plugin = self.decoder_plugin(codec_id)
        try:
            ok, value = plugin.decode(codec_id, tuple(fields))
        except DecodeError:
            raise
        except Exception as error:
            raise DecodeError(f"plugin {type(plugin).__name__} could not decode {truncate(repr(codec_id))}: "
                              f"{type(error).__name__}: {truncate(error)}") from None
        if not ok:
            raise DecodeError(f"plugin {type(plugin).__name__} declined to decode {truncate(repr(codec_id))}")
        return value

    def encoder_plugin(self, obj_type: type) -> Optional[Plugin]:
        """The plugin that encodes ``obj_type`` (None: none does), from the topic's plugin set."""
        return self.plugins.encoder_plugin(obj_type)

    def decoder_plugin(self, codec_id: str) -> Plugin:
        """The plugin that decodes ``codec_id``; a :class:`DecodeError` says how to allow it."""
        return self.plugins.decoder_plugin(codec_id)


@functools.cache
def _json_mode() -> Any:
    """:mod:`wrapyfi_like.encoding.json_mode`, imported (with orjson) on first use: a process
    that never sees a JSON body never imports orjson."""
    from wrapyfi_like.encoding import json_mode
    return json_mode


INLINE_PREFIX = "inline:"


def inline_id(kind: type) -> str:
    """The codec id of a type's inline serializer: the same in every process that names the type."""
    return f"{INLINE_PREFIX}{kind.__module__}.{kind.__qualname__}"


_PLAIN = frozenset({str, int, float, bool, type(None)})
PACK_BUFFER_SIZE = 4096
"""msgpack's packer starts with this much memory and grows it. Its default, 256 KiB, is above
glibc's mmap threshold, so a packer per call (and the codec packs once per extension) would map
and unmap memory every time: 10 µs instead of 1 µs."""


def _ext(code: int, data: bytes) -> msgpack.ExtType:
    """msgpack's ExtType, built without its Python-level argument checks: on a cold CPU (a message
    sent now and then) those checks cost more than packing the payload. Every code here is an
    :class:`Ext` and every payload bytes, by construction."""
    return _new_tuple(msgpack.ExtType, (code, data))


_new_tuple = tuple.__new__


class _PlainPacker(threading.local):
    """A packer per thread for the codec's own metadata (indices, dtype strings, shapes): it holds
    only types msgpack carries natively, so it needs no walk for bytes-like values and no
    extension hook, and a packer without a hook never re-enters itself."""

    def __init__(self) -> None:
        self.pack = msgpack.Packer(strict_types=True, buf_size=PACK_BUFFER_SIZE).pack


_plain = _PlainPacker()


def all_numbers(items: list) -> bool:
    """Whether a list that starts with a float holds only real numbers, found at C speed.

    ``math.hypot`` reads each item as a float and fails on anything else (no bytes-like, dict or
    list converts to float). A list of floats, the common large list (joint angles, poses), is
    checked in a quarter of the time a type scan takes; other lists are scanned instead. Only lists
    starting with a float are tried, so objects whose ``__float__`` is costly (a CUDA scalar
    tensor) are not converted for nothing. (``math.fsum`` reads them as well, but its exact sum
    costs 2.5x as much on arbitrary floats; ``sum`` would add a following array to the float,
    e.g. ``[stamp, image]``: a full copy on every message.)
    JSON mode's decoder asks the same of orjson's lists, which hold no number-like objects.
    """
    if not items or type(items[0]) is not float:
        return False
    try:
        math.hypot(*items)
    except Exception:  # not all real numbers: the list is walked, and ``default`` says what it holds
        return False  # (a numpy complex scalar's warning is an error here, and any __float__ may raise)
    return True


# hypot reading a numpy complex scalar warns and drops the imaginary part; here that only means
# "not all real", so the warning is made an error (caught above) instead of reaching the user
warnings.filterwarnings("error", category=np.exceptions.ComplexWarning, module=__name__)


def _header_start(buffer_count: int) -> bytes:
    """The header's bytes before the value: array marker, version, buffer count."""
    if buffer_count < len(_HEADER_STARTS):
        return _HEADER_STARTS[buffer_count]
    return _HEADER_PREFIX + _plain.pack(buffer_count)


_HEADER_STARTS = [_HEADER_PREFIX + bytes([count]) for count in range(0x80)]  # counts that are a msgpack fixint


class _EncodeRun:
    """State of one ``encode`` call: the out-of-band buffers collected so far.

    msgpack packs the tree in C. With ``strict_types`` it hands every value it does not carry
    natively to :meth:`default`: tuples, sets, arrays, numpy scalars, datetimes, big ints and plugin
    types. Only bytes-like values need catching before that, because msgpack would copy them into
    the header: :meth:`prepare` finds them, walking only dicts and lists that hold a dict, a list
    or a bytes-like value, and rebuilds only the containers on the way to one.

    Each thread keeps one run and its packers (:data:`_idle_runs`) for its next ``encode``: making
    them costs a 1 KB message a fifth of its encoding time. A packer is mid-pack while its level's
    extension hook runs, so each extension level has a packer of its own.
    """

    __slots__ = ("codec", "buffers", "depth", "inlining", "packers")

    def __init__(self) -> None:
        self.codec: Optional[Codec] = None  # None: idle (not inside an encode)
        self.buffers: Optional[list] = None
        self.inlining: Optional[type] = None  # the type whose inline serializer's output is being packed
        self.depth = -1  # the header's own document is level 0; each extension holding msgpack adds one
        self.packers: list[msgpack.Packer] = []  # by level

    def finish(self, packed: bool) -> None:
        """Make the run idle, holding no reference to the value's buffers, whatever happened.
        After a failure its packers go too: a packer keeps the buffer it grew, and one that
        failed never reached the size check of :meth:`pack` (:data:`MAX_KEPT_PACK_SIZE`)."""
        self.codec = self.buffers = self.inlining = None
        self.depth = -1
        if not packed:
            self.packers.clear()

    def pack(self, value: Any) -> bytes:
        depth = self.depth + 1
        if depth > MAX_DEPTH:
            raise EncodeError(
                f"the value nests extension values (tuples, sets, frozensets, numpy scalars, datetimes, "
                f"plugin objects) more than MAX_DEPTH = {MAX_DEPTH} deep"
            )
        self.depth = depth
        packers = self.packers
        if depth < len(packers):
            packer = packers[depth]
        else:
            packer = msgpack.Packer(default=self.default, strict_types=True, buf_size=PACK_BUFFER_SIZE)
            packers.append(packer)
        packed = packer.pack(self.prepare(value))
        if len(packed) > MAX_KEPT_PACK_SIZE:  # its buffer grew that large: not kept for the next message
            del packers[depth:]
        self.depth = depth - 1
        return packed

    def prepare(self, value: Any) -> Any:
        """``value`` with each bytes-like value in it replaced by its extension (the bytes queued
        as a buffer of their own); dicts and lists are copied only on the way to one."""
        kind = type(value)
        if kind is dict:
            if _WALKED.isdisjoint(map(type, value.values())) and _WALKED.isdisjoint(map(type, value)):
                return value  # a dict of leaves (e.g. ``{seq, data: array}``): two scans, no call
            return self._dict(value, 1)
        if kind is list:
            if all_numbers(value) or _WALKED.isdisjoint(map(type, value)):
                return value
            return self._list(value, 1)
        if kind is bytes or kind is bytearray:
            return _ext(_BYTES_LIKE[kind], _plain.pack(self.out_of_band(value)))
        if kind is memoryview:
            key = (value.format, value.shape, len(self.buffers))
            ext = _VIEW_METADATA.get(key)
            if ext is None:
                if len(_VIEW_METADATA) >= MAX_KEPT_LAYOUTS:
                    _VIEW_METADATA.clear()
                ext = _VIEW_METADATA[key] = _ext(Ext.MEMORYVIEW, _plain.pack([len(self.buffers), value.format,
                                                                              list(value.shape)]))
            self.buffers.append(value.cast("B") if value.c_contiguous else memoryview(value.tobytes()))
            return ext
        return value

    def _dict(self, value: dict, depth: int) -> dict:
        """:meth:`prepare` of a dict ``depth`` lists and maps deep in its extension level that
        may hold a dict, a list or a bytes-like value: one loop over its items (a dict wider
        than :data:`_LOOPED_ITEMS` is first scanned at C speed), copied only if one changed.
        Encoding the 1 KB dict of the benchmarks inside ``{seq, data}`` takes 7.4 µs instead of
        7.8, a list of 30 three-float lists inside ``{seq, data}`` 14.4 instead of 18.2, where each
        level was prepared by one call and its items looked at by another."""
        values = value.values()
        if depth == MAX_NESTING:
            _refuse_containers(values)
        if not _WALKED.isdisjoint(map(type, value)):  # a bytes-like key: a new dict, here, not in a
            rebuilt = {}  # helper: a level costs one frame, so MAX_NESTING holds before Python's limit
            for key, item in value.items():
                key = self.prepare(key)  # before its value: the order of the buffers on the wire
                kind = type(item)
                if kind is list:
                    if not (all_numbers(item) or _WALKED.isdisjoint(map(type, item))):
                        item = self._list(item, depth + 1)
                elif kind is dict:
                    item = self._dict(item, depth + 1)
                elif kind in _WALKED:
                    item = self.prepare(item)
                rebuilt[key] = item
            return rebuilt
        if len(value) > _LOOPED_ITEMS and _WALKED.isdisjoint(map(type, values)):
            return value
        rebuilt = None
        for key, item in value.items():
            kind = type(item)
            if kind in _WALKED:  # inline, not a call to a helper: one frame and call less per level
                if kind is list:
                    if all_numbers(item) or _WALKED.isdisjoint(map(type, item)):
                        continue
                    prepared = self._list(item, depth + 1)
                elif kind is dict:
                    prepared = self._dict(item, depth + 1)
                else:
                    prepared = self.prepare(item)
                if prepared is not item:
                    rebuilt = value.copy() if rebuilt is None else rebuilt
                    rebuilt[key] = prepared
        return value if rebuilt is None else rebuilt

    def _list(self, value: list, depth: int) -> list:
        """:meth:`prepare` of a list ``depth`` deep that holds a dict, a list or a bytes-like value."""
        if depth == MAX_NESTING:
            _refuse_containers(value)
        rebuilt = None
        for index, item in enumerate(value):
            kind = type(item)
            if kind in _WALKED:  # inline, not a call to a helper: one frame and call less per level
                if kind is list:
                    if all_numbers(item) or _WALKED.isdisjoint(map(type, item)):
                        continue
                    prepared = self._list(item, depth + 1)
                elif kind is dict:
                    prepared = self._dict(item, depth + 1)
                else:
                    prepared = self.prepare(item)
                if prepared is not item:
                    rebuilt = value.copy() if rebuilt is None else rebuilt
                    rebuilt[index] = prepared
        return value if rebuilt is None else rebuilt

    def out_of_band(self, buffer: Any) -> int:
        """Queue ``buffer`` as a frame of its own; return its index."""
        self.buffers.append(buffer)
        return len(self.buffers) - 1

    def default(self, value: Any) -> msgpack.ExtType:
        if self.codec.inline_encoders and type(value) is not self.inlining:
            inline = self.codec.inline_encode(value)
            if inline is not None:
                outer, self.inlining = self.inlining, type(value)  # a T its serializer returns is encoded as usual
                packed = self.pack(list(inline))
                self.inlining = outer
                return _ext(Ext.PLUGIN, packed)
        if type(value) is _ARRAY:
            return _ndarray(self.buffers, value)
        encoder = _LEAF_ENCODERS.get(type(value))
        if encoder is not None:
            return encoder(self, value)
        if isinstance(value, np.generic):
            return _ext(Ext.NPSCALAR, self.pack(arrays.scalar_to_wire(value)))
        plugin = self.codec.plugins.encoder_plugin(type(value))
        if plugin is not None:
            return self.plugin(plugin, value)
        if isinstance(value, np.memmap):
            return _ndarray(self.buffers, value)
        raise EncodeError(
            f"cannot encode an object of type {type(value).__module__}.{type(value).__qualname__}: "
            f"no built-in encoder and no plugin handles it; write a Plugin for it and put it in "
            f"<path>/plugins/ with WRAPYFI_PLUGIN_PATHS=<path> (see {PLUGIN_GUIDE})"
        )

    def plugin(self, plugin: Plugin, value: Any) -> msgpack.ExtType:
        key = None
        encode_layout = getattr(plugin, "encode_layout", None)
        if encode_layout is not None and self.depth < MAX_DEPTH:
            try:  # _call_plugin inline: it runs for every tensor of a stream, and a call costs
                found = encode_layout(value)
            except EncodeError:
                raise
            except Exception as error:
                raise _plugin_error(EncodeError, plugin, encode_layout, error) from None
            if found is not None:
                raw, layout = found
                key = (plugin, layout, raw.nbytes, len(self.buffers))
                try:
                    ext = _PLUGIN_METADATA.get(key)
                except TypeError:
                    raise EncodeError(f"plugin {type(plugin).__name__} gave an unhashable layout "
                                      f"{truncate(repr(layout))} from encode_layout") from None
                if ext is not None:
                    self.buffers.append(raw)
                    return ext
        fields = list(self.codec.plugin_fields(plugin, value))
        if len(fields) > 1 and type(fields[1]) is memoryview and self.depth < MAX_DEPTH and _flat_metadata(fields, 2):
            # the common shape (a tensor: raw bytes plus dtype, shape, device …): the byte view
            # becomes its extension and the rest packs as is, without a packer and tree walk of
            # its own; the same bytes as the general path below
            fields[1] = self.prepare(fields[1])
            try:
                packed = _plain.pack(fields)
            except OverflowError:
                pass  # an int beyond 64 bits: the general path makes it an extension
            else:
                ext = _ext(Ext.PLUGIN, packed)
                if key is not None and fields[1].data == _plain.pack([key[3], "B", [key[2]]]):
                    if len(_PLUGIN_METADATA) >= MAX_KEPT_LAYOUTS:
                        _PLUGIN_METADATA.clear()
                    _PLUGIN_METADATA[key] = ext
                return ext
        return _ext(Ext.PLUGIN, self.pack(fields))


_LOOPED_ITEMS = 8
"""Up to this many values, :meth:`_EncodeRun._dict` looks at each value's type in its loop; a
wider dict is first scanned at C speed (about 8 ns per item less, and most wide dicts hold only
leaves), then looped over only if it holds a dict, a list or a bytes-like value."""
MAX_NESTING = 511
"""Lists and maps one extension level may nest when encoding (the walk counts them; msgpack's
unpacker reads 1024). A walk that finds a container deeper raises :class:`EncodeError`."""


def _refuse_containers(items: Iterable) -> None:
    """Raise :class:`EncodeError` if a list or dict :data:`MAX_NESTING` deep holds another."""
    if not _CONTAINERS.isdisjoint(map(type, items)):
        raise EncodeError(f"lists and maps may nest at most {MAX_NESTING} deep in one extension level")


_CONTAINERS = frozenset({dict, list})


def _flat_metadata(fields: list, start: int) -> bool:
    """Whether ``fields[start:]`` are plain scalars and lists of ints only (msgpack packs them as
    they are: no walk, no extension)."""
    for item in fields[start:]:
        kind = type(item)
        if kind not in _PLAIN and (kind is not list or not _INTS.issuperset(map(type, item))):
            return False
    return True


_INTS = frozenset({int})
_BYTES_LIKE = {bytes: Ext.BYTES, bytearray: Ext.BYTEARRAY}
_WALKED = frozenset({dict, list, bytes, bytearray, memoryview})
"""The types :meth:`_EncodeRun.prepare` looks into or replaces; msgpack or ``default`` take the rest
(``default`` packs what extensions hold, tuples' items included, through :meth:`_EncodeRun.pack`)."""
MAX_KEPT_PACK_SIZE = 64 * 1024
"""A packer that packed more than this many bytes is dropped rather than kept for the next message
(its buffer stays as large as the largest document it packed)."""


MAX_KEPT_LAYOUTS = 256
"""Array metadata kept per process and direction (see :data:`_ARRAY_METADATA`, :data:`_ARRAY_LAYOUTS`)."""
MAX_KEPT_METADATA = 96
"""Bytes a received array's metadata may have to be kept: a dtype and a few dimensions."""


def _ndarray(buffers: list, value: np.ndarray) -> msgpack.ExtType:
    """The array's extension; its bytes are appended to ``buffers``."""
    shape = value.shape
    fortran = len(shape) > 1 and value.flags.f_contiguous and not value.flags.c_contiguous
    key = (value.dtype, shape, fortran, len(buffers))
    ext = _ARRAY_METADATA.get(key)
    if ext is None:
        arrays.check_dtype(value.dtype)
        ext = _ext(Ext.NDARRAY, _plain.pack([len(buffers), value.dtype.str, list(shape), fortran]))
        if len(_ARRAY_METADATA) >= MAX_KEPT_LAYOUTS:
            _ARRAY_METADATA.clear()
        _ARRAY_METADATA[key] = ext
    buffers.append(arrays.flat_bytes(value.T if fortran else value))
    return ext


def _lone_array(value: np.ndarray) -> list:
    """``Codec.encode`` of a message that is one array: the same bytes, without a run, a packer or
    a walk (a third of the cost of a 1 KB array); the header is kept with the array's extension."""
    buffers: list = []
    ext = _ndarray(buffers, value)
    header = _LONE_ARRAY_HEADERS.get(ext)
    if header is None:
        header = _header_start(1) + _plain.pack(ext)
        if len(_LONE_ARRAY_HEADERS) >= MAX_KEPT_LAYOUTS:
            _LONE_ARRAY_HEADERS.clear()
        _LONE_ARRAY_HEADERS[ext] = header
    return [header, *buffers]


_LONE_ARRAY_HEADERS: dict[msgpack.ExtType, bytes] = {}
"""The headers of messages that were one array, by the array's extension (bounded as :data:`_ARRAY_METADATA`)."""
_LONE_ARRAY_START = _header_start(1) + b"\xc7"
"""How the header of a message that is one array starts, when its metadata is an ext 8 (any
length but 1, 2, 4, 8 and 16 bytes): then ``[ext length, 9, metadata]`` follow, and a receiver
that decoded that metadata before (:data:`_ARRAY_LAYOUTS`) needs no msgpack parse."""
_LONE_ARRAY_SIZES: set[int] = set()
"""The sizes such a header has when its metadata is kept: a header of another size (a message
that is not one array) costs the test for this path one set lookup. At most 97 sizes."""


def _frame(frame: Any) -> memoryview:
    """A received frame as a memoryview (it usually is one already)."""
    if type(frame) is memoryview:
        return frame
    try:
        return memoryview(frame)
    except TypeError:
        raise DecodeError(f"a frame of type {type(frame).__name__} is not bytes-like") from None


_PLUGIN_METADATA: dict[tuple, msgpack.ExtType] = {}
"""The extensions (packed fields) of plugin objects sent before, by ``(plugin, layout, byte count, buffer
index)``, for plugins with ``encode_layout`` (a CPU tensor: its dtype and shape). A stream's next
tensor then costs the plugin's ``encode_layout`` and a lookup instead of its ``encode``, the checks
of :meth:`Codec.plugin_fields` and a msgpack pack; kept only when the first one took the flat path
and its byte view is the ``byte count`` the key says (bounded as :data:`_ARRAY_METADATA`)."""
_VIEW_METADATA: dict[tuple, msgpack.ExtType] = {}
"""The extensions (packed metadata) of memoryviews sent before (a plugin's raw payload, e.g. a tensor's
bytes), by ``(format, shape, buffer index)``, kept as :data:`_ARRAY_METADATA`."""
_ARRAY_METADATA: dict[tuple, msgpack.ExtType] = {}
"""The extensions (packed metadata) of arrays sent before, by ``(dtype, shape, fortran, buffer index)``: a
stream sends arrays of one dtype and shape, so the next one costs a lookup instead of the dtype
check, ``dtype.str`` and a msgpack pack (bounded like the receiving side's :data:`_ARRAY_LAYOUTS`)."""


def _bigint(run: _EncodeRun, value: int) -> msgpack.ExtType:
    return _ext(Ext.BIGINT, value.to_bytes(value.bit_length() // 8 + 1, "little", signed=True))


_LEAF_ENCODERS = {
    tuple: lambda run, v: _ext(Ext.TUPLE, run.pack(list(v))),
    set: lambda run, v: _ext(Ext.SET, run.pack(list(v))),
    frozenset: lambda run, v: _ext(Ext.FROZENSET, run.pack(list(v))),
    int: _bigint,
    complex: lambda run, v: _ext(Ext.COMPLEX, _COMPLEX.pack(v.real, v.imag)),
    dt.datetime: lambda run, v: _ext(Ext.DATETIME, run.pack(temporal.datetime_to_wire(v))),
    dt.date: lambda run, v: _ext(Ext.DATE, run.pack(temporal.date_to_wire(v))),
    dt.time: lambda run, v: _ext(Ext.TIME, run.pack(temporal.time_to_wire(v))),
    dt.timedelta: lambda run, v: _ext(Ext.TIMEDELTA, run.pack(temporal.timedelta_to_wire(v))),
}


_TIMESTAMP_MARKERS = re.compile(rb"\xff(?<=[\xd6\xd7\x04\x08\x0c]\xff)")
"""The byte pairs that end the start of a msgpack ext of type -1 (Timestamp) in each of its
encodings (fixext 4 ``d6 ff``, fixext 8 ``d7 ff``, ext 8/16/32 of length 4, 8 or 12 ``… 04 ff`` etc.).
msgpack turns those into ``Timestamp`` objects without calling the ext hook, so a header holding
any of these pairs (they also occur inside numbers and strings: then the search finds nothing) is
searched for Timestamps after unpacking. Written as a literal ``ff`` with a look-behind, the
search runs at memchr speed (0.5 µs per KiB); the plain alternation took 16 µs."""
_SCALARS = frozenset({str, int, float, bool, type(None), bytes})


def _refuse_timestamps(value: Any) -> None:
    """Raise :class:`DecodeError` if ``value``'s lists and maps hold a msgpack ``Timestamp``.

    Values built by extension hooks (tuples, sets …) are not entered: their own documents were
    searched when they were unpacked. Iterative, so any list depth is fine."""
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is list:
            if not _SCALARS.issuperset(map(type, item)):
                pending.extend(item)
        elif kind is dict:
            pending.extend(item.keys())
            pending.extend(item.values())
        elif kind is msgpack.Timestamp:
            raise DecodeError("extension code -1 (msgpack Timestamp) is not part of the wire format")


def _unpack_on_heap(data: bytes, ext_hook: Any) -> Any:
    """``msgpack.unpackb`` with its parse stack on the heap instead of the C stack (for deep levels)."""
    unpacker = msgpack.Unpacker(ext_hook=ext_hook, strict_map_key=False, raw=False,
                                max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    value = unpacker.unpack()
    if unpacker.tell() != len(data):
        raise DecodeError(f"{len(data) - unpacker.tell()} extra bytes after an extension's document")
    return value


class _DecodeRun:
    """State of one ``decode`` call: the received buffers that extensions refer to by index, how
    deep the current extension is, and whether documents must be searched for Timestamps.

    Each thread keeps one for its next ``decode`` (:data:`_idle_runs`), as it keeps an encode run."""

    __slots__ = ("codec", "buffers", "depth", "scan", "ext_hook")

    def __init__(self) -> None:
        self.codec: Optional[Codec] = None  # None: idle (not inside a decode)
        self.buffers: Optional[list[memoryview]] = None
        self.depth = 0
        self.scan = False
        self.ext_hook = self._ext_hook  # bound once, not per message

    def unpack_list(self, data: bytes, what: str) -> list:
        """An extension's msgpack list (``what`` names it in errors), whose own extensions are
        decoded too; the depth is checked before unpacking, so a deep message costs no stack
        beyond the limit. Every nested extension holds a list, so this one method serves them all
        and a nesting level costs one Python frame."""
        depth = self.depth + 1
        self.depth = depth
        if depth <= FAST_LEVELS:
            items = msgpack.unpackb(data, ext_hook=self.ext_hook, strict_map_key=False, raw=False)
        elif depth <= MAX_DEPTH:
            items = _unpack_on_heap(data, self.ext_hook)
        else:
            raise DecodeError(f"extension values nest more than MAX_DEPTH = {MAX_DEPTH} deep")
        self.depth = depth - 1
        if self.scan:
            _refuse_timestamps(items)
        if not isinstance(items, list):
            raise DecodeError(f"{what} must hold a list, got {type(items).__name__}")
        return items

    def buffer(self, index: Any) -> memoryview:
        """Frame ``index`` after the header, as a memoryview: the same object each time it is
        asked for (:meth:`plugin` finds a buffer's index by identity)."""
        if type(index) is not int or not 0 <= index < len(self.buffers):
            raise DecodeError(f"buffer index {index!r:.40} out of range (message has {len(self.buffers)})")
        buffer = self.buffers[index]
        if type(buffer) is not memoryview:
            buffer = self.buffers[index] = _frame(buffer)
        return buffer

    def _ext_hook(self, code: int, data: bytes) -> Any:
        if code == _NDARRAY:  # the common extension, decoded here without a call to its decoder
            known = _ARRAY_LAYOUTS.get(data)
            if known is not None:
                return arrays.wrap(known[1], self.buffer(known[0]))
        decoder = _DECODERS.get(code)
        if decoder is None:
            raise DecodeError(f"unknown extension code {code}")
        return decoder(self, data)

    def plugin(self, data: bytes) -> Any:
        kept = self.codec.plugin_layouts.get(data)
        if kept is not None and self.depth < MAX_DEPTH and kept[0] == PluginRegistrar.generation:
            _, plugin, layout, index, nbytes = kept
            buffer = self.buffer(index)
            if buffer.nbytes == nbytes:
                try:  # _call_plugin inline: it runs for every tensor of a stream, and a call costs
                    return plugin.from_layout(layout, buffer)
                except DecodeError:
                    raise
                except Exception as error:
                    raise _plugin_error(DecodeError, plugin, plugin.from_layout, error) from None
        fields = self.unpack_list(data, "plugin payload")
        if not fields or not isinstance(fields[0], str):
            raise DecodeError("plugin payload must start with its codec id")
        raw = fields[1] if len(fields) > 1 else None
        if type(raw) is memoryview and not fields[0].startswith(INLINE_PREFIX):
            plugin = self.codec.decoder_plugin(fields[0])
            decode_layout = getattr(plugin, "decode_layout", None)
            if decode_layout is not None:
                layout = _call_plugin(DecodeError, plugin, decode_layout, tuple(fields))
                index = next((i for i, buffer in enumerate(self.buffers) if buffer is raw), None)
                if index is not None:
                    kept = (PluginRegistrar.generation, plugin, layout, index, raw.nbytes)
                    _keep(self.codec.plugin_layouts, data, kept)
                return _call_plugin(DecodeError, plugin, plugin.from_layout, layout, raw)
        return self.codec.plugin_value(fields)


def _call_plugin(error_type: type, plugin: Plugin, method: Callable, *args: Any) -> Any:
    """``method(*args)`` of ``plugin``; anything it raises but ``error_type`` becomes ``error_type``
    naming the plugin (as :meth:`Codec.plugin_fields` and :meth:`Codec.plugin_value` do)."""
    try:
        return method(*args)
    except error_type:
        raise
    except Exception as error:
        raise _plugin_error(error_type, plugin, method, error) from None


def _plugin_error(error_type: type, plugin: Plugin, method: Callable, error: Exception) -> Exception:
    """The ``error_type`` that :func:`_call_plugin` raises for what ``method`` of ``plugin`` raised."""
    return error_type(f"plugin {type(plugin).__name__} failed in {method.__name__}: "
                      f"{type(error).__name__}: {truncate(error)}")


def _plain_list(data: bytes, what: str) -> list:
    """A leaf extension's metadata (indices, formats, shapes): plain msgpack without the ext hook,
    so it neither recurses nor counts as a level; an extension inside stays an ``ExtType`` and
    fails the type checks that follow."""
    items = msgpack.unpackb(data)
    if not isinstance(items, list):
        raise DecodeError(f"{what} must hold a list, got {type(items).__name__}")
    return items


def _buffer_index(run: _DecodeRun, data: bytes) -> memoryview:
    return run.buffer(msgpack.unpackb(data))


def _memoryview_from_wire(run: _DecodeRun, data: bytes) -> memoryview:
    known = _BYTE_VIEWS.get(data)
    if known is not None:
        buffer = run.buffer(known[0])
        if buffer.nbytes == known[1]:
            return buffer
    index, fmt, shape = _plain_list(data, "memoryview")
    buffer = run.buffer(index)
    if fmt == "B" and shape == [buffer.nbytes]:
        _keep(_BYTE_VIEWS, data, (index, buffer.nbytes))
        return buffer
    return buffer.cast(fmt, shape)


_BYTE_VIEWS: dict[bytes, tuple[int, int]] = {}
"""Received metadata of plain byte views (a plugin's raw payload, e.g. a tensor's bytes), with
the buffer index and size it named: kept and bounded as :data:`_ARRAY_LAYOUTS`."""


def _keep(table: dict, data: bytes, what: Any) -> None:
    """Keep what received metadata ``data`` said, if it is short; forget everything when full."""
    if len(data) <= MAX_KEPT_METADATA:
        if len(table) >= MAX_KEPT_LAYOUTS:
            table.clear()
        table[data] = what


def _array_from_wire(run: _DecodeRun, data: bytes) -> np.ndarray:
    known = _ARRAY_LAYOUTS.get(data)
    if known is not None:
        index, layout = known
        return arrays.wrap(layout, run.buffer(index))
    index, *meta = _plain_list(data, "array")
    buffer = run.buffer(index)
    layout = arrays.layout_from_wire(meta)
    _keep(_ARRAY_LAYOUTS, data, (index, layout))
    if index == 0 and len(data) <= MAX_KEPT_METADATA:
        _LONE_ARRAY_SIZES.add(len(_LONE_ARRAY_START) + 2 + len(data))
    return arrays.wrap(layout, buffer)


_ARRAY_LAYOUTS: dict[bytes, tuple[int, tuple]] = {}
"""Received array metadata (an ndarray extension's bytes, at most :data:`MAX_KEPT_METADATA`)
already parsed and checked, with what it said: a stream's arrays keep their dtype and shape, so
the next message's array costs a lookup instead of a msgpack parse and the dtype and shape
checks (a third of decoding a 1 KB array). Only the buffer's size is checked again per message.
At most :data:`MAX_KEPT_LAYOUTS` are kept (all are forgotten when full), so a peer sending ever
new metadata costs itself time, and this process no memory."""


def _complex_from_wire(run: _DecodeRun, data: bytes) -> complex:
    return complex(*_COMPLEX.unpack(data))


_DECODERS = {
    Ext.TUPLE: lambda run, data: tuple(run.unpack_list(data, "tuple")),
    Ext.SET: lambda run, data: set(run.unpack_list(data, "set")),
    Ext.FROZENSET: lambda run, data: frozenset(run.unpack_list(data, "frozenset")),
    Ext.BIGINT: lambda run, data: int.from_bytes(data, "little", signed=True),
    Ext.COMPLEX: _complex_from_wire,
    Ext.BYTES: lambda run, data: bytes(_buffer_index(run, data)),
    Ext.BYTEARRAY: lambda run, data: bytearray(_buffer_index(run, data)),
    Ext.MEMORYVIEW: _memoryview_from_wire,
    Ext.NDARRAY: _array_from_wire,
    Ext.NPSCALAR: lambda run, data: arrays.scalar_from_wire(run.unpack_list(data, "numpy scalar")),
    Ext.DATETIME: lambda run, data: temporal.datetime_from_wire(run.unpack_list(data, "datetime")),
    Ext.DATE: lambda run, data: temporal.date_from_wire(run.unpack_list(data, "date")),
    Ext.TIME: lambda run, data: temporal.time_from_wire(run.unpack_list(data, "time")),
    Ext.TIMEDELTA: lambda run, data: temporal.timedelta_from_wire(run.unpack_list(data, "timedelta")),
    Ext.PLUGIN: _DecodeRun.plugin,
}


class _IdleRuns(threading.local):
    """Each thread's reusable encode and decode runs (see :class:`_EncodeRun`)."""

    def __init__(self) -> None:
        self.encode = _EncodeRun()
        self.decode = _DecodeRun()


_idle_runs = _IdleRuns()
