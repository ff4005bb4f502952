"""Wrapyfi 0.5.0's JSON wire: values to the frames Wrapyfi's ZeroMQ nodes send, and back.

A Wrapyfi node sends ``json.dumps(value, cls=JsonEncoder)``: stdlib JSON (``", "``/``": "``
separators, ``ensure_ascii``, bare ``NaN``/``Infinity``, insertion order) in which every value JSON
has no form for is a marker ``{"__wrapyfi__": [type_name, payload, *extra]}``. This module writes
exactly those bytes for every value Wrapyfi can carry, so an unmodified Wrapyfi node decodes what
we send, and reads what Wrapyfi nodes send. It does no I/O: the middleware
(``wrapyfi_like.middlewares.wrapyfi_zeromq``) moves the frames.

Where the two differ, on purpose:

- **Exact or an error.** A value arrives as the value that was sent, or :meth:`encode` raises
  :class:`EncodeError` naming its type and what to send instead (bytes, complex, date, time,
  timedelta, frozenset, non-str dict keys, subclasses of JSON types such as ``IntEnum`` or
  ``OrderedDict``, a dict holding the key ``"__wrapyfi__"``, datetimes whose zone JSON cannot name).
  Wrapyfi's own encoder raises ``TypeError`` for some of them and silently changes the others (int
  keys become strings, a namedtuple becomes a tuple). Tuples nested anywhere keep their marker,
  where Wrapyfi's encoder writes inner tuples as lists; Wrapyfi's decoder reads them as tuples.
- **Two numpy exceptions follow Wrapyfi's bytes:** ``np.float64`` and ``np.str_`` subclass
  ``float``/``str``, so stdlib JSON writes them as a plain number/string and they arrive as
  ``float``/``str``; every other numpy scalar goes as a 0-d array and arrives as one.
- **No pickle, no surprise imports.** ``.npy`` payloads are read with ``allow_pickle=False`` after
  their header is checked (object dtypes refused, the data length must match the shape); torch
  tensors with ``weights_only=True``. Markers whose payload is a pickle (:data:`PICKLE_MARKERS`)
  are a :class:`DecodeError` unless the codec is built with ``allow_pickle=True`` (**unsafe**: any
  peer that can reach the socket can then run code in this process). A marker needing torch,
  Pillow or pandas imports it only if the process has already imported it or
  ``allowed_plugins`` names the marker (the rule of :mod:`wrapyfi_like.utils.plugin_set`).
- **Unknown or malformed markers are a** :class:`DecodeError`, where Wrapyfi returns the raw dict.

Limits: containers (lists, dicts, markers) nest at most :data:`MAX_NESTING` deep when encoding, and
anything deeper than Python's JSON parser takes is a :class:`DecodeError`; a peer's text in an
error is truncated and the whole message bounded by :data:`MAX_ERROR_CHARS`. The size of a message
is the transport's ``max_message_size``: on this wire arrays travel inside the JSON as base64.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import importlib
import io
import json
import math
import pickle
import re
import sys
import time
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np

from wrapyfi_like.exceptions import ConfigurationError, DecodeError, EncodeError
from wrapyfi_like.limits import MAX_IMAGE_PIXELS
from wrapyfi_like.logs import truncate

MARKER = "__wrapyfi__"
DATA_TYPES = ("NativeObject", "Image", "AudioChunk")
MAX_NESTING = 500
"""Lists, dicts and markers one value may nest when encoding; Python's JSON parser (about 1000
levels, less the caller's stack) reads anything this deep."""
MAX_ERROR_CHARS = 1000
"""Characters a :class:`DecodeError` from this codec may hold, whatever the peer sent."""
MAX_TEXT_PAYLOAD = 64
"""Characters of a ``datetime``/``numpy.datetime64`` payload (an ISO string is at most ~40)."""
PICKLE_MARKERS = ("PandasData", "PyArrowArray", "TraxArray", "PaddleTensor", "DaskData")
"""Wrapyfi markers whose payload is (or may be) a pickle: refused unless ``allow_pickle=True``."""
PICKLE_DECODABLE = ("PandasData", "PyArrowArray", "TraxArray")
"""The pickle markers decoded with ``allow_pickle=True`` (pickle protocol 5, out-of-band buffers);
``PaddleTensor`` and ``DaskData`` stay refused: their libraries do not install here."""
NPY_MARKERS = {"numpy.ndarray": 2, "JAXTensor": 2, "TensorflowTensor": 2, "MXNetTensor": 3, "CuPyArray": 3}
"""Markers whose payload is base64 ``.npy`` (and, for MXNet/CuPy, a device string), with their
length; all decode to numpy arrays."""
IMAGE_HEADER_PREFIX = b"{timestamp:"
PLUGIN_GUIDE = "docs/plugins.md"

