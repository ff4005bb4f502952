"""Wrapyfi 0.5.0's markers: ``{"__wrapyfi__": [type_name, payload, *extra]}``, each value JSON has no
form for, to and from its marker; :mod:`wrapyfi_like.middlewares.wrapyfi_zeromq.json_codec` walks the JSON around them.

Payloads are untrusted: every field's type and size is checked, ``.npy`` files are read without
pickle once their header proves the data length, torch tensors load with ``weights_only=True``.
Markers whose payload is a pickle (:data:`PICKLE_MARKERS`) are refused unless the codec allows
pickle. A marker needing torch, Pillow or pandas imports it only if the process has already
imported it or ``allowed_plugins`` names the marker (the rule of :mod:`wrapyfi_like.utils.plugin_set`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import importlib
import io
import math
import pickle
import re
import sys
from typing import Any, Callable, Iterable, Optional

import numpy as np

from wrapyfi_like.exceptions import ConfigurationError, DecodeError, EncodeError
from wrapyfi_like.limits import MAX_IMAGE_PIXELS
from wrapyfi_like.logs import truncate

MARKER = "__wrapyfi__"
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
PLUGIN_GUIDE = "docs/plugins.md"

_NPY_MAGIC = b"\x93NUMPY"
_PIL_RAW_MODES = {"1": 0, "L": 1, "LA": 2, "I": 4, "I;16": 2, "F": 4, "RGB": 3, "RGBA": 4, "RGBX": 4, "CMYK": 4,
                  "YCbCr": 3, "LAB": 3, "HSV": 3}
"""Pillow modes a raw image travels in, with their bytes per pixel ("1": one bit, rows padded to bytes)."""
_PIL_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")
_LIBRARY_OF = {"PytorchTensor": "torch", "PILImage": "PIL", "PandasLegacyData": "pandas"}
_OUR_CODEC_IDS = {"torch.Tensor": "PytorchTensor", "PIL.Image": "PILImage",
                  "pandas.DataFrame": "PandasLegacyData", "pandas.Series": "PandasLegacyData"}
_ISO_DATETIME64 = re.compile(r"NaT|-?[0-9]{1,20}(-[0-9]{2}(-[0-9]{2}(T[0-9:]{2,8}(\.[0-9]{1,18})?)?)?)?")


class Markers:
    """One codec's marker settings: the pickle opt-in, the markers whose library a received message
    may import (``allowed_plugins``), and where received torch tensors go."""

    def __init__(self, allow_pickle: bool, allowed_plugins: Optional[Iterable[str]], torch_devices: dict) -> None:
        names = () if allowed_plugins is None or isinstance(allowed_plugins, str) else tuple(allowed_plugins)
        if isinstance(allowed_plugins, str) or not all(isinstance(name, str) for name in names):
            raise ConfigurationError(f"allowed_plugins must be a list of marker names, got {allowed_plugins!r:.200}")
        self.allow_pickle = allow_pickle
        self._allowed = frozenset(_OUR_CODEC_IDS.get(name, name) for name in names)
        self._torch_devices = torch_devices
        self._torch_router: Any = None
        if torch_devices:  # the user asked for torch: check the mapping now, not at the first tensor
            self.router()

    def encode(self, value: Any) -> dict:
        """The marker of a value that is not a JSON container; :class:`EncodeError` if it has none."""
        encoder = _LEAF_ENCODERS.get(type(value))
        if encoder is not None:
            return encoder(value)
        if isinstance(value, np.generic):  # every other numpy scalar: a 0-d array, as Wrapyfi sends it
            return _ndarray_marker(value)
        library_encoder = self._library_encoder(value)
        if library_encoder is not None:
            return library_encoder(value)
        raise EncodeError(unsupported(value))

    def decode(self, fields: list) -> Any:
        """The value of a marker's ``[type_name, payload, ...]`` (already checked to start with a str)."""
        name = fields[0]
        decoder = _MARKER_DECODERS.get(name)
        if decoder is not None:
            return decoder(self, name, fields)
        if name in PICKLE_MARKERS:
            return self._pickled(name, fields)
        raise DecodeError(f"unknown Wrapyfi marker {truncate(repr(name))}: this wire decodes "
                          f"{', '.join(sorted(_MARKER_DECODERS))} (docs/wire.md)")

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
                "numpy arrays, or opt in with register(..., wrapyfi_allow_pickle=True) to send Wrapyfi's pickle (PandasData)"
            ) from None
        return {MARKER: marker}

    def library(self, name: str, module: str) -> Any:
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
                "refused (to accept it from peers you fully trust, opt in with register(..., "
                "wrapyfi_allow_pickle=True), documented as unsafe in docs/wire.md)"
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

    def router(self) -> Any:
        """Where received tensors go (built on first use: it imports torch)."""
        if self._torch_router is None:
            from wrapyfi_like.plugins.torch_devices import DeviceRouter, build_device_map
            self._torch_router = DeviceRouter(build_device_map(**self._torch_devices))
        return self._torch_router


# -- encoders ---------------------------------------------------------------------------------------


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
            f"numpy.ndarray of dtype {np.asarray(array).dtype} holds Python objects, which .npy stores as a pickle; "
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
                f"a raw PIL.Image of mode {value.mode!r} cannot be sent exactly on Wrapyfi's wire (it carries only "
                "the pixel bytes, size and mode: a palette is lost); convert it (e.g. image.convert('RGB'))"
            )
        return {MARKER: ["PILImage", base64.b64encode(value.tobytes()).decode("ascii"), list(value.size), value.mode]}
    with io.BytesIO() as memfile:  # as Wrapyfi does: a JPEG is compressed again, at Pillow's default quality
        value.save(memfile, format=value.format)
        return {MARKER: ["PILImage", memfile.getvalue().decode("latin1")]}


