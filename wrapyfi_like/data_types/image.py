"""``Image``: an ndarray frame of a declared size and colour, raw or JPEG/PNG-compressed.

Raw frames travel as one zero-copy buffer (the codec sends the array's memory as its own frame).
With ``jpg``/``png`` the frame is compressed with Pillow, an optional dependency
(the ``pillow`` extra: ``pip install -c constraints.txt -e '.[pillow]'`` in the checkout), imported only when compression is asked for or arrives.
Colour frames are ``(height, width, 3)``, grayscale ``(height, width)``; ``uint8``, or ``float32``
with ``fp=True`` (raw only: JPEG and PNG carry 8-bit pixels). The channel order is whatever the
sender uses (RGB or OpenCV's BGR); it arrives unchanged.

Checks happen on the side that has the problem: a publisher whose frame does not match its
declared ``width``/``height``/``rgb``/``fp`` raises :class:`ShapeError`; a listener that receives a
frame that does not match its own declaration treats it as a malformed message (logged, counted,
skipped). A listener decodes JPEG and PNG whether or not it sets ``jpg``/``png`` itself, and no
other format, up to :data:`wrapyfi_like.limits.MAX_IMAGE_PIXELS` pixels.
"""

from __future__ import annotations

import io
from typing import Any, Optional, Union

import numpy as np

from wrapyfi_like.exceptions import ConfigurationError, DecodeError, ShapeError
from wrapyfi_like.limits import MAX_IMAGE_PIXELS
from wrapyfi_like.logs import truncate

_JPEG, _PNG = "image/jpeg", "image/png"
_PILLOW_FORMATS = {_JPEG: "JPEG", _PNG: "PNG"}
DEFAULT_JPEG_QUALITY = 90


class Image:
    """Checks and (optionally) compresses image frames; Wrapyfi's kwargs and meaning."""

    def __init__(self, width: int = -1, height: int = -1, rgb: bool = True, fp: bool = False,
                 jpg: Union[bool, dict] = False, png: Union[bool, dict] = False, **_: Any) -> None:
        self.width, self.height = int(width), int(height)
        self.rgb, self.fp = bool(rgb), bool(fp)
        self.dtype = np.dtype(np.float32 if fp else np.uint8)
        if jpg and png:
            raise ConfigurationError("Image: choose jpg or png, not both")
        if (jpg or png) and fp:
            raise ConfigurationError("Image: jpg and png carry 8-bit pixels; they cannot be combined with fp=True")
        self._compression: Optional[str] = _JPEG if jpg else _PNG if png else None
        options = jpg if isinstance(jpg, dict) else png if isinstance(png, dict) else {}
        self._save_options = _save_options(self._compression, options)
        if self._compression:
            _pillow()  # fail now, not at the first frame, when Pillow is missing

    def to_wire(self, image: Any) -> Any:
        if image is None:
            return None
        if not isinstance(image, np.ndarray):
            raise ShapeError(f"Image: expected a numpy array, got {type(image).__name__}")
        problem = self._mismatch(image)
        if problem:
            raise ShapeError(f"Image to send {problem}")
        if self._compression is None:
            return image
        return (self._compression, _compress(np.ascontiguousarray(image), self._compression, self._save_options))

    def from_wire(self, value: Any) -> Optional[np.ndarray]:
        if value is None:
            return None
        if isinstance(value, tuple) and len(value) == 2 and value[0] in _PILLOW_FORMATS:
            image = _decompress(value[1], value[0], self._expected_size())
        elif isinstance(value, np.ndarray):
            image = value
        else:
            raise DecodeError(f"Image: received a {type(value).__name__}, not an image")
        problem = self._mismatch(image)
        if problem:
            raise DecodeError(f"received image {problem}")
        return image

    def _expected_size(self) -> tuple[int, int]:
        return self.width, self.height

    def _mismatch(self, image: np.ndarray) -> Optional[str]:
        """Why ``image`` does not match the declaration, or None."""
        shape = "(height, width, 3)" if self.rgb else "(height, width)"
        if image.ndim != (3 if self.rgb else 2) or (self.rgb and image.shape[2] != 3):
            return f"has shape {image.shape}, but rgb={self.rgb} declares {shape}"
        if 0 < self.height != image.shape[0] or 0 < self.width != image.shape[1]:
            return (f"is {image.shape[1]}x{image.shape[0]} (width x height), but "
                    f"{self.width}x{self.height} is declared")
        if image.dtype != self.dtype:
            return f"has dtype {image.dtype}, but fp={self.fp} declares {self.dtype}"
        return None


def _pillow():
    try:
        from PIL import Image as PILImage
    except ImportError:
        raise ConfigurationError(
            "Image with jpg or png needs Pillow; from the wrapyfi_like checkout: "
            "pip install -c constraints.txt -e '.[pillow]'"
        ) from None
    return PILImage


def _save_options(compression: Optional[str], options: dict) -> dict:
    if compression == _JPEG:
        quality = options.get("quality", DEFAULT_JPEG_QUALITY)
        if not (isinstance(quality, int) and 1 <= quality <= 100):
            raise ConfigurationError(f"Image: JPEG quality must be an int from 1 to 100, got {quality!r}")
        return {**options, "quality": quality}
    return dict(options)


def _compress(image: np.ndarray, compression: str, options: dict) -> memoryview:
    stream = io.BytesIO()
    _pillow().fromarray(image).save(stream, format=_PILLOW_FORMATS[compression], **options)
    return stream.getbuffer()


def _decompress(data: Any, compression: str, expected: tuple[int, int]) -> np.ndarray:
    """Decode one JPEG/PNG; the size (declared, and at most MAX_IMAGE_PIXELS) is checked from the
    file's header before any pixel is decoded."""
    pil = _pillow()
    try:
        with pil.open(io.BytesIO(data), formats=[_PILLOW_FORMATS[compression]]) as picture:
            if picture.width * picture.height > MAX_IMAGE_PIXELS:
                raise DecodeError(f"received image is {picture.width}x{picture.height}, over "
                                  f"MAX_IMAGE_PIXELS = {MAX_IMAGE_PIXELS}")
            width, height = expected
            if 0 < width != picture.width or 0 < height != picture.height:
                raise DecodeError(f"received image is {picture.width}x{picture.height} (width x height), "
                                  f"but {width}x{height} is declared")
            return np.array(picture)  # a writable copy; Pillow owns its decoded pixels
    except DecodeError:
        raise
    except Exception as error:  # Pillow's own errors, decompression bombs included
        raise DecodeError(f"received {compression} data that Pillow cannot decode: {truncate(error)}") from None