_NPY_MAGIC = b"\x93NUMPY"
_JPEG_MAGIC, _PNG_MAGIC = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"
_JPEG, _PNG = "image/jpeg", "image/png"
_PIL_RAW_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"})
_PIL_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")
_LIBRARY_OF = {"PytorchTensor": "torch", "PILImage": "PIL", "PandasLegacyData": "pandas"}
_OUR_CODEC_IDS = {"torch.Tensor": "PytorchTensor", "PIL.Image": "PILImage",
                  "pandas.DataFrame": "PandasLegacyData", "pandas.Series": "PandasLegacyData"}
_ISO_DATETIME64 = re.compile(r"NaT|-?[0-9]{1,6}(-[0-9]{2}(-[0-9]{2}(T[0-9:]{2,8}(\.[0-9]{1,18})?)?)?)?")


class WrapyfiJsonCodec:
    """Encodes values to, and decodes them from, the frames of Wrapyfi 0.5.0 after the topic frame.

    ``data_type`` (``"NativeObject"``, ``"Image"``, ``"AudioChunk"``) picks the framing: one frame
    of JSON, or Wrapyfi's two frames ``[b"{timestamp:…}", payload]``. For ``Image`` and
    ``AudioChunk`` the values are the ones our data types hand the codec (``Image.to_wire``: an
    array, or ``(mime, bytes)`` when compressed; ``AudioChunk.to_wire``: ``(samples, rate)``), and
    :meth:`decode` returns the same shapes for their ``from_wire``.

    ``allow_pickle=True`` decodes (and, for pandas, encodes) Wrapyfi's pickle-based markers:
    **unsafe**, since any peer that can send to this process can then make it run code.
    ``allowed_plugins`` names markers (``"PytorchTensor"``, ``"PILImage"``,
    ``"PandasLegacyData"``, or our codec ids ``"torch.Tensor"``…) whose library a received message
    may import; otherwise only libraries already imported are used. ``load_torch_device`` and
    ``map_torch_devices`` choose where received tensors go (docs/plugins.md); other keyword
    arguments (the communicator's) are ignored.
    """

    def __init__(self, data_type: str = "NativeObject", allow_pickle: bool = False,
                 allowed_plugins: Iterable[str] = (), **plugin_kwargs: Any) -> None:
        if data_type not in DATA_TYPES:
            raise ConfigurationError(f"Wrapyfi's wire carries the data types {DATA_TYPES}, not {data_type!r:.100}")
        if type(allow_pickle) is not bool:
            raise ConfigurationError(f"allow_pickle must be True or False, got {allow_pickle!r:.100}")
        names = () if isinstance(allowed_plugins, str) else tuple(allowed_plugins)
        if isinstance(allowed_plugins, str) or not all(isinstance(name, str) for name in names):
            raise ConfigurationError(f"allowed_plugins must be a list of marker names, got {allowed_plugins!r:.200}")
        self.data_type = data_type
        self.allow_pickle = allow_pickle
        self._allowed = frozenset(_OUR_CODEC_IDS.get(name, name) for name in names)
        self._torch_devices = {key: plugin_kwargs[key] for key in ("load_torch_device", "map_torch_devices")
                               if plugin_kwargs.get(key) is not None}
        self._torch_router: Any = None
        if self._torch_devices:  # the user asked for torch: check the mapping now, not at the first tensor
            self._router()

    # -- pub/sub frames --------------------------------------------------------------------------

    def encode(self, value: Any) -> list[bytes]:
        """The frames after the topic: ``[json]``, or ``[timestamp header, payload]`` for Image and
        AudioChunk. Raises :class:`EncodeError` naming any value Wrapyfi's wire cannot carry exactly."""
        if self.data_type == "NativeObject":
            return [self.dumps(value)]
        header = ("{timestamp:" + str(time.time()) + "}").encode()
        if self.data_type == "Image":
            if _is_compressed(value):
                return [header, bytes(value[1])]
            return [header, self.dumps(_checked_array(value, "an Image"))]
        samples, rate = _audio_parts(value)
        chunk, channels = samples.shape if samples.ndim > 1 else (samples.shape[0], 1)
        return [header, self.dumps((chunk, channels, rate, samples))]

    def decode(self, frames: Sequence[Any]) -> Any:
        """The value of the frames after the topic; anything malformed is a :class:`DecodeError`."""
        expected = 1 if self.data_type == "NativeObject" else 2
        if len(frames) != expected:
            raise DecodeError(f"a Wrapyfi {self.data_type} message has {expected} frame(s) after the topic, "
                              f"got {len(frames)}")
        if self.data_type == "NativeObject":
            return self.loads(frames[0])
        payload = memoryview(frames[1])
        if self.data_type == "Image":
            if payload[:1] != b"{":
                return _compressed_image(payload)
            return _checked_array(self.loads(payload), "a received Image", DecodeError)
        value = self.loads(payload)
        if not (type(value) is tuple and len(value) == 4):
            raise DecodeError("a Wrapyfi AudioChunk is a tuple (chunk, channels, rate, samples)")
        chunk, channels, rate, samples = value
        return _audio_value(chunk, channels, rate, _checked_array(samples, "received audio", DecodeError))

    # -- request/reply frames --------------------------------------------------------------------

    def encode_request(self, args: Sequence[Any], kwargs: dict) -> bytes:
        """One request frame, as Wrapyfi clients write it: ``[{"__wrapyfi__": ["tuple", args]}, kwargs]``."""
        return self.dumps([tuple(args), dict(kwargs)])

    def decode_request(self, frame: Any) -> tuple[tuple, dict]:
        """``(args, kwargs)`` of a request frame; a :class:`DecodeError` if it is not ``[args, kwargs]``."""
        request = self.loads(frame)
        if not (type(request) is list and len(request) == 2 and type(request[0]) in (tuple, list)
                and type(request[1]) is dict):
            raise DecodeError("a Wrapyfi request is [args, kwargs]")
        return tuple(request[0]), request[1]

    def encode_reply(self, value: Any, data_type: Optional[str] = None) -> bytes:
        """One reply frame. NativeObject: the value's JSON. Image: ``{"img": nested lists}`` or the
        compressed bytes; AudioChunk: ``{"aud": [chunk, channels, rate, nested lists]}`` (Wrapyfi's
        servers use plain ``tolist()`` JSON for these, not the markers of pub/sub)."""
        data_type = data_type or self.data_type
        if data_type == "NativeObject":
            return self.dumps(value)
        if data_type == "Image":
            if _is_compressed(value):
                return bytes(value[1])
            return json.dumps({"img": _checked_array(value, "an Image").tolist()}).encode()
        if data_type == "AudioChunk":
            samples, rate = _audio_parts(value)
            chunk, channels = samples.shape if samples.ndim > 1 else (samples.shape[0], 1)
            return json.dumps({"aud": (chunk, channels, rate, samples.tolist())}).encode()
        raise ConfigurationError(f"Wrapyfi's wire carries the data types {DATA_TYPES}, not {data_type!r:.100}")

    def decode_reply(self, frame: Any, data_type: Optional[str] = None) -> Any:
        """The value of a reply frame (see :meth:`encode_reply`). Image replies come back as
        ``uint8`` arrays when their numbers are integers and ``float32`` otherwise, as a Wrapyfi
        client with ``fp`` set accordingly reads them."""
        data_type = data_type or self.data_type
        if data_type == "NativeObject":
            return self.loads(frame)
        payload = memoryview(frame)
        if data_type == "Image":
            if payload[:1] != b"{":
                return _compressed_image(payload)
            reply = self.loads(payload)
            if not (type(reply) is dict and list(reply) == ["img"]):
                raise DecodeError('a Wrapyfi Image reply is {"img": [...]}')
            return _image_from_lists(reply["img"])
        if data_type == "AudioChunk":
            reply = self.loads(payload)
            parts = reply.get("aud") if type(reply) is dict and len(reply) == 1 else None
            if not (type(parts) is list and len(parts) == 4):
                raise DecodeError('a Wrapyfi AudioChunk reply is {"aud": [chunk, channels, rate, samples]}')
            chunk, channels, rate, samples = parts
            return _audio_value(chunk, channels, rate, _float32_from_lists(samples))
        raise ConfigurationError(f"Wrapyfi's wire carries the data types {DATA_TYPES}, not {data_type!r:.100}")

    # -- JSON documents --------------------------------------------------------------------------

    def dumps(self, value: Any) -> bytes:
        """``value`` as Wrapyfi's JSON, UTF-8 encoded."""
        tree = self._prepare(value, 0)
        try:
            return json.dumps(tree).encode()
        except (ValueError, RecursionError) as error:  # an int of more than sys.get_int_max_str_digits() digits
            raise EncodeError(f"cannot encode this {_type_name(value)} on Wrapyfi's wire: {truncate(error)}") from None

    def loads(self, frame: Any) -> Any:
        """The value of one JSON document from a Wrapyfi peer (any bytes-like object)."""
        try:
            return json.loads(str(memoryview(frame), "utf-8"), object_hook=self._marker_value)
        except DecodeError as error:
            if len(error.args[0]) > MAX_ERROR_CHARS:
                raise DecodeError(truncate(error.args[0], MAX_ERROR_CHARS)) from None
            raise
        except RecursionError:
            raise DecodeError("malformed Wrapyfi message: nested deeper than the JSON parser allows") from None
        except Exception as error:
            raise DecodeError(f"malformed Wrapyfi message: {type(error).__name__}: {truncate(error)}") from None

    # -- encoding --------------------------------------------------------------------------------

    def _prepare(self, value: Any, depth: int) -> Any:
        """``value`` as a tree of JSON types and markers that ``json.dumps`` writes as Wrapyfi does."""
        kind = type(value)
        if kind in _PLAIN:
            return value
        if kind is np.float64 or kind is np.str_:  # stdlib JSON (so Wrapyfi) writes these subclasses plainly
            return _PLAIN_OF[kind](value)
        if depth >= MAX_NESTING:
            raise EncodeError(f"this value nests lists, dicts, tuples or sets more than MAX_NESTING = {MAX_NESTING} deep")
        depth += 1
        if kind is list:
            return [self._prepare(item, depth) for item in value]
        if kind is dict:
            return {_checked_key(key): self._prepare(item, depth) for key, item in value.items()}
        if kind is tuple:
            return {MARKER: ["tuple", [self._prepare(item, depth) for item in value]]}
        if kind is set:
            return {MARKER: ["set", [self._prepare(item, depth) for item in value]]}
        encoder = _LEAF_ENCODERS.get(kind)
        if encoder is not None:
            return encoder(value)
        library_encoder = self._library_encoder(value)
        if library_encoder is not None:
            return library_encoder(value)
        raise EncodeError(_unsupported(value))

    def _library_encoder(self, value: Any) -> Optional[Callable[[Any], dict]]:
        """The encoder of a torch tensor, PIL image or pandas object (libraries never imported here:
        a value of theirs exists only if the process imported them)."""
        root = type(value).__module__.partition(".")[0]
        if root == "torch" and isinstance(value, sys.modules["torch"].Tensor):
            return _torch_marker
        if root == "PIL" and isinstance(value, sys.modules["PIL.Image"].Image):
            return _pil_marker
        if root == "pandas" and type(value) in (sys.modules["pandas"].DataFrame, sys.modules["pandas"].Series):
            return self._pandas_marker
        return None

    def _pandas_marker(self, value: Any) -> dict:
        """pandas objects: pickle (``PandasData``, what Wrapyfi with pandas >= 2 reads) if the user
        allowed pickle, else ``to_json(orient="split")`` (``PandasLegacyData``), checked to come back
        identical."""
        if self.allow_pickle:
            buffers: list = []
            data = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
            return {MARKER: ["PandasData", data.decode("latin1"),
                             *(base64.b64encode(memoryview(buffer)).decode("ascii") for buffer in buffers)]}
        pandas = sys.modules["pandas"]
        is_frame = type(value) is pandas.DataFrame
        text = (value if is_frame else value.to_frame()).to_json(orient="split")
        marker = ["PandasLegacyData", base64.b64encode(text.encode()).decode("ascii"), "DataFrame" if is_frame else "Series"]
        try:
            back = _pandas_from_json(pandas, text.encode(), marker[2])
            (pandas.testing.assert_frame_equal if is_frame else pandas.testing.assert_series_equal)(
                value, back, check_exact=True)
        except (AssertionError, ValueError, TypeError) as error:
            raise EncodeError(
                f"this pandas {marker[2]} does not survive pandas' JSON, the only pickle-free form Wrapyfi has "
                f"({truncate(str(error).strip().splitlines()[0] if str(error).strip() else error)}); send its columns as "
                "numpy arrays, or pass allow_pickle=True to send Wrapyfi's pickle (PandasData)"
            ) from None
        return {MARKER: marker}

    # -- decoding --------------------------------------------------------------------------------

    def _marker_value(self, obj: dict) -> Any:
        """``json.loads``'s object hook: a marker dict becomes its value; other dicts stay."""
        fields = obj.get(MARKER)
        if fields is None:
            return obj
        if len(obj) != 1 or type(fields) is not list or not fields or type(fields[0]) is not str:
            raise DecodeError(f'a Wrapyfi marker is {{"{MARKER}": [type_name, payload, ...]}} alone, got '
                              f"{truncate(repr(obj))}")
        name = fields[0]
        decoder = _MARKER_DECODERS.get(name)
        if decoder is not None:
            return decoder(self, name, fields)
        if name in PICKLE_MARKERS:
            return self._pickled(name, fields)
        raise DecodeError(f"unknown Wrapyfi marker {truncate(repr(name))}: this wire decodes "
                          f"{', '.join(sorted(_MARKER_DECODERS))} (docs/wire.md)")

    def _library(self, name: str, module: str) -> Any:
        """The module a marker ``name`` needs, imported only under the rule in the module docstring."""
        library = _LIBRARY_OF[name]
        if library not in sys.modules and name not in self._allowed:
            raise DecodeError(
                f"the Wrapyfi marker {name} needs {library}, which this process has not imported: a received "
                f"message imports a library only if the listener allows it, e.g. allowed_plugins=[{name!r}] "
                f"({PLUGIN_GUIDE})"
            )
        try:
            return importlib.import_module(module)
        except ImportError:
            raise DecodeError(f"the Wrapyfi marker {name} needs {library}, which is not installed") from None

    def _pickled(self, name: str, fields: list) -> Any:
        if not self.allow_pickle:
            raise DecodeError(
                f"the Wrapyfi marker {name} carries a pickle, which could run code chosen by the sender; "
                "refused (to accept it from peers you fully trust, build the codec with allow_pickle=True, "
                "documented as unsafe in docs/wire.md)"
            )
        if name not in PICKLE_DECODABLE:
            raise DecodeError(f"the Wrapyfi marker {name} is not supported by wrapyfi_like, even with allow_pickle=True")
        if len(fields) < 2 or not all(type(field) is str for field in fields[1:]):
            raise DecodeError(f"a {name} marker is [name, pickle as latin-1 text, base64 buffers...]")
        try:
            data = fields[1].encode("latin1")
        except UnicodeEncodeError:
            raise DecodeError(f"the pickle of a {name} marker is not latin-1 text") from None
        buffers = [_b64(text, name) for text in fields[2:]]
        return pickle.loads(data, buffers=buffers)

    def _router(self) -> Any:
        if self._torch_router is None:
            from wrapyfi_like.plugins.torch_devices import DeviceRouter, build_device_map
            self._torch_router = DeviceRouter(build_device_map(**self._torch_devices))
        return self._torch_router


