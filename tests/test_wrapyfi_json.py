"""The Wrapyfi JSON codec against real Wrapyfi 0.5.0: the same bytes, both ways decodable, exact
or an error, no pickle unless allowed, and hostile input refused without a crash.

Wrapyfi's side runs in one subprocess (this file run as a script), which imports Wrapyfi's
``JsonEncoder``/``JsonDecodeHook``; this process never imports Wrapyfi.
"""

from __future__ import annotations

import base64
import collections
import datetime as dt
import enum
import io
import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np

CASES = {
    # name: (value expression, how ours relates to Wrapyfi's bytes: "same" or "differs")
    "plain": ("{'i': 0, 'msg': 'hi', 'f': 1.5, 'b': True, 'n': None, 'l': [1, 2.5, 'x'], 'd': {}}", "same"),
    "unicode": ("'h\\u00e9llo \\u2603 \\U0001F600 \\ud800'", "same"),
    "floats": ("[math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324, 0.1]", "same"),
    "bigint": ("[2 ** 100, -(2 ** 70)]", "same"),
    "tuple": ("(1, 'a', [2, 3], {'k': None})", "same"),
    "tuple_in_containers": ("{'t': (1, 2), 'l': [(3,), [()]]}", "same"),
    "set": ("{3, 1, 2}", "same"),
    "datetime": ("dt.datetime(2025, 1, 2, 3, 4, 5, 678901)", "same"),
    "datetime_tz": ("dt.datetime(2025, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=-2, minutes=-30)))", "same"),
    "datetime_utc": ("dt.datetime(2025, 1, 2, tzinfo=dt.timezone.utc)", "same"),
    "datetime64": ("[np.datetime64('2025-01-02T03:04:05.123'), np.datetime64('2025-01'), np.datetime64('NaT')]", "same"),
    "ndarray_f4": ("np.arange(6, dtype=np.float32).reshape(2, 3)", "same"),
    "ndarray_big_endian": ("np.arange(3, dtype='>i4')", "same"),
    "ndarray_fortran": ("np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3))", "same"),
    "ndarray_strided": ("np.arange(10, dtype=np.uint16)[::3]", "same"),
    "ndarray_kinds": ("[np.array([True, False]), np.array(['a', 'bc']), np.array([b'x']), np.zeros((0, 3)),"
                      " np.array([1 + 2j]), np.array(['2025-01-02'], dtype='datetime64[D]'),"
                      " np.zeros(2, dtype=[('x', '<i4'), ('y', '<f8')])]", "same"),
    "numpy_scalars": ("[np.int64(5), np.uint8(7), np.float32(0.5), np.bool_(True), np.complex128(1j)]", "same"),
    "numpy_plain_subclasses": ("[np.float64(2.5), np.str_('s')]", "same"),
    "request": ("[(1, 'a', np.arange(2)), {'k': (1,), 'when': dt.datetime(2025, 1, 1)}]", "same"),
    "audio": ("(4, 2, 44100, np.ones((4, 2), np.float32))", "same"),
    "torch": ("{'t': torch.arange(6, dtype=torch.float32).reshape(2, 3), 'i': torch.tensor([1, 2], dtype=torch.int64)}",
              "same"),
    "pil_raw": ("PIL.Image.new('RGB', (3, 2), (9, 200, 31))", "same"),
    "pil_png": ("png_image()", "same"),
    "nested_tuple": ("(1, (2, (3,)), [{'t': ((4,),)}])", "differs"),
    "set_of_tuples": ("{(1, 2)}", "differs"),
}
"""Values both sides encode. "differs": our bytes keep tuple markers where Wrapyfi writes inner
tuples as lists; Wrapyfi's decoder still reads ours exactly."""

EXPECTED_FROM_WIRE = {
    "numpy_scalars": "[np.array(5), np.array(7, np.uint8), np.array(0.5, np.float32), np.array(True), np.array(1j)]",
    "numpy_plain_subclasses": "[2.5, 's']",
}
"""Cases whose decoded value is not the value sent (numpy scalars travel as 0-d arrays, as in
Wrapyfi; np.float64/np.str_ as float/str)."""