_LEAF_ENCODERS: dict[type, Callable[[Any], dict]] = {
    dt.datetime: _datetime_marker,
    np.datetime64: _datetime64_marker,
    np.ndarray: _ndarray_marker,
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


def unsupported(value: Any) -> str:
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
    return f"cannot encode {type_name(value)} on Wrapyfi's wire (wire='wrapyfi'): {advice}"


def type_name(value: Any) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


# -- decoders ---------------------------------------------------------------------------------------


def _fields(name: str, fields: list, count: int) -> list:
    if len(fields) != count:
        raise DecodeError(f"a Wrapyfi {name} marker has {count} fields, got {len(fields)}")
    return fields


def _text(name: str, value: Any, limit: Optional[int] = None) -> str:
    if type(value) is not str or (limit is not None and len(value) > limit):
        raise DecodeError(f"the payload of a Wrapyfi {name} marker must be a string"
                          + (f" of at most {limit} characters" if limit else "") + f", got {truncate(repr(value), 80)}")
    return value


def _tuple(markers: Markers, name: str, fields: list) -> tuple:
    items = _fields(name, fields, 2)[1]
    if type(items) is not list:
        raise DecodeError("the payload of a Wrapyfi tuple marker must be a list")
    return tuple(items)


def _set(markers: Markers, name: str, fields: list) -> set:
    items = _fields(name, fields, 2)[1]
    if type(items) is not list:
        raise DecodeError("the payload of a Wrapyfi set marker must be a list")
    try:
        return set(map(_hashable, items))
    except TypeError:
        raise DecodeError("a Wrapyfi set marker holds an unhashable item (a dict)") from None


def _hashable(item: Any) -> Any:
    """A set item as it was sent: Wrapyfi's encoder writes tuples inside a set as lists, and a
    list in a set can only have been a tuple."""
    return tuple(map(_hashable, item)) if type(item) is list else item


def _datetime(markers: Markers, name: str, fields: list) -> dt.datetime:
    text = _text(name, _fields(name, fields, 2)[1], MAX_TEXT_PAYLOAD)
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise DecodeError(f"not an ISO datetime: {text!r}") from None


def _datetime64(markers: Markers, name: str, fields: list) -> np.datetime64:
    text = _text(name, _fields(name, fields, 2)[1], MAX_TEXT_PAYLOAD)
    if not _ISO_DATETIME64.fullmatch(text):
        raise DecodeError(f"not a numpy.datetime64 text: {text!r}")
    try:
        return np.datetime64(text)
    except ValueError:
        raise DecodeError(f"not a numpy.datetime64 text: {text!r}") from None


def _b64(text: str, name: str) -> bytes:
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        raise DecodeError(f"the payload of a Wrapyfi {name} marker is not valid base64") from None


def _array(markers: Markers, name: str, fields: list) -> np.ndarray:
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


def _torch(markers: Markers, name: str, fields: list) -> Any:
    _, text, device = _fields(name, fields, 3)
    data = _b64(_text(name, text), name)
    device = _text(name, device, MAX_TEXT_PAYLOAD)
    torch = markers.library(name, "torch")
    from wrapyfi_like.plugins.torch_devices import normalise_device
    try:
        target = markers.router().target(normalise_device(device))
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


def _pil(markers: Markers, name: str, fields: list) -> Any:
    if len(fields) not in (2, 4):
        raise DecodeError(f"a Wrapyfi {name} marker has 2 fields (encoded) or 4 (raw), got {len(fields)}")
    image_module = markers.library(name, "PIL.Image")
    text = _text(name, fields[1])
    if len(fields) == 4:
        size, mode = fields[2], fields[3]
        if not (type(size) is list and len(size) == 2 and all(type(side) is int and side >= 0 for side in size)):
            raise DecodeError(f"the size of a raw Wrapyfi {name} is [width, height], got {truncate(repr(size), 80)}")
        if type(mode) is not str or mode not in _PIL_RAW_MODES:
            raise DecodeError(f"a raw Wrapyfi {name} of mode {truncate(repr(mode), 40)} is not read")
        width, height = size
        _check_pixels(width, height)
        data = _b64(text, name)
        expected = (width + 7) // 8 * height if mode == "1" else width * height * _PIL_RAW_MODES[mode]
        if len(data) != expected:
            raise DecodeError(f"a raw {width}x{height} {mode} Wrapyfi {name} has {expected} bytes, got {len(data)}")
        try:
            return image_module.frombytes(mode, (width, height), data, "raw")
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


def _pandas(markers: Markers, name: str, fields: list) -> Any:
    _, text, kind = _fields(name, fields, 3)
    if kind not in ("DataFrame", "Series"):
        raise DecodeError(f"a Wrapyfi {name} marker holds a DataFrame or Series, not {truncate(repr(kind), 40)}")
    data = _b64(_text(name, text), name)
    pandas = markers.library(name, "pandas")
    try:
        return _pandas_from_json(pandas, data, kind)
    except Exception as error:
        raise DecodeError(f"bad Wrapyfi {name}: {type(error).__name__}: {truncate(error)}") from None


def _pandas_from_json(pandas: Any, data: bytes, kind: str) -> Any:
    frame = pandas.read_json(io.BytesIO(data), orient="split")
    return frame if kind == "DataFrame" else frame.iloc[:, 0]


_MARKER_DECODERS: dict[str, Callable[[Markers, str, list], Any]] = {
    "tuple": _tuple,
    "set": _set,
    "datetime": _datetime,
    "numpy.datetime64": _datetime64,
    **{name: _array for name in NPY_MARKERS},
    "PytorchTensor": _torch,
    "PILImage": _pil,
    "PandasLegacyData": _pandas,
}