# -- leaf encoders ---------------------------------------------------------------------------------

_PLAIN = frozenset({str, int, float, bool, type(None)})
_PLAIN_OF = {np.float64: float, np.str_: str}


def _checked_key(key: Any) -> str:
    if type(key) is not str:
        raise EncodeError(
            f"dict key {truncate(repr(key), 80)} ({_type_name(key)}): Wrapyfi's JSON has only str keys and would "
            "turn it into a string; use str keys (or a list of (key, value) tuples)"
        )
    if key == MARKER:
        raise EncodeError(f"a dict with the key {MARKER!r} would be read as a Wrapyfi marker by every receiver; rename the key")
    return key


def _datetime_marker(value: dt.datetime) -> dict:
    zone = value.tzinfo
    if zone is not None and (type(zone) is not dt.timezone
                             or zone.tzname(None) != dt.timezone(zone.utcoffset(None)).tzname(None)):
        raise EncodeError(
            f"a datetime in time zone {truncate(repr(zone), 80)} arrives with a fixed UTC offset on Wrapyfi's wire "
            "(isoformat keeps only the offset); convert it to datetime.timezone.utc or a datetime.timezone(offset) first"
        )
    if value.fold:
        raise EncodeError("a datetime with fold=1 loses its fold in isoformat(); send value.replace(fold=0) or a UTC datetime")
    return {MARKER: ["datetime", value.isoformat()]}