REFUSED = {
    # name: (value expression, does Wrapyfi's own encoder raise TypeError for it?)
    "bytes": ("b'x'", True),
    "bytearray": ("bytearray(b'x')", True),
    "complex": ("1j", True),
    "date": ("dt.date(2025, 1, 2)", True),
    "time": ("dt.time(3, 4)", True),
    "timedelta": ("dt.timedelta(seconds=1)", True),
    "frozenset": ("frozenset({1})", True),
    "int_key": ("{1: 'a'}", False),
    "none_key": ("{None: 'a'}", False),
    "int_enum": ("Colour.RED", False),
    "namedtuple": ("Point(1, 2)", False),
    "ordered_dict": ("collections.OrderedDict(a=1)", False),
    "marker_key": ("{'__wrapyfi__': ['tuple', [1]]}", False),
    "zoneinfo": ("dt.datetime(2025, 1, 2, tzinfo=zoneinfo.ZoneInfo('Europe/Paris'))", False),
    "named_zone": ("dt.datetime(2025, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=1), 'CET'))", False),
    "object_array": ("np.array([None, 1], dtype=object)", False),
    "datetime64_week": ("np.datetime64('2025-01-02', 'W')", False),
    "datetime64_nat_of_a_unit": ("np.datetime64('NaT', 's')", False),
    "pil_palette": ("PIL.Image.new('P', (2, 2))", False),
}
"""Values Wrapyfi's wire cannot carry exactly: our encoder raises EncodeError naming the type;
Wrapyfi's raises TypeError for some and silently changes the rest."""


class Colour(enum.IntEnum):
    RED = 1


Point = collections.namedtuple("Point", "x y")


def png_image():
    import PIL.Image
    memfile = io.BytesIO()
    PIL.Image.new("RGBA", (2, 3), (1, 2, 3, 4)).save(memfile, format="PNG")
    return PIL.Image.open(io.BytesIO(memfile.getvalue()))


def build(expression):
    import zoneinfo  # noqa: F401 (used by expressions)
    import PIL.Image  # noqa: F401
    import torch  # noqa: F401
    return eval(expression)


def fortran_only(array):
    return array.flags.f_contiguous and not array.flags.c_contiguous


def same(a, b):
    """Equal in value and type, all the way down (NaN equals NaN, -0.0 is not 0.0)."""
    module = type(a).__module__.partition(".")[0]
    if module == "PIL":  # a decoded PNG is an Image.Image or a PngImageFile
        return type(b).__module__.startswith("PIL.") and a.mode == b.mode and a.size == b.size and a.tobytes() == b.tobytes()
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return (a.dtype == b.dtype and a.shape == b.shape and fortran_only(a) == fortran_only(b)
                and a.tobytes() == b.tobytes())
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[key], b[key]) for key in a)
    if isinstance(a, dt.datetime):
        return a == b and a.tzinfo == b.tzinfo and a.tzname() == b.tzname() and a.fold == b.fold
    if isinstance(a, np.datetime64):
        return a.dtype == b.dtype and (a == b or (np.isnat(a) and np.isnat(b)))
    if module == "torch":
        return a.dtype == b.dtype and a.device == b.device and a.shape == b.shape and bool((a == b).all())
    if module == "pandas":
        import pandas.testing
        try:
            (pandas.testing.assert_frame_equal if a.ndim == 2 else pandas.testing.assert_series_equal)(a, b, check_exact=True)
        except AssertionError:
            return False
        return True
    return a == b


def wrapyfi_side(request: dict) -> dict:
    """Runs in the subprocess: Wrapyfi 0.5.0 encodes every case and decodes our bytes.

    Wrapyfi 0.5.0's ``PluginRegistrar.scan()`` looks for its built-in plugins in the wrong folder
    (``wrapyfi/utils/plugins``), so its nodes load them only when imported, as here."""
    from wrapyfi.utils.core_utils import PluginRegistrar
    report = {"encoded": {}, "decodes_ours": {}, "refuses": {}, "plugins_after_import": len(PluginRegistrar.encoder_registry)}
    import wrapyfi.plugins.pillow_image  # noqa: F401
    import wrapyfi.plugins.pytorch_tensor  # noqa: F401
    from wrapyfi.plugins.pandas_data import PandasLegacyData
    from wrapyfi.utils.serialization_encoders import JsonDecodeHook, JsonEncoder
    import pandas

    hook = JsonDecodeHook().object_hook
    for name, (expression, _) in CASES.items():
        report["encoded"][name] = base64.b64encode(json.dumps(build(expression), cls=JsonEncoder).encode()).decode()
    for name, text in request["ours"].items():
        decoded = json.loads(base64.b64decode(text).decode(), object_hook=hook)
        expected = build(EXPECTED_FROM_WIRE.get(name, CASES[name][0]))
        report["decodes_ours"][name] = same(decoded, expected) if name != "pil_raw" else None
    for name, (expression, _) in REFUSED.items():
        try:
            json.dumps(build(expression), cls=JsonEncoder)
            report["refuses"][name] = False
        except TypeError:
            report["refuses"][name] = True
    frame = pandas.DataFrame({"a": [1, 2], "b": [0.5, 1.5]}, index=[10, 20])
    report["pandas_legacy"] = json.dumps(PandasLegacyData().encode(frame)[1])
    report["pandas_pickle"] = json.dumps(frame, cls=JsonEncoder)
    return report


if __name__ == "__main__":
    json.dump(wrapyfi_side(json.load(sys.stdin)), sys.stdout)
    sys.exit(0)


