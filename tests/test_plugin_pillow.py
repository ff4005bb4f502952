"""The PIL.Image plugin: every mode pixel-exact, palettes, format info, optional encoded bytes."""

import io

import numpy as np
import pytest

Image = pytest.importorskip("PIL.Image")

from wrapyfi_like.encoding import Codec  # noqa: E402
from wrapyfi_like.exceptions import DecodeError  # noqa: E402
from wrapyfi_like.plugins import pillow_image  # noqa: E402
from wrapyfi_like.testing import PluginConformance, round_trip, wire_copy  # noqa: E402


def _image(mode, size=(5, 3)):
    rng = np.random.default_rng(len(mode))
    image = Image.new(mode, size)
    raw = rng.integers(0, 256, len(image.tobytes()), dtype=np.uint8).tobytes()
    if mode == "F":
        raw = np.linspace(-1.5, 2.5, size[0] * size[1], dtype=np.float32).tobytes()
    image.frombytes(raw)
    return image


def _palette_image():
    image = _image("P")
    image.putpalette(bytes(range(48)), rawmode="RGB")
    image.info["transparency"] = 2
    return image


def _png_file_image():
    buffer = io.BytesIO()
    _image("RGBA", (8, 6)).save(buffer, format="PNG")
    image = Image.open(io.BytesIO(buffer.getvalue()))
    image.load()
    return image


def assert_same_image(expected, actual):
    assert isinstance(actual, Image.Image)
    assert (actual.mode, actual.size) == (expected.mode, expected.size)
    assert actual.tobytes() == expected.tobytes()
    assert actual.getpalette() == expected.getpalette()
    assert actual.format == expected.format
    assert actual.info == expected.info


class TestPillowConformance(PluginConformance):
    plugin = pillow_image.PillowImage

    def samples(self):
        cases = {mode: _image(mode) for mode in ("1", "L", "LA", "RGB", "RGBA", "CMYK", "YCbCr", "I", "F",
                                                 "I;16", "I;16B")}
        cases["P"] = _palette_image()
        cases["png_file"] = _png_file_image()
        cases["wide"] = _image("RGB", (257, 1))
        return cases

    def assert_equal(self, expected, actual):
        assert_same_image(expected, actual)

    def empty_sample(self):
        return Image.new("RGB", (0, 0))

    def non_contiguous_sample(self):
        rows = bytes(range(40))  # 4 rows of 10 bytes, the image uses the first 7 of each
        return Image.frombuffer("L", (7, 4), rows, "raw", "L", 10, 1)

    def read_only_sample(self):
        image = Image.frombuffer("RGBA", (4, 2), bytes(range(32)), "raw", "RGBA", 0, 1)
        assert image.readonly
        return image

    def large_sample(self):
        return Image.frombytes("RGB", (1024, 768), np.full(1024 * 768 * 3, 7, np.uint8).tobytes())


class TestPillowEncodedConformance(TestPillowConformance):
    plugin_kwargs = {"pillow_encoded": True}

    def samples(self):
        return {"png_file": _png_file_image(), "raw": _image("L")}


def test_received_pixels_are_the_received_frame():
    codec = Codec()
    frames = wire_copy(codec.encode(_image("L", (4, 4))))
    received = codec.decode(frames)
    (frame,) = frames[1:]
    frame[0] = (frame[0] + 1) % 256  # the image maps the frame: writing it shows through
    assert received.getpixel((0, 0)) == frame[0]


def test_png_travels_as_png_bytes_when_asked():
    image = _png_file_image()
    raw_frames = Codec().encode(image)
    encoded_frames = Codec(pillow_encoded=True).encode(image)
    raw_size = sum(memoryview(f).nbytes for f in raw_frames[1:])
    encoded = bytes(memoryview(encoded_frames[1]))
    assert encoded.startswith(b"\x89PNG") and raw_size == 8 * 6 * 4
    assert_same_image(image, Codec().decode(wire_copy(encoded_frames)))


def test_jpeg_keeps_format_and_stays_close():
    buffer = io.BytesIO()
    _image("RGB", (16, 16)).save(buffer, format="JPEG", quality=90)
    image = Image.open(io.BytesIO(buffer.getvalue()))
    image.load()
    received = round_trip(Codec(pillow_encoded=True), image)
    assert received.format == "JPEG" and received.size == image.size
    difference = np.abs(np.asarray(received, np.int16) - np.asarray(image, np.int16))
    assert difference.mean() < 8


def test_encoded_data_of_another_format_is_rejected():
    codec = Codec(pillow_encoded=True)
    frames = wire_copy(codec.encode(_png_file_image()))
    buffer = io.BytesIO()
    _image("RGBA", (8, 6)).save(buffer, format="GIF")
    frames[1] = bytearray(buffer.getvalue())
    with pytest.raises(DecodeError):
        codec.decode(frames)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` grey pixels, with no pixel data at all:
    what a decompression bomb looks like before ``load()``."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IEND", b""))


def _file_message(data: bytes, fmt: str, mode: str, size: tuple) -> list:
    import zlib

    import msgpack

    memoryview_ext = msgpack.ExtType(8, msgpack.packb([0, "B", [len(data)]]))
    fields = msgpack.packb(["PIL.Image", memoryview_ext, mode, list(size), None, {}, fmt,
                            zlib.crc32(data)])
    return [b"\x93\x01\x01" + msgpack.packb(msgpack.ExtType(15, fields)), data]


@pytest.mark.parametrize("fmt", ["EPS", "PDF", "GIF", "ICNS", "x" * 10])
def test_only_allowed_formats_are_decoded(fmt, monkeypatch):
    """The sender must not choose Pillow's decoder: EPS would run Ghostscript."""
    opened = []
    monkeypatch.setattr(Image, "open", lambda *args, **kwargs: opened.append(args))
    with pytest.raises(DecodeError, match="PNG, JPEG, WEBP, BMP, TIFF"):
        Codec().decode(_file_message(b"%!PS-Adobe-3.0 EPSF-3.0\n", fmt, "RGB", (1, 1)))
    assert opened == []


@pytest.mark.parametrize("announced", [(9_000, 8_000), (16, 16)])
def test_pixel_limit_is_checked_before_any_pixel_is_decoded(announced, monkeypatch):
    from wrapyfi_like.limits import MAX_IMAGE_PIXELS

    bomb = _png_header_only(9_000, 8_000)
    assert 9_000 * 8_000 > MAX_IMAGE_PIXELS  # and below Pillow's own limit, which would only warn
    loads = []
    monkeypatch.setattr(Image.Image, "load", lambda self: loads.append(self.size))
    with pytest.raises(DecodeError, match="MAX_IMAGE_PIXELS|announced"):
        Codec().decode(_file_message(bomb, "PNG", "L", announced))
    assert loads == []


def test_image_data_type_refuses_a_png_over_the_pixel_limit():
    from wrapyfi_like.data_types.image import Image as ImageType

    bomb = _png_header_only(9_000, 8_000)
    with pytest.raises(DecodeError, match="MAX_IMAGE_PIXELS"):
        ImageType(rgb=False).from_wire(("image/png", memoryview(bomb)))


def test_images_of_other_formats_travel_as_raw_pixels():
    buffer = io.BytesIO()
    _image("P", (8, 6)).save(buffer, format="GIF")
    gif = Image.open(io.BytesIO(buffer.getvalue()))
    gif.load()
    frames = Codec(pillow_encoded=True).encode(gif)
    assert not bytes(memoryview(frames[1])).startswith(b"GIF")
    assert_same_image(gif, Codec().decode(wire_copy(frames)))