def _datetime64_marker(value: np.datetime64) -> dict:
    text = str(value)
    back = np.datetime64(text)
    if back.dtype != value.dtype or not (back == value or (np.isnat(back) and np.isnat(value))):
        raise EncodeError(
            f"numpy.datetime64 {text!r} of dtype {value.dtype} would arrive as dtype {back.dtype} (its text form "
            "does not keep the unit); send np.array(value), which keeps the dtype (as a 0-d array)"
        )
    return {MARKER: ["numpy.datetime64", text]}


def _npy_text(array: Any) -> str:
    if np.asarray(array).dtype.hasobject:
        raise EncodeError(
            f"numpy arrays of dtype {array.dtype} hold Python objects, which .npy stores as a pickle; "
            "receivers refuse pickle: convert to a plain dtype (e.g. arr.astype(str) or float)"
        )
    with io.BytesIO() as memfile:
        np.save(memfile, array, allow_pickle=False)
        return base64.b64encode(memfile.getvalue()).decode("ascii")


def _ndarray_marker(value: Any) -> dict:
    return {MARKER: ["numpy.ndarray", _npy_text(value)]}


def _torch_marker(value: Any) -> dict:
    torch = sys.modules["torch"]
    if value.layout != torch.strided:
        raise EncodeError(f"torch tensors with layout {value.layout} cannot be sent; convert with .to_dense() first")
    if value.untyped_storage().nbytes() != value.numel() * value.element_size():
        value = value.clone()  # a view: torch.save would write its whole storage
    with io.BytesIO() as memfile:
        torch.save(value, memfile)
        data = base64.b64encode(memfile.getvalue()).decode("ascii")
    return {MARKER: ["PytorchTensor", data, str(value.device)]}


