"""PIL.Image as raw pixels in an out-of-band frame, or optionally as its file format's bytes.

An image travels as ``("PIL.Image", data, mode, size, palette, info, format, file_crc32)``. By default
``data`` is the raw pixel bytes in the image's own mode (every mode, including ``I;16``, ``F`` and
``P`` with its palette), so pixels arrive exactly. On receive ``Image.frombuffer`` maps the
received frame itself for the modes Pillow can map (L, P, I, F, RGBA, …); the image is then
read-only, and Pillow copies it only if it is modified.

An image that came from a file keeps its ``format`` (``"PNG"``, ``"JPEG"`` …). With the publisher
kwarg ``pillow_encoded=True`` such an image travels re-encoded in that format instead, which is
much smaller for photos; JPEG keeps its original quantisation tables (``quality="keep"``), so
the loss is minimal but pixels are not bit-exact. The receiver decodes only the announced format,
and only if it is one of :data:`ALLOWED_FORMATS` (the sender must not pick Pillow's decoder: EPS
would run Ghostscript); images of other formats travel as raw pixels. It checks the CRC-32 of the
bytes (a file format may decode a cut file without complaint), then, from the file's header and
before decoding any pixel, that the image has the announced mode and size and at most
:data:`wrapyfi_like.limits.MAX_IMAGE_PIXELS` pixels (a decompression bomb stops there). ``info`` entries whose values are not
plain values (numbers, strings, bytes, tuples of them) cannot travel and are dropped with a
warning.
"""

from __future__ import annotations

import io
import logging
import zlib
from typing import Any

from PIL import Image, ImageMode

from wrapyfi_like.exceptions import DecodeError
from wrapyfi_like.limits import MAX_IMAGE_PIXELS
from wrapyfi_like.logs import truncate
from wrapyfi_like.utils.core_utils import Plugin, PluginRegistrar

logger = logging.getLogger("wrapyfi_like.plugins.pillow")

_PALETTE_MODES = frozenset({"RGB", "RGBA"})
_INFO_SCALARS = (str, int, float, bool, bytes)
_MAX_NAME_CHARS = 16
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")
"""File formats a receiver decodes: common, with decoders built into Pillow's own libraries."""