import pytest  # noqa: E402 (the subprocess above needs neither pytest nor wrapyfi_like)

from wrapyfi_like.middlewares.wrapyfi_zeromq.json_codec import (  # noqa: E402
    MAX_ERROR_CHARS, MAX_ITEMS, MAX_NESTING, MAX_REPLY_ITEMS, PICKLE_MARKERS, WrapyfiJsonCodec)
from wrapyfi_like.exceptions import ConfigurationError, DecodeError, EncodeError  # noqa: E402

CODEC = WrapyfiJsonCodec()


def ours(value) -> bytes:
    (frame,) = CODEC.encode(value)
    return frame


@pytest.fixture(scope="module")
def wrapyfi():
    """Wrapyfi 0.5.0's encodings of CASES, and whether it decodes ours exactly."""
    request = {"ours": {name: base64.b64encode(ours(build(expression))).decode()
                        for name, (expression, _) in CASES.items()}}
    result = subprocess.run([sys.executable, __file__], input=json.dumps(request), capture_output=True, text=True,
                            timeout=120, cwd=Path(__file__).parent, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    report["encoded"] = {name: base64.b64decode(text) for name, text in report["encoded"].items()}
    return report


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_bytes(wrapyfi, name):
    expression, relation = CASES[name]
    mine, theirs = ours(build(expression)), wrapyfi["encoded"][name]
    if relation == "same":
        assert mine == theirs
    else:
        assert mine != theirs


@pytest.mark.parametrize("name", sorted(set(CASES) - {"pil_raw"}))
def test_wrapyfi_decodes_ours_exactly(wrapyfi, name):
    assert wrapyfi["decodes_ours"][name] is True


@pytest.mark.parametrize("name", sorted(CASES))
def test_we_decode_wrapyfi_bytes(wrapyfi, name):
    expected = build(EXPECTED_FROM_WIRE.get(name, CASES[name][0]))
    decoded = CODEC.decode([wrapyfi["encoded"][name]])
    if name == "nested_tuple":  # Wrapyfi wrote the inner tuples as lists
        assert decoded != expected and json.dumps(decoded, default=list) == json.dumps(expected, default=list)
    else:
        assert same(decoded, expected)


def test_raw_pil_images_decode_correctly(wrapyfi):
    """Wrapyfi's own decoder skips the base64 step and builds a corrupt image; ours is exact."""
    assert wrapyfi["decodes_ours"]["pil_raw"] is None
    image = CODEC.decode([wrapyfi["encoded"]["pil_raw"]])
    assert image.mode == "RGB" and image.size == (3, 2) and image.getpixel((2, 1)) == (9, 200, 31)


def test_request_frames_are_wrapyfi_clients(wrapyfi):
    (args, kwargs) = build(CASES["request"][0])
    frame = CODEC.encode_request(args, kwargs)
    assert frame == wrapyfi["encoded"]["request"]
    decoded_args, decoded_kwargs = CODEC.decode_request(frame)
    assert same(decoded_args, args) and same(decoded_kwargs, kwargs)


def test_audio_frames_are_wrapyfi_publishers(wrapyfi):
    codec = WrapyfiJsonCodec("AudioChunk")
    samples = np.ones((4, 2), np.float32)
    header, payload = codec.encode((samples, 44100))
    assert header.startswith(b"{timestamp:") and header.endswith(b"}")
    assert payload == wrapyfi["encoded"]["audio"]
    decoded, rate = codec.decode([b"{timestamp:1.0}", wrapyfi["encoded"]["audio"]])
    assert rate == 44100 and same(decoded, samples)


def test_audio_rate_given_as_a_numpy_int():
    """Wrapyfi's publishers send the caller's rate as is: np.int64(16000) travels as a 0-d array."""
    codec = WrapyfiJsonCodec("AudioChunk")
    (payload,) = CODEC.encode((2, 1, np.int64(16000), np.zeros(2, np.float32)))
    samples, rate = codec.decode([b"{timestamp:1.0}", payload])
    assert type(rate) is int and rate == 16000 and samples.shape == (2, 1)
    (payload,) = CODEC.encode((2, 1, np.float64(16000.0), np.zeros(2, np.float32)))
    with pytest.raises(DecodeError, match="ints"):
        codec.decode([b"{timestamp:1.0}", payload])


def test_image_frames(wrapyfi):
    codec = WrapyfiJsonCodec("Image")
    image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    header, payload = codec.encode(image)
    assert header.startswith(b"{timestamp:") and payload == ours(image)
    assert same(codec.decode([header, payload]), image)
    jpeg = b"\xff\xd8\xff\xe0 rest of a jpeg"
    assert codec.encode(("image/jpeg", jpeg))[1] == jpeg
    assert codec.decode([b"{timestamp:1.0}", jpeg]) == ("image/jpeg", jpeg)
    with pytest.raises(DecodeError, match="JSON, JPEG or PNG"):
        codec.decode([b"{timestamp:1.0}", b"GIF89a"])
    with pytest.raises(DecodeError, match="2 frame"):
        codec.decode([payload])


def test_image_and_audio_replies_are_wrapyfi_servers():
    """Wrapyfi's servers reply ``json.dumps({"img": img.tolist()})`` and
    ``json.dumps({"aud": (chunk, channels, rate, aud.tolist())})``."""
    image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    codec = WrapyfiJsonCodec("Image")
    frame = codec.encode_reply(image)
    assert frame == json.dumps({"img": image.tolist()}).encode()
    assert same(codec.decode_reply(frame), image)
    floats = np.linspace(0, 1, 6, dtype=np.float32).reshape(1, 2, 3)
    assert same(codec.decode_reply(codec.encode_reply(floats)), floats)
    samples = np.linspace(-1, 1, 8, dtype=np.float32).reshape(4, 2)
    audio = WrapyfiJsonCodec("AudioChunk")
    frame = audio.encode_reply((samples, 16000))
    assert frame == json.dumps({"aud": (4, 2, 16000, samples.tolist())}).encode()
    decoded, rate = audio.decode_reply(frame)
    assert rate == 16000 and same(decoded, samples)
    with pytest.raises(DecodeError, match="outside 0..255"):
        codec.decode_reply(b'{"img": [[300]]}')


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_values_the_wire_cannot_carry_are_an_encode_error(wrapyfi, name):
    expression, wrapyfi_raises = REFUSED[name]
    assert wrapyfi["refuses"][name] is wrapyfi_raises
    value = build(expression)
    with pytest.raises(EncodeError) as caught:
        CODEC.encode(value)
    message = str(caught.value)
    assert type(value).__name__ in message or "key" in message or "zone" in message


def test_pandas_legacy_json_is_wrapyfis(wrapyfi):
    import pandas
    frame = pandas.DataFrame({"a": [1, 2], "b": [0.5, 1.5]}, index=[10, 20])
    assert ours({"df": frame}) == b'{"df": ' + wrapyfi["pandas_legacy"].encode() + b"}"
    assert same(CODEC.decode([ours(frame)]), frame)
    series = pandas.Series([1.5, 2.5], name="x")
    assert same(CODEC.decode([ours(series)]), series)
    with pytest.raises(EncodeError, match="pandas' JSON"):
        CODEC.encode(pandas.Series([1, 2]))  # unnamed: comes back named 0


def test_pickle_markers_need_the_opt_in(wrapyfi):
    """Wrapyfi with pandas >= 2 sends DataFrames as a pickle: refused unless allow_pickle=True."""
    import pandas
    frame = pandas.DataFrame({"a": [1, 2], "b": [0.5, 1.5]}, index=[10, 20])
    pickled = wrapyfi["pandas_pickle"].encode()
    with pytest.raises(DecodeError, match="PandasData.*pickle.*allow_pickle=True"):
        CODEC.decode([pickled])
    unsafe = WrapyfiJsonCodec(allow_pickle=True)
    assert same(unsafe.decode([pickled]), frame)
    assert unsafe.decode([unsafe.encode(frame)[0]]).equals(frame)
    assert b"PandasData" in unsafe.encode(frame)[0]


@pytest.mark.parametrize("name", PICKLE_MARKERS)
def test_every_pickle_marker_is_refused(name):
    evil = json.dumps({"__wrapyfi__": [name, pickle.dumps(Point(1, 2), protocol=5).decode("latin1")]}).encode()
    with pytest.raises(DecodeError, match=f"{name}.*allow_pickle=True"):
        CODEC.decode([evil])
    if name in ("PaddleTensor", "DaskData"):
        with pytest.raises(DecodeError, match=f"{name} is not supported"):
            WrapyfiJsonCodec(allow_pickle=True).decode([evil])
    else:
        assert WrapyfiJsonCodec(allow_pickle=True).decode([evil]) == Point(1, 2)


def test_wrapyfi_loads_no_builtin_plugin_by_itself(wrapyfi):
    """What docs/wire.md says of Wrapyfi 0.5.0: after ``import wrapyfi`` no plugin is registered."""
    assert wrapyfi["plugins_after_import"] == 0


def test_torch_loads_weights_only():
    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    for payload in (Evil(), {"not": torch.zeros(1)}):
        memfile = io.BytesIO()
        torch.save(payload, memfile)
        marker = {"__wrapyfi__": ["PytorchTensor", base64.b64encode(memfile.getvalue()).decode(), "cpu"]}
        with pytest.raises(DecodeError, match="PytorchTensor"):
            CODEC.decode([json.dumps(marker).encode()])
    view = torch.arange(1000.0)[:2]
    assert len(ours(view)) < 4000 and same(CODEC.decode([ours(view)]), view.clone())
    moved = WrapyfiJsonCodec(map_torch_devices={"cuda:0": "cpu"})
    marker = json.loads(ours(torch.ones(2)))
    marker["__wrapyfi__"][2] = "cuda:0"
    assert same(moved.decode([json.dumps(marker).encode()]), torch.ones(2))


def test_a_received_marker_imports_no_library():
    """Decoding a torch/PIL/pandas marker in a process that has not imported the library is a
    DecodeError saying how to allow it, and imports nothing; allowed, it decodes."""
    script = r"""
import json, sys
from wrapyfi_like.middlewares.wrapyfi_zeromq.json_codec import WrapyfiJsonCodec
from wrapyfi_like.exceptions import DecodeError
frames = json.load(sys.stdin)
for name, frame in frames.items():
    try:
        WrapyfiJsonCodec().decode([frame.encode()])
        print(name, "decoded")
    except DecodeError as error:
        print(name, "refused", "allowed_plugins=[%r]" % name in str(error))
print(sorted(m for m in ("torch", "PIL", "pandas") if m in sys.modules))
allowed = WrapyfiJsonCodec(allowed_plugins=["torch.Tensor", "PILImage"])
print(type(allowed.decode([frames["PytorchTensor"].encode()])).__name__,
      type(allowed.decode([frames["PILImage"].encode()])).__name__)
"""
    import pandas
    import PIL.Image
    import torch
    frames = {"PytorchTensor": ours(torch.ones(1)).decode(), "PILImage": ours(PIL.Image.new("L", (1, 1))).decode(),
              "PandasLegacyData": ours(pandas.DataFrame({"a": [1]})).decode()}
    result = subprocess.run([sys.executable, "-c", script], input=json.dumps(frames), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == [
        "PytorchTensor refused True", "PILImage refused True", "PandasLegacyData refused True", "[]",
        "Tensor Image",
    ]


NPY_HEADER = b"\x93NUMPY\x01\x00"


def npy(header: str, data: bytes = b"") -> str:
    text = header.encode("latin1")
    text += b" " * (-(len(NPY_HEADER) + 2 + len(text) + 1) % 64) + b"\n"
    return base64.b64encode(NPY_HEADER + len(text).to_bytes(2, "little") + text + data).decode()


def png_header(width: int, height: int) -> bytes:
    """A PNG file claiming ``width`` x ``height`` RGB pixels, with no pixel data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", b"") + chunk(b"IEND", b""))


def marker(*fields) -> bytes:
    return json.dumps({"__wrapyfi__": list(fields)}).encode()


HOSTILE = {
    "deep lists": b"[" * 100_000 + b"]" * 100_000,
    "deep markers": b'{"__wrapyfi__": ["tuple", [' * 5000 + b"]]}" * 5000,
    "huge int": b"9" * 100_000,
    "not utf-8": b'"\xff\xfe"',
    "not json": b"{'single': 'quotes'}",
    "unknown marker": marker("x" * 10_000, 1),
    "marker with extra keys": b'{"__wrapyfi__": ["tuple", [1]], "x": 1}',
    "marker not a list": b'{"__wrapyfi__": "tuple"}',
    "empty marker": b'{"__wrapyfi__": []}',
    "tuple of a string": marker("tuple", "abc"),
    "tuple with extra fields": marker("tuple", [1], 2),
    "unhashable set": marker("set", [{"a": 1}]),
    "bad datetime": marker("datetime", "2025-13-45"),
    "long datetime": marker("datetime", "2" * 10_000),
    "datetime64 now": marker("numpy.datetime64", "now"),
    "bad base64": marker("numpy.ndarray", "!!!!"),
    "not npy": marker("numpy.ndarray", base64.b64encode(b"PK\x03\x04 a zip").decode()),
    "npy with object dtype": marker("numpy.ndarray", npy("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }",
                                                        pickle.dumps([1]))),
    "npy claiming 8 TB": marker("numpy.ndarray", npy("{'descr': '<f8', 'fortran_order': False, "
                                                     "'shape': (1000000000000,), }", b"\0" * 8)),
    "npy too short": marker("numpy.ndarray", npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", b"\0" * 8)),
    "npy too long": marker("numpy.ndarray", npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", b"\0" * 16)),
    "npy negative shape": marker("numpy.ndarray", npy("{'descr': '<f8', 'fortran_order': False, 'shape': (-1,), }")),
    "npy code in header": marker("numpy.ndarray", npy("{'descr': __import__('os').system('echo x'), }")),
    "npy version 9": marker("numpy.ndarray", base64.b64encode(b"\x93NUMPY\x09\x00").decode()),
    "cupy without device": marker("CuPyArray", npy("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", b"\0" * 8)),
    "torch bad base64": marker("PytorchTensor", "%%%", "cpu"),
    "torch not a zip": marker("PytorchTensor", base64.b64encode(b"junk").decode(), "cpu"),
    "torch bad device": marker("PytorchTensor", base64.b64encode(b"junk").decode(), "toaster:9"),
    "pil huge raw": marker("PILImage", "", [100_000, 100_000], "RGB"),
    "pil short raw": marker("PILImage", base64.b64encode(b"\0").decode(), [4, 4], "RGB"),
    "pil long raw": marker("PILImage", base64.b64encode(b"\0" * 49).decode(), [4, 4], "RGB"),
    "pil mode not a string": marker("PILImage", "", [1, 1], ["RGB"]),
    "pil encoded over MAX_IMAGE_PIXELS": marker("PILImage", png_header(9000, 8000).decode("latin1")),
    "pil bad mode": marker("PILImage", "", [1, 1], "X" * 1000),
    "pil not an image": marker("PILImage", "GIF89a junk"),
    "pil not latin-1": marker("PILImage", "\u2603"),
    "pandas bad kind": marker("PandasLegacyData", "", "Panel"),
    "pandas not json": marker("PandasLegacyData", base64.b64encode(b"{").decode(), "DataFrame"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_input_is_a_bounded_decode_error(name):
    """Each refused with a DecodeError whose text is bounded (never another exception)."""
    import pandas  # noqa: F401 (loaded, so pandas markers get as far as parsing)
    import PIL.Image  # noqa: F401
    import torch  # noqa: F401
    with pytest.raises(DecodeError) as caught:
        CODEC.decode([HOSTILE[name]])
    assert len(str(caught.value)) <= MAX_ERROR_CHARS
    if name == "pil encoded over MAX_IMAGE_PIXELS":  # ours, before Pillow's own bomb check (at 2 x 89 Mi)
        assert "MAX_IMAGE_PIXELS" in str(caught.value)


def test_nesting_limit():
    deep = []
    for _ in range(MAX_NESTING - 1):
        deep = [deep]
    assert CODEC.decode([ours(deep)]) == deep
    with pytest.raises(EncodeError, match="MAX_NESTING"):
        CODEC.encode((deep,))


def test_values_per_document_are_bounded():
    """A document may hold MAX_ITEMS values (commas and opening brackets, counted before parsing);
    Image and AudioChunk replies, nested numbers only, MAX_REPLY_ITEMS. At the limit the parser
    runs (and finds these documents malformed); one more is refused before parsing."""
    image = WrapyfiJsonCodec("Image")
    for decode, limit, start in ((lambda frame: CODEC.decode([frame]), MAX_ITEMS, b"["),
                                 (image.decode_reply, MAX_REPLY_ITEMS, b'{"img": [')):
        at_limit = start + b"," * (limit - 1) + b"]" + b"}" * start.count(b"{")  # the reply's {"img": } is not counted
        with pytest.raises(DecodeError, match="malformed"):
            decode(at_limit)
        with pytest.raises(DecodeError, match="exceeds the limit"):
            decode(at_limit.replace(b",", b",,", 1))
    for hostile in (b'{"img": ["a"]}', b'{"img": [{}]}', b'{"img": [1], "x": 2}', b'{"aud": [1]}'):
        with pytest.raises(DecodeError, match="nested lists of numbers"):
            image.decode_reply(hostile)


def test_a_full_hd_image_reply_fits():
    """A 1080 x 1920 RGB reply is 1080 copies of one row's text: counted without building it."""
    codec = WrapyfiJsonCodec("Image")
    row = codec.encode_reply(np.zeros((1, 1920, 3), np.uint8))[len(b'{"img": ['):-len(b"]}")]
    two_rows = b'{"img": [' + b", ".join([row] * 2) + b"]}"
    assert two_rows == codec.encode_reply(np.zeros((2, 1920, 3), np.uint8))
    assert same(codec.decode_reply(two_rows), np.zeros((2, 1920, 3), np.uint8))
    values = 1 + 1080 * (row.count(b",") + row.count(b"[")) + 1079
    assert MAX_ITEMS < values <= MAX_REPLY_ITEMS


@pytest.mark.parametrize("name", ["JAXTensor", "TensorflowTensor", "MXNetTensor", "CuPyArray"])
def test_npy_markers_of_other_frameworks_decode_as_numpy_arrays(name):
    array = np.arange(6, dtype=np.float32).reshape(3, 2)
    (frame,) = CODEC.encode(array)
    fields = json.loads(frame)["__wrapyfi__"][1:]
    device = ["gpu(0)"] if name in ("MXNetTensor", "CuPyArray") else []
    assert same(CODEC.decode([marker(name, *fields, *device)]), array)


def test_no_empty_image_or_audio_message():
    """Wrapyfi's publishers send nothing for a None image or audio chunk: we say so, not send junk."""
    for data_type in ("Image", "AudioChunk"):
        with pytest.raises(EncodeError, match="cannot be None"):
            WrapyfiJsonCodec(data_type).encode(None)


def test_every_numpy_scalar_travels_as_a_0d_array():
    for scalar in (np.longlong(3), np.intc(-1), np.float16(0.5), np.timedelta64(5, "s"), np.bytes_(b"ab"),
                   np.clongdouble(1j), np.void(b"\x01\x02")):
        decoded, expected = CODEC.decode([ours(scalar)]), np.asarray(scalar)
        assert decoded.shape == () and decoded.dtype == expected.dtype
        assert decoded.tobytes() == expected.tobytes() if expected.dtype.kind == "V" else decoded == expected


def test_request_and_reply_shapes_are_checked():
    assert CODEC.decode_request(b'[[1, 2], {"a": 1}]') == ((1, 2), {"a": 1})  # a list of args is read as a tuple
    for frame in (b"[1, 2]", b'[[1], {"a": 1}, 3]', b"{}", b'[[1], [1]]'):
        with pytest.raises(DecodeError, match=r"\[args, kwargs\]"):
            CODEC.decode_request(frame)
    with pytest.raises(DecodeError, match="AudioChunk"):
        WrapyfiJsonCodec("AudioChunk").decode_reply(b'{"aud": [4, 1, 44100]}')
    with pytest.raises(DecodeError, match="holds 3"):
        WrapyfiJsonCodec("AudioChunk").decode_reply(b'{"aud": [4, 1, 44100, [1, 2, 3]]}')


def test_communicator_kwargs_are_accepted():
    """The connect layer hands the codec every decorator kwarg: the codec takes its own, ignores
    the rest, and a None allowed_plugins means none."""
    codec = WrapyfiJsonCodec("Image", allowed_plugins=None, jpg=True, width=4, should_wait=False)
    assert codec.decode([b"{timestamp:1}", b"\xff\xd8\xff"]) == ("image/jpeg", b"\xff\xd8\xff")


def test_configuration_errors():
    for kwargs in ({"data_type": "Properties"}, {"allow_pickle": "yes"}, {"allowed_plugins": "torch.Tensor"},
                   {"map_torch_devices": {"cpu": "no-such-device"}}):
        with pytest.raises(ConfigurationError):
            WrapyfiJsonCodec(**kwargs)


# -- properties ------------------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

ZONES = st.sampled_from([None, dt.timezone.utc, dt.timezone(dt.timedelta(hours=5, minutes=30)),
                         dt.timezone(-dt.timedelta(hours=8))])
KEYS = st.text(max_size=6).filter(lambda key: key != "__wrapyfi__")
HASHABLE = st.recursive(st.none() | st.integers() | st.text(max_size=6),
                        lambda inner: st.lists(inner, max_size=3).map(tuple), max_leaves=6)
ARRAYS = hnp.arrays(dtype=hnp.scalar_dtypes() | hnp.byte_string_dtypes(max_len=3) | hnp.unicode_string_dtypes(max_len=3),
                    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3))
EXACT_LEAVES = (st.none() | st.booleans() | st.integers() | st.floats() | st.text()
                | st.datetimes(timezones=ZONES).map(lambda value: value.replace(fold=0)) | ARRAYS
                | ARRAYS.map(np.asfortranarray))
EXACT_VALUES = st.recursive(
    EXACT_LEAVES,
    lambda children: (st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4)
                      | st.lists(children, max_size=4).map(tuple) | st.sets(HASHABLE, max_size=4)),
    max_leaves=20,
)
PROPERTY = settings(max_examples=100, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@PROPERTY
@given(EXACT_VALUES)
def test_round_trip_is_exact(value):
    assert same(CODEC.decode(CODEC.encode(value)), value)


@PROPERTY
@given(st.lists(EXACT_VALUES, max_size=3).map(tuple), st.dictionaries(KEYS, EXACT_VALUES, max_size=3))
def test_requests_round_trip_exactly(args, kwargs):
    assert same(CODEC.decode_request(CODEC.encode_request(args, kwargs)), (args, kwargs))


@PROPERTY
@given(st.sampled_from(["Y", "M", "W", "D", "h", "m", "s", "ms", "us", "ns", "ps", "as", "generic"])
       .flatmap(lambda unit: hnp.from_dtype(np.dtype(f"datetime64[{unit}]" if unit != "generic" else "datetime64"))))
def test_datetime64_scalars_are_exact_or_an_encode_error(value):
    try:
        frame = ours(value)
    except EncodeError as error:
        assert "numpy.datetime64" in str(error)
        return
    assert same(CODEC.decode([frame]), value)


@PROPERTY
@given(st.lists(st.floats(width=32), min_size=1, max_size=6), st.sampled_from(["float32", "float64", "int64", "bool"]))
def test_torch_tensors_round_trip_exactly(numbers, dtype):
    import torch
    tensor = torch.tensor(numbers, dtype=torch.float32).nan_to_num(0.0).to(getattr(torch, dtype))
    assert same(CODEC.decode([ours(tensor)]), tensor)


MARKER_NAMES = st.sampled_from(["tuple", "set", "datetime", "numpy.datetime64", "numpy.ndarray", "JAXTensor",
                                "CuPyArray", "PytorchTensor", "PILImage", "PandasLegacyData", *PICKLE_MARKERS, "x"])
JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12) | st.sampled_from(
    ["", "AAAA", "k05VTVBZAQB2AA==", "cpu", "RGB", "DataFrame", "2025-01-02", base64.b64encode(b"\x93NUMPY").decode()])