def _pil_marker(value: Any) -> dict:
    if value.format is None:
        if value.mode not in _PIL_RAW_MODES:
            raise EncodeError(
                f"a raw PIL image of mode {value.mode!r} cannot be sent exactly on Wrapyfi's wire (it carries only "
                "the pixel bytes, size and mode: a palette is lost); convert it (e.g. image.convert('RGB'))"
            )
        return {MARKER: ["PILImage", base64.b64encode(value.tobytes()).decode("ascii"), list(value.size), value.mode]}
    with io.BytesIO() as memfile:
        value.save(memfile, format=value.format)
        return {MARKER: ["PILImage", memfile.getvalue().decode("latin1")]}


_LEAF_ENCODERS: dict[type, Callable[[Any], dict]] = {
    dt.datetime: _datetime_marker,
    np.datetime64: _datetime64_marker,
    np.ndarray: _ndarray_marker,
    **{kind: _ndarray_marker for kind in (
        np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
        np.float16, np.float32, np.longdouble, np.complex64, np.complex128, np.clongdouble,
        np.timedelta64, np.bytes_, np.void)},
}

_ADVICE = {
    bytes: "Wrapyfi's JSON has no bytes: send np.frombuffer(value, np.uint8) or base64 text",
    bytearray: "Wrapyfi's JSON has no bytes: send np.frombuffer(value, np.uint8) or base64 text",
    memoryview: "Wrapyfi's JSON has no bytes: send np.frombuffer(value, np.uint8) or base64 text",
    complex: "Wrapyfi's JSON has no complex numbers: send (value.real, value.imag) or a numpy complex array",
    dt.date: "Wrapyfi's wire has no dates (its encoder raises TypeError): send a datetime.datetime or value.isoformat()",
    dt.time: "Wrapyfi's wire has no times of day: send value.isoformat()",
    dt.timedelta: "Wrapyfi's wire has no timedelta: send value.total_seconds()",
    frozenset: "Wrapyfi's wire has sets but no frozenset (its encoder raises TypeError): send set(value)",
}


