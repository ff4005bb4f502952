"""Wrapyfi 0.5.0's JSON wire: values to the frames Wrapyfi's ZeroMQ nodes send, and back.

A Wrapyfi node sends ``json.dumps(value, cls=JsonEncoder)``: stdlib JSON (``", "``/``": "``
separators, ``ensure_ascii``, bare ``NaN``/``Infinity``, insertion order) in which every value JSON
has no form for is a marker ``{"__wrapyfi__": [type_name, payload, *extra]}``. This module writes
exactly those bytes for every value Wrapyfi can carry, so an unmodified Wrapyfi node decodes what
we send, and reads what Wrapyfi nodes send. This module frames the values and walks the JSON;
:mod:`wrapyfi_like.middlewares.wrapyfi_zeromq.markers` turns each marker into its value and back. Neither does
I/O: the middleware (``wrapyfi_like.middlewares.wrapyfi_zeromq``) moves the frames.

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

import json
import re
import time
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from wrapyfi_like.middlewares.wrapyfi_zeromq.markers import MARKER, PICKLE_MARKERS, Markers, type_name
from wrapyfi_like.exceptions import ConfigurationError, DecodeError, EncodeError
from wrapyfi_like.logs import truncate

__all__ = ["WrapyfiJsonCodec", "MARKER", "PICKLE_MARKERS", "MAX_NESTING", "MAX_ITEMS", "MAX_REPLY_ITEMS",
           "MAX_ERROR_CHARS"]

DATA_TYPES = ("NativeObject", "Image", "AudioChunk")
MAX_NESTING = 200
"""Lists, dicts and markers one value may nest when encoding: each level costs two Python frames
here, and Python's JSON parser (about 1000 levels, less the caller's stack) reads anything this
deep."""
MAX_ITEMS = 1 << 22
"""Values one JSON document may hold, counted as its commas and opening brackets (an upper bound
found without parsing). Decoding costs up to ~80 bytes of Python objects per value, so at most
~320 MB, the bound the binary codec's ``MAX_HEADER_SIZE`` gives; an array is one base64 string
and counts as one value."""
MAX_REPLY_ITEMS = 1 << 25
"""The same for Image and AudioChunk replies, which Wrapyfi's servers send as nested lists of
numbers (a 1920x1080 RGB frame is 8.3 Mi values: it fits; a 4K frame does not, use ``jpg``).
Only numbers and brackets are accepted there, so each value costs at most ~64 bytes."""
MAX_ERROR_CHARS = 1000
"""Characters a :class:`DecodeError` from this codec may hold, whatever the peer sent."""
_JPEG_MAGIC, _PNG_MAGIC = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"
_JPEG, _PNG = "image/jpeg", "image/png"
_NUMBERS_REPLY = re.compile(rb'\s*\{\s*"(img|aud)"\s*:(.*)\}\s*', re.DOTALL)
_NUMERIC = b"0123456789.,+-eE[] \t\r\nNaInfity"  # numbers (NaN, Infinity too), commas, brackets


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
                 allowed_plugins: Optional[Iterable[str]] = (), **plugin_kwargs: Any) -> None:
        if data_type not in DATA_TYPES:
            raise ConfigurationError(f"Wrapyfi's wire carries the data types {DATA_TYPES}, not {data_type!r:.100}")
        if type(allow_pickle) is not bool:
            raise ConfigurationError(f"allow_pickle must be True or False, got {allow_pickle!r:.100}")
        self.data_type = data_type
        self.allow_pickle = allow_pickle
        self._markers = Markers(allow_pickle, allowed_plugins,
                                {key: plugin_kwargs[key] for key in ("load_torch_device", "map_torch_devices")
                                 if plugin_kwargs.get(key) is not None})

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
            return _image_from_lists(self._numbers(payload, "img"))
        if data_type == "AudioChunk":
            parts = self._numbers(payload, "aud")
            if not (type(parts) is list and len(parts) == 4):
                raise DecodeError('a Wrapyfi AudioChunk reply is {"aud": [chunk, channels, rate, samples]}')
            chunk, channels, rate, samples = parts
            return _audio_value(chunk, channels, rate, _float32_from_lists(samples))
        raise ConfigurationError(f"Wrapyfi's wire carries the data types {DATA_TYPES}, not {data_type!r:.100}")

    def _numbers(self, payload: memoryview, key: str) -> Any:
        """The nested lists of numbers of a reply ``{key: [...]}`` (anything else: DecodeError)."""
        found = _NUMBERS_REPLY.fullmatch(payload)
        if found is None or found.group(1).decode() != key or found.group(2).translate(None, _NUMERIC):
            raise DecodeError(f'a Wrapyfi {"Image" if key == "img" else "AudioChunk"} reply is '
                              f'{{"{key}": nested lists of numbers}}')
        return self.loads(found.group(2), MAX_REPLY_ITEMS)

    # -- JSON documents --------------------------------------------------------------------------

    def dumps(self, value: Any) -> bytes:
        """``value`` as Wrapyfi's JSON, UTF-8 encoded."""
        try:
            return json.dumps(self.tree(value)).encode()
        except (ValueError, RecursionError) as error:  # an int of more than sys.get_int_max_str_digits() digits
            raise EncodeError(f"cannot encode this {type_name(value)} on Wrapyfi's wire: {truncate(error)}") from None

    def tree(self, value: Any) -> Any:
        """``value`` as JSON types and Wrapyfi markers, for ``json.dumps`` to write."""
        return self._prepare(value, 0)

    def loads(self, frame: Any, max_items: int = MAX_ITEMS) -> Any:
        """The value of one JSON document from a Wrapyfi peer (any bytes-like object)."""
        try:
            text = str(memoryview(frame), "utf-8")
            items = text.count(",") + text.count("[") + text.count("{")
            if items > max_items:
                raise DecodeError(f"a Wrapyfi message of up to {items} values exceeds the limit of {max_items}")
            return json.loads(text, object_hook=self.object_hook)
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
        return self._markers.encode(value)

    def object_hook(self, obj: dict) -> Any:
        """``json.loads``'s object hook: a marker dict becomes its value; other dicts stay."""
        fields = obj.get(MARKER)
        if fields is None:
            return obj
        if len(obj) != 1 or type(fields) is not list or not fields or type(fields[0]) is not str:
            raise DecodeError(f'a Wrapyfi marker is {{"{MARKER}": [type_name, payload, ...]}} alone, got '
                              f"{truncate(repr(obj))}")
        return self._markers.decode(fields)