@PluginRegistrar.register(types=(Image.Image,))
class PillowImage(Plugin):
    """Sends PIL images pixel-exact; ``pillow_encoded=True`` sends file images in their own format."""

    codec_id = "PIL.Image"

    def __init__(self, pillow_encoded: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._encoded = bool(pillow_encoded)
        self._dropped_info: set[str] = set()

    def encode(self, obj: Image.Image, *args: Any, **kwargs: Any) -> tuple[bool, dict]:
        palette = None
        if obj.mode in ("P", "PA") and obj.palette is not None:
            palette = [obj.palette.mode, bytes(obj.getpalette(obj.palette.mode))]
        fmt = obj.format
        if self._encoded and fmt is not None and _writable(fmt):
            data = _file_bytes(obj, fmt)
            file_crc32 = zlib.crc32(data)
        else:
            data, file_crc32 = memoryview(obj.tobytes()), None
        return True, {"__wrapyfi__": (self.codec_id, data, obj.mode, list(obj.size), palette,
                                      self._plain_info(obj.info), fmt, file_crc32)}

    def decode(self, obj_type: str, obj_full: tuple, *args: Any, **kwargs: Any) -> tuple[bool, Image.Image]:
        if len(obj_full) != 8:
            raise DecodeError(f"a PIL.Image payload has 8 fields, got {len(obj_full)}")
        _, data, mode, size, palette, info, fmt, file_crc32 = obj_full
        if not isinstance(data, memoryview):
            raise DecodeError("PIL.Image data must arrive as a buffer")
        if not isinstance(mode, str) or mode not in Image.MODES:
            raise DecodeError(f"bad PIL image mode {mode!r:.40}")
        if not isinstance(size, list) or len(size) != 2 or not all(type(n) is int and n >= 0 for n in size):
            raise DecodeError(f"bad PIL image size {size!r:.40}")
        if fmt is not None and (not isinstance(fmt, str) or len(fmt) > _MAX_NAME_CHARS):
            raise DecodeError(f"bad PIL image format {fmt!r:.40}")
        if file_crc32 is None:
            image = _from_pixels(data, mode, tuple(size))
        elif type(file_crc32) is int and fmt is not None:
            image = _from_file_bytes(data, fmt, file_crc32, mode, size)
        else:
            raise DecodeError(f"bad file checksum {file_crc32!r:.40} for format {fmt!r:.40}")
        if palette is not None:
            _put_palette(image, palette)
        image.info.update(_checked_info(info))
        image.format = fmt
        return True, image

    def _plain_info(self, info: dict) -> dict:
        plain = {}
        for key, value in info.items():
            if isinstance(key, str) and _is_plain(value):
                plain[key] = value
            elif key not in self._dropped_info:
                self._dropped_info.add(key)
                logger.warning("PIL image info %r holds a %s, which cannot be sent; it is left out",
                               key, type(value).__name__)
        return plain


def _is_plain(value: Any) -> bool:
    if isinstance(value, tuple):
        return all(_is_plain(item) for item in value)
    return type(value) in _INFO_SCALARS


def _checked_info(info: Any) -> dict:
    if not isinstance(info, dict) or not all(isinstance(k, str) and _is_plain(v) for k, v in info.items()):
        raise DecodeError("PIL image info must map strings to plain values")
    return info


def _writable(fmt: str) -> bool:
    """Whether an image of ``fmt`` can travel as file bytes: Pillow writes it and receivers decode it."""
    Image.init()
    return fmt in ALLOWED_FORMATS and fmt in Image.SAVE


def _file_bytes(image: Image.Image, fmt: str) -> memoryview:
    buffer = io.BytesIO()
    options = {"quality": "keep"} if fmt == "JPEG" else {}
    image.save(buffer, format=fmt, **options)
    return buffer.getbuffer()


def _from_file_bytes(data: memoryview, fmt: str, file_crc32: int, mode: str, size: list) -> Image.Image:
    """Decode file bytes of an allowed format; mode, size and pixel count are checked from the
    file's header (``Image.open`` reads only that) before ``load()`` decodes any pixel."""
    if fmt not in ALLOWED_FORMATS:
        raise DecodeError(f"PIL image format {truncate(repr(fmt))} is not decoded here; "
                          f"allowed: {', '.join(ALLOWED_FORMATS)}")
    _check_pixels(size)
    if zlib.crc32(data) != file_crc32:
        raise DecodeError(f"{fmt} image data is damaged (CRC-32 mismatch)")
    try:
        image = Image.open(io.BytesIO(data), formats=[fmt])
        if image.mode != mode or list(image.size) != size:
            raise DecodeError(f"the {fmt} data holds a {image.mode} image of size {image.size}, "
                              f"announced {mode} of size {tuple(size)}")
        image.load()
    except DecodeError:
        raise
    except (OSError, ValueError, KeyError, SyntaxError, Image.DecompressionBombError) as error:
        raise DecodeError(f"corrupt {fmt} image data: {type(error).__name__}: {truncate(error)}") from None
    return image


def _check_pixels(size: list) -> None:
    if size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise DecodeError(f"a {size[0]}x{size[1]} image exceeds MAX_IMAGE_PIXELS = {MAX_IMAGE_PIXELS}")


def _from_pixels(data: memoryview, mode: str, size: tuple[int, int]) -> Image.Image:
    expected = _raw_size(mode, size)
    if data.nbytes != expected:
        raise DecodeError(f"a {mode} image of size {size} needs {expected} bytes, frame has {data.nbytes}")
    if expected == 0:
        return Image.new(mode, size)
    return Image.frombuffer(mode, size, data, "raw", mode, 0, 1)


def _raw_size(mode: str, size: tuple[int, int]) -> int:
    """Bytes of ``Image.tobytes()`` for this mode and size: rows of mode "1" are padded to bytes."""
    width, height = size
    if mode == "1":
        return (width + 7) // 8 * height
    description = ImageMode.getmode(mode)
    item_bytes = int(description.typestr[2:])
    return width * height * item_bytes * len(description.bands)


def _put_palette(image: Image.Image, palette: Any) -> None:
    if (not isinstance(palette, list) or len(palette) != 2 or palette[0] not in _PALETTE_MODES
            or not isinstance(palette[1], bytes) or len(palette[1]) % len(palette[0]) != 0
            or image.mode not in ("P", "PA")):
        raise DecodeError(f"bad PIL palette for a {image.mode} image")
    image.putpalette(palette[1], rawmode=palette[0])