def _unsupported(value: Any) -> str:
    kind = type(value)
    advice = _ADVICE.get(kind)
    if advice is None:
        base = next((base for base in (tuple, dict, list, str, int, float) if isinstance(value, base)), None)
        if base is not None:
            advice = (f"it is a subclass of {base.__name__}, which Wrapyfi's JSON would send as a plain "
                      f"{base.__name__} the receiver cannot tell apart: send {base.__name__}(value)")
        else:
            advice = ("Wrapyfi's wire carries JSON types, tuple, set, datetime, numpy arrays and scalars, "
                      "numpy.datetime64, torch tensors, PIL images and pandas DataFrame/Series")
    return f"cannot encode {_type_name(value)} on Wrapyfi's wire (wire='wrapyfi'): {advice}"


def _type_name(value: Any) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


# -- marker decoders -------------------------------------------------------------------------------


def _fields(name: str, fields: list, count: int) -> list:
    if len(fields) != count:
        raise DecodeError(f"a Wrapyfi {name} marker has {count} fields, got {len(fields)}")
    return fields


def _text(name: str, value: Any, limit: Optional[int] = None) -> str:
    if type(value) is not str or (limit is not None and len(value) > limit):
        raise DecodeError(f"the payload of a Wrapyfi {name} marker must be a string"
                          + (f" of at most {limit} characters" if limit else "") + f", got {truncate(repr(value), 80)}")
    return value


def _tuple(codec: WrapyfiJsonCodec, name: str, fields: list) -> tuple:
    items = _fields(name, fields, 2)[1]
    if type(items) is not list:
        raise DecodeError("the payload of a Wrapyfi tuple marker must be a list")
    return tuple(items)


def _set(codec: WrapyfiJsonCodec, name: str, fields: list) -> set:
    items = _fields(name, fields, 2)[1]
    if type(items) is not list:
        raise DecodeError("the payload of a Wrapyfi set marker must be a list")
    try:
        return set(items)
    except TypeError:
        raise DecodeError("a Wrapyfi set marker holds an unhashable item (a list or dict)") from None


def _datetime(codec: WrapyfiJsonCodec, name: str, fields: list) -> dt.datetime:
    text = _text(name, _fields(name, fields, 2)[1], MAX_TEXT_PAYLOAD)
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise DecodeError(f"not an ISO datetime: {text!r}") from None