ANY_JSON = st.recursive(
    JSON_LEAVES,
    lambda children: (st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=3)
                      | st.builds(lambda name, fields: {"__wrapyfi__": [name, *fields]}, MARKER_NAMES,
                                  st.lists(children, max_size=4))),
    max_leaves=12,
)


@settings(PROPERTY, max_examples=200)
@given(ANY_JSON | st.binary(max_size=64).map(bytearray))
def test_any_json_decodes_or_is_a_decode_error(document):
    import pandas  # noqa: F401 (loaded: the library markers get past the import rule)
    import PIL.Image  # noqa: F401
    import torch  # noqa: F401
    frame = bytes(document) if isinstance(document, bytearray) else json.dumps(document).encode()
    for codec in (CODEC, WrapyfiJsonCodec("Image"), WrapyfiJsonCodec("AudioChunk")):
        try:
            codec.decode([frame] if codec is CODEC else [b"{timestamp:1}", frame])
            codec.decode_request(frame)
            codec.decode_reply(frame)
        except DecodeError as error:
            assert len(str(error)) <= MAX_ERROR_CHARS


MUTATIONS = 100


@pytest.mark.parametrize("name", sorted(CASES))
def test_mutated_wrapyfi_frames_decode_or_are_a_decode_error(wrapyfi, name):
    """Wrapyfi's own frames with bytes flipped, cut or repeated: a value or a DecodeError, never
    another exception."""
    import random
    frame = wrapyfi["encoded"][name]
    rng = random.Random(name)
    for _ in range(MUTATIONS):
        data = bytearray(frame)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data) or 1)
            choice = rng.random()
            if choice < 0.5:
                data[at:at + 1] = bytes([rng.choice(b'"[]{},:0\\=aA\x93\x00\xff')])
            elif choice < 0.75:
                del data[at:at + rng.randint(1, 16)]
            else:
                data[at:at] = data[at:at + rng.randint(1, 16)]
        try:
            CODEC.decode([bytes(data)])
        except DecodeError as error:
            assert len(str(error)) <= MAX_ERROR_CHARS