# -- the JSON tree ---------------------------------------------------------------------------------

_PLAIN = frozenset({str, int, float, bool, type(None)})
_PLAIN_OF = {np.float64: float, np.str_: str}


def _checked_key(key: Any) -> str:
    if type(key) is not str:
        raise EncodeError(
            f"dict key {truncate(repr(key), 80)} ({type_name(key)}): Wrapyfi's JSON has only str keys and would "
            "turn it into a string; use str keys (or a list of (key, value) tuples)"
        )
    if key == MARKER:
        raise EncodeError(f"a dict with the key {MARKER!r} would be read as a Wrapyfi marker by every receiver; rename the key")
    return key


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
    if value is None and error is EncodeError:
        raise EncodeError(f"{what} cannot be None on Wrapyfi's wire: it has no empty Image or AudioChunk "
                          "message (Wrapyfi's publishers send nothing for None)")
    if type(value) is not np.ndarray:
        raise error(f"{what} must be a numpy array, got {type_name(value)}")
    return value


def _audio_parts(value: Any) -> tuple[np.ndarray, int]:
    if value is None:
        _checked_array(None, "an AudioChunk")
    if not (type(value) is tuple and len(value) == 2):
        raise EncodeError(f"an AudioChunk is (samples, rate), got {type_name(value)}")
    samples, rate = value
    samples = _checked_array(samples, "AudioChunk samples")
    if samples.ndim not in (1, 2) or type(rate) is not int:
        raise EncodeError("an AudioChunk is (samples of shape (chunk,) or (chunk, channels), int rate)")
    return np.require(samples, dtype=np.float32, requirements="C"), rate


def _audio_value(chunk: Any, channels: Any, rate: Any, samples: np.ndarray) -> tuple[np.ndarray, int]:
    """``(samples of shape (chunk, channels), rate)``, as ``AudioChunk.from_wire`` takes it. A
    Wrapyfi publisher sends the rate its caller gave, so a numpy int arrives as a 0-d array."""
    chunk, channels, rate = (int(number) if type(number) is np.ndarray and number.shape == ()
                             and number.dtype.kind in "iu" else number for number in (chunk, channels, rate))
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