def _datetime64(codec: WrapyfiJsonCodec, name: str, fields: list) -> np.datetime64:
    text = _text(name, _fields(name, fields, 2)[1], MAX_TEXT_PAYLOAD)
    if not _ISO_DATETIME64.fullmatch(text):
        raise DecodeError(f"not a numpy.datetime64 text: {text!r}")
    try:
        return np.datetime64(text)
    except ValueError:
        raise DecodeError(f"not a numpy.datetime64 text: {text!r}") from None


def _b64(text: str, name: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError(f"the payload of a Wrapyfi {name} marker is not valid base64") from None


def _array(codec: WrapyfiJsonCodec, name: str, fields: list) -> np.ndarray:
    _fields(name, fields, NPY_MARKERS[name])
    if len(fields) == 3:
        _text(name, fields[2], MAX_TEXT_PAYLOAD)  # the sender's device: a numpy array lives on the host
    return _npy_array(_b64(_text(name, fields[1]), name), name)


def _npy_array(data: bytes, name: str) -> np.ndarray:
    """The array of a ``.npy`` file, read without pickle once its header proves the data length."""
    if not data.startswith(_NPY_MAGIC):
        raise DecodeError(f"the payload of a Wrapyfi {name} marker is not a .npy file")
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise DecodeError(f"the .npy file of a Wrapyfi {name} marker has version {version}; 1.0 and 2.0 are read")
    except DecodeError:
        raise
    except Exception as error:
        raise DecodeError(f"bad .npy header in a Wrapyfi {name} marker: {truncate(error)}") from None
    if dtype.hasobject:
        raise DecodeError(f"the .npy array of a Wrapyfi {name} marker has dtype {truncate(dtype)}, which holds "
                          "Python objects (a pickle): refused")
    expected = math.prod(shape) * dtype.itemsize
    if expected != len(data) - stream.tell():
        raise DecodeError(f"a .npy array of shape {truncate(shape, 80)} and dtype {truncate(dtype, 80)} needs "
                          f"{expected} bytes of data, the payload has {len(data) - stream.tell()}")
    stream.seek(0)
    return np.lib.format.read_array(stream, allow_pickle=False)


def _torch(codec: WrapyfiJsonCodec, name: str, fields: list) -> Any:
    _, text, device = _fields(name, fields, 3)
    data = _b64(_text(name, text), name)
    device = _text(name, device, MAX_TEXT_PAYLOAD)
    torch = codec._library(name, "torch")
    from wrapyfi_like.plugins.torch_devices import normalise_device
    try:
        target = codec._router().target(normalise_device(device))
    except ConfigurationError:
        raise DecodeError(f"bad torch device {device!r} in a Wrapyfi {name} marker") from None
    try:
        tensor = torch.load(io.BytesIO(data), map_location=target, weights_only=True)
    except Exception as error:
        raise DecodeError(f"cannot load the tensor of a Wrapyfi {name} marker: {type(error).__name__}: "
                          f"{truncate(error)}") from None
    if not isinstance(tensor, torch.Tensor):
        raise DecodeError(f"a Wrapyfi {name} marker holds a {type(tensor).__name__}, not a tensor")
    return tensor


def _pil(codec: WrapyfiJsonCodec, name: str, fields: list) -> Any:
    if len(fields) not in (2, 4):
        raise DecodeError(f"a Wrapyfi {name} marker has 2 fields (encoded) or 4 (raw), got {len(fields)}")
    image_module = codec._library(name, "PIL.Image")
    text = _text(name, fields[1])
    if len(fields) == 4:
        size, mode = fields[2], fields[3]
        if not (type(size) is list and len(size) == 2 and all(type(side) is int and side >= 0 for side in size)):
            raise DecodeError(f"the size of a raw Wrapyfi {name} is [width, height], got {truncate(repr(size), 80)}")
        if mode not in _PIL_RAW_MODES:
            raise DecodeError(f"a raw Wrapyfi {name} of mode {truncate(repr(mode), 40)} is not read")
        _check_pixels(size[0], size[1])
        try:
            return image_module.frombytes(mode, tuple(size), _b64(text, name), "raw")
        except ValueError as error:
            raise DecodeError(f"bad raw Wrapyfi {name}: {truncate(error)}") from None
    try:
        data = text.encode("latin1")
    except UnicodeEncodeError:
        raise DecodeError(f"the file of an encoded Wrapyfi {name} is not latin-1 text") from None
    try:
        image = image_module.open(io.BytesIO(data), formats=_PIL_FORMATS)
        _check_pixels(*image.size)
        image.load()
    except DecodeError:
        raise
    except Exception as error:
        raise DecodeError(f"bad encoded Wrapyfi {name}: {type(error).__name__}: {truncate(error)}") from None
    return image


def _check_pixels(width: int, height: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise DecodeError(f"an image of {width}x{height} pixels exceeds MAX_IMAGE_PIXELS = {MAX_IMAGE_PIXELS}")


def _pandas(codec: WrapyfiJsonCodec, name: str, fields: list) -> Any:
    _, text, kind = _fields(name, fields, 3)
    if kind not in ("DataFrame", "Series"):
        raise DecodeError(f"a Wrapyfi {name} marker holds a DataFrame or Series, not {truncate(repr(kind), 40)}")
    data = _b64(_text(name, text), name)
    pandas = codec._library(name, "pandas")
    try:
        return _pandas_from_json(pandas, data, kind)
    except Exception as error:
        raise DecodeError(f"bad Wrapyfi {name}: {type(error).__name__}: {truncate(error)}") from None


def _pandas_from_json(pandas: Any, data: bytes, kind: str) -> Any:
    frame = pandas.read_json(io.BytesIO(data), orient="split")
    return frame if kind == "DataFrame" else frame.iloc[:, 0]


_MARKER_DECODERS: dict[str, Callable[[WrapyfiJsonCodec, str, list], Any]] = {
    "tuple": _tuple,
    "set": _set,
    "datetime": _datetime,
    "numpy.datetime64": _datetime64,
    **{name: _array for name in NPY_MARKERS},
    "PytorchTensor": _torch,
    "PILImage": _pil,
    "PandasLegacyData": _pandas,
}


# -- Image and AudioChunk --------------------------------------------------------------------------


def _is_compressed(value: Any) -> bool:
    return type(value) is tuple and len(value) == 2 and value[0] in (_JPEG, _PNG)


def _compressed_image(payload: memoryview) -> tuple[str, bytes]:
    """A compressed frame as ``Image.from_wire`` takes it: Wrapyfi sends JPEG (``jpg=True``)."""
    data = bytes(payload)
    if data.startswith(_JPEG_MAGIC):
        return _JPEG, data
    if data.startswith(_PNG_MAGIC):
        return _PNG, data
    raise DecodeError(f"a Wrapyfi Image payload is JSON, JPEG or PNG; this one starts {data[:8]!r}")


def _checked_array(value: Any, what: str, error: type = EncodeError) -> np.ndarray:
    if type(value) is not np.ndarray:
        raise error(f"{what} must be a numpy array, got {_type_name(value)}")
    return value


def _audio_parts(value: Any) -> tuple[np.ndarray, int]:
    if not (type(value) is tuple and len(value) == 2):
        raise EncodeError(f"an AudioChunk is (samples, rate), got {_type_name(value)}")
    samples, rate = value
    samples = _checked_array(samples, "AudioChunk samples")
    if samples.ndim not in (1, 2) or type(rate) is not int:
        raise EncodeError("an AudioChunk is (samples of shape (chunk,) or (chunk, channels), int rate)")
    return np.require(samples, dtype=np.float32, requirements="C"), rate


def _audio_value(chunk: Any, channels: Any, rate: Any, samples: np.ndarray) -> tuple[np.ndarray, int]:
    """``(samples of shape (chunk, channels), rate)``, as ``AudioChunk.from_wire`` takes it."""
    if not all(type(number) is int and number >= 0 for number in (chunk, channels, rate)):
        raise DecodeError("a Wrapyfi AudioChunk's chunk, channels and rate are non-negative ints")
    if samples.size != chunk * channels:
        raise DecodeError(f"a Wrapyfi AudioChunk of {chunk}x{channels} samples holds {samples.size}")
    return samples.reshape(chunk, channels), rate


def _image_from_lists(rows: Any) -> np.ndarray:
    try:
        image = np.array(rows)
    except (ValueError, TypeError) as error:
        raise DecodeError(f"a Wrapyfi Image reply is not a rectangular array of numbers: {truncate(error)}") from None
    if image.dtype.kind in "iub":
        if image.size and (image.min() < 0 or image.max() > 255):
            raise DecodeError("a Wrapyfi Image reply of integers holds values outside 0..255")
        return image.astype(np.uint8)
    if image.dtype.kind == "f":
        return image.astype(np.float32)
    raise DecodeError(f"a Wrapyfi Image reply holds {image.dtype} values, not numbers")


def _float32_from_lists(samples: Any) -> np.ndarray:
    try:
        array = np.array(samples, dtype=np.float32)
    except (ValueError, TypeError) as error:
        raise DecodeError(f"Wrapyfi AudioChunk samples are not a rectangular array of numbers: {truncate(error)}") from None
    return array