@pytest.mark.parametrize("kind", ["torch", "png", "jpeg"])
def test_mutated_library_payloads_decode_or_are_a_decode_error(kind):
    """A torch.save zip or an image file with bytes changed, cut or repeated, inside a well-formed
    marker: torch.load (weights_only) and Pillow give a value or a DecodeError, never a crash."""
    import random

    import PIL.Image
    import torch
    memfile = io.BytesIO()
    if kind == "torch":
        torch.save(torch.arange(6.0).reshape(2, 3), memfile)
    else:
        PIL.Image.new("RGB", (4, 4), (1, 2, 3)).save(memfile, format=kind.upper())
    rng = random.Random(kind)
    for _ in range(MUTATIONS * 2):
        data = bytearray(memfile.getvalue())
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(len(data) or 1)
            choice = rng.random()
            if choice < 0.6:
                data[at:at + 1] = bytes([rng.randrange(256)])
            elif choice < 0.8:
                del data[at:at + rng.randint(1, 32)]
            else:
                data[at:at] = data[at:at + rng.randint(1, 32)]
        fields = (["PytorchTensor", base64.b64encode(data).decode(), "cpu"] if kind == "torch"
                  else ["PILImage", data.decode("latin1")])
        try:
            CODEC.decode([marker(*fields)])
        except DecodeError as error:
            assert len(str(error)) <= MAX_ERROR_CHARS


def test_an_image_opened_from_a_jpeg_is_compressed_again():
    """What docs/wire.md says: PNG files travel exactly, a JPEG is re-saved at Pillow's default quality."""
    import PIL.Image
    pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    for file_format, exact in (("PNG", True), ("JPEG", False)):
        memfile = io.BytesIO()
        PIL.Image.fromarray(pixels).save(memfile, format=file_format, quality=95)
        opened = PIL.Image.open(io.BytesIO(memfile.getvalue()))
        decoded = CODEC.decode([ours(opened)])
        assert decoded.format == file_format and decoded.size == (16, 16)
        assert (decoded.tobytes() == opened.tobytes()) is exact
