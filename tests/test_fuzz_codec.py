"""Structure-aware fuzzing of the codec: whatever the bytes, ``decode`` returns a value or raises
:class:`DecodeError`, nothing else, and never crashes the process.

Three sources of input, about 220,000 cases in all:

- hypothesis strategies over the wire grammar of docs/wire.md: random *valid values* (which must
  also round-trip exactly) and random *msgpack trees* with extension codes anywhere, some of
  their payloads shaped like the real extensions (array metadata, numpy scalars, plugin fields);
- seeded *mutation* of valid encoded messages: bit flips, interesting bytes, truncation,
  insertion, deletion, splices of two messages, frame duplication, removal and swaps, and
  corrupted msgpack length fields; this is most of the volume, at ~20 µs a case;
- the same mutation of the built-in plugins' messages (torch, PIL, pandas, pyarrow) and of the
  Image and AudioChunk data types' (raw, JPEG, PNG), and the hostile shapes (deep nesting, a huge
  header), in *subprocesses*, so that a segfault in our code or a library fails one test instead
  of killing pytest.
"""

import datetime as dt
import random
import subprocess
import sys
import textwrap

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from wrapyfi_like.encoding import Codec
from wrapyfi_like.exceptions import DecodeError

pytestmark = pytest.mark.timeout(120)

CODEC = Codec()
VALUE_EXAMPLES = 800
TREE_EXAMPLES = 1_500
MUTATIONS = 200_000
PLUGIN_MUTATIONS = 3_000  # per plugin and per data type, in a subprocess
FUZZ_SETTINGS = dict(deadline=None, database=None, derandomize=True,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def decode_or_decode_error(frames: list) -> bool:
    """True if ``frames`` decoded, False if they raised DecodeError; anything else propagates."""
    try:
        CODEC.decode(frames)
    except DecodeError:
        return False
    return True


# --- valid values: every one must round-trip exactly -------------------------------------------

_DTYPES = ["|b1", "<i1", "<u2", ">i4", "<i8", "<f2", "<f4", ">f8", "<c8", "<c16", "<M8[ns]", "<m8[s]", "|S3", "<U2"]
_hashables = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12),
    st.binary(max_size=12), st.complex_numbers(allow_nan=False),
    st.datetimes(timezones=st.none() | st.timezones()), st.dates(), st.times(), st.timedeltas(),
)
_arrays = hnp.arrays(dtype=st.sampled_from(_DTYPES), shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4))
_numpy_scalars = _arrays.filter(lambda a: a.size > 0).map(lambda a: a.reshape(-1)[0])
_values = st.recursive(
    st.one_of(_hashables, _arrays, _numpy_scalars),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(_hashables, children, max_size=4),
        st.frozensets(_hashables, max_size=4),
        st.sets(_hashables, max_size=4),
    ),
    max_leaves=20,
)


def same(a, b) -> bool:
    """Exact equality: same types at every depth, arrays equal byte for byte, NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, np.generic):
        return a.dtype == b.dtype and a.tobytes() == b.tobytes()
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    if isinstance(a, dt.datetime):
        return a == b and a.tzinfo == b.tzinfo and a.fold == b.fold
    return a == b


@settings(max_examples=VALUE_EXAMPLES, **FUZZ_SETTINGS)
@given(_values)
def test_random_valid_values_round_trip_exactly(value):
    frames = CODEC.encode(value)
    copied = [bytes(memoryview(frame).cast("B")) for frame in frames]
    assert same(CODEC.decode(copied), value)


# --- random msgpack trees over the header grammar, extension codes anywhere ----------------------

def _ext(code: int, data: bytes) -> msgpack.ExtType:
    """An ExtType with any code, negative ones included (msgpack's constructor refuses those)."""
    return tuple.__new__(msgpack.ExtType, (code, data))


_msgpack_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-2 ** 63, 2 ** 64 - 1), st.floats(), st.text(max_size=16),
    st.binary(max_size=16),
)
_indices = st.integers(-1, 4)
_shaped_payloads = {  # payloads shaped like the real extension's, so decoding gets past the first check
    6: _indices.map(msgpack.packb),
    8: st.tuples(_indices, st.sampled_from(["B", "<d", "i", "x", ""]), st.lists(st.integers(-1, 9), max_size=3)),
    9: st.tuples(_indices, st.sampled_from(_DTYPES + ["|O", "<V8", "<f3", ""]),
                 st.lists(st.integers(-1, 2 ** 62), max_size=3), st.booleans()),
    10: st.tuples(st.sampled_from(_DTYPES + ["|O"]), _indices.map(lambda i: _ext(6, msgpack.packb(i)))),
    11: st.lists(st.integers(-1, 3000), min_size=7, max_size=9).map(lambda fields: fields + [None]),
    13: st.tuples(st.integers(-1, 25), st.integers(0, 60), st.integers(0, 60), st.integers(0, 10 ** 6),
                  st.integers(0, 1), st.sampled_from([None, ["zone", "Europe/Paris"], ["zone", "../../etc/passwd"],
                                                      ["offset", 0, 3600, 0, None], ["offset", 2, 0, 0, "x"]])),
    15: st.tuples(st.sampled_from(["PIL.Image", "pandas.DataFrame", "pyarrow.Table", "torch.Tensor", "no.such"]),
                  _indices.map(lambda i: _ext(8, msgpack.packb([i, "B", [4]])))),
}


def _payload_bytes(value) -> bytes:
    return value if isinstance(value, bytes) else msgpack.packb(list(value) if isinstance(value, tuple) else value)


def _extensions(children):
    random_ext = st.builds(lambda code, child: _ext(code, msgpack.packb(child)),
                           st.one_of(st.integers(1, 15), st.integers(-128, 127)), children)
    raw_ext = st.builds(_ext, st.integers(-128, 127), st.binary(max_size=24))
    shaped = st.one_of(*(payload.map(lambda value, code=code: _ext(code, _payload_bytes(value)))
                         for code, payload in _shaped_payloads.items()))
    return st.one_of(random_ext, raw_ext, shaped)


_trees = st.recursive(
    _msgpack_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(_msgpack_leaves, children, max_size=4),
        _extensions(children),
    ),
    max_leaves=25,
)


@settings(max_examples=TREE_EXAMPLES, **FUZZ_SETTINGS)
@given(tree=_trees, count=st.integers(0, 4), buffers=st.lists(st.binary(max_size=48), max_size=4))
def test_random_msgpack_trees_decode_or_raise_decode_error(tree, count, buffers):
    header = b"\x93\x01" + msgpack.packb(count) + msgpack.packb(tree)
    decode_or_decode_error([header, *buffers])


# --- mutation of valid messages ------------------------------------------------------------------

def _corpus() -> list:
    values = [
        None, 0, -1, 2 ** 70, "text", b"bytes", bytearray(b"ba"), 1.5, 3 + 4j, [1, 2.5, "x"], (1, (2, (3,))),
        {"n": 1, "t": (1, 2), 3: {4, 5}, (6, 7): frozenset({8})},
        {"image": np.zeros((4, 5, 3), np.uint8), "stamp": dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)},
        np.arange(12, dtype=">f8").reshape(3, 4), np.asfortranarray(np.ones((3, 2), "<i2")),
        np.array(["ab", "c"]), np.array([b"xy"]), np.datetime64("2024-01-01", "ns"), np.float32(1.5),
        [np.int8(3), np.complex64(1j)], memoryview(b"abcdefgh").cast("d"), memoryview(bytes(range(6))).cast("B", (2, 3)),
        dt.date(2024, 2, 29), dt.time(1, 2, 3, 4, fold=1), dt.timedelta(days=-1, microseconds=5),
        dt.datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=__import__("zoneinfo").ZoneInfo("Europe/Paris")),
        ((1, "a"), {"kw": [b"x", b"y"]}), [[[[[]]]]], {"": {"": {"": None}}}, [True, False, None] * 5,
        [float(i) for i in range(40)], {f"k{i}": i for i in range(20)},
    ]
    return [[bytes(memoryview(frame).cast("B")) for frame in CODEC.encode(value)] for value in values]


_INTERESTING = bytes([0x00, 0x01, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc6,
                      0xc7, 0xc9, 0xca, 0xcb, 0xcf, 0xd3, 0xd4, 0xd6, 0xd7, 0xd8, 0xd9, 0xdb, 0xdc, 0xdd,
                      0xde, 0xdf, 0xe0, 0xff])
_LENGTH_FIELDS = {0xc4: 1, 0xc5: 2, 0xc6: 4, 0xc7: 1, 0xc8: 2, 0xc9: 4, 0xd9: 1, 0xda: 2, 0xdb: 4,
                  0xdc: 2, 0xdd: 4, 0xde: 2, 0xdf: 4}


def _corrupt_length(rng: random.Random, frame: bytearray) -> None:
    """Give one msgpack length field (or a fix-size marker's count) a wrong value."""
    positions = [i for i, byte in enumerate(frame) if byte in _LENGTH_FIELDS or 0x80 <= byte <= 0xbf]
    if not positions:
        return
    at = rng.choice(positions)
    width = _LENGTH_FIELDS.get(frame[at])
    if width is None:  # fixmap, fixarray, fixstr: the count is in the marker's low bits
        frame[at] = (frame[at] & 0xf0 if frame[at] < 0xa0 else 0xa0) | rng.randrange(16 if frame[at] < 0xa0 else 32)
        return
    value = rng.choice([0, 1, 2 ** (8 * width) - 1, rng.randrange(2 ** (8 * width))])
    frame[at + 1:at + 1 + width] = value.to_bytes(width, "big")


def mutate(rng: random.Random, message: list, corpus: list) -> list:
    """One to three random mutations of ``message`` (a list of bytes frames)."""
    frames = [bytearray(frame) for frame in message]
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        if not frames:
            frames.append(bytearray())
        index = 0 if rng.random() < 0.7 else rng.randrange(len(frames))
        frame = frames[index]
        operation = rng.randrange(11)
        if operation == 0 and frame:  # bit flips
            for _ in range(rng.randrange(1, 4)):
                frame[rng.randrange(len(frame))] ^= 1 << rng.randrange(8)
        elif operation == 1 and frame:  # an interesting byte
            frame[rng.randrange(len(frame))] = rng.choice(_INTERESTING)
        elif operation == 2:  # truncation
            del frame[rng.randrange(len(frame) + 1):]
        elif operation == 3:  # insertion
            at = rng.randrange(len(frame) + 1)
            frame[at:at] = rng.randbytes(rng.randrange(1, 9)) if rng.random() < 0.5 else bytes([rng.choice(_INTERESTING)])
        elif operation == 4 and frame:  # deletion
            at = rng.randrange(len(frame))
            del frame[at:at + rng.randrange(1, 9)]
        elif operation == 5:  # splice with another message's header
            other = rng.choice(corpus)[0]
            frames[index] = frame[:rng.randrange(len(frame) + 1)] + other[rng.randrange(len(other) + 1):]
        elif operation == 6:  # frame duplication
            frames.insert(rng.randrange(len(frames) + 1), bytearray(rng.choice(frames)))
        elif operation == 7:  # frame removal (the header too, sometimes)
            del frames[rng.randrange(len(frames))]
        elif operation == 8 and len(frames) > 1:  # frame swap
            i, j = rng.sample(range(len(frames)), 2)
            frames[i], frames[j] = frames[j], frames[i]
        elif operation == 9:  # length-field corruption
            _corrupt_length(rng, frame)
        elif operation == 10 and len(frames) > 1:  # a buffer of another length
            frames[rng.randrange(1, len(frames))] = bytearray(rng.randbytes(rng.randrange(0, 33)))
    return [bytes(frame) for frame in frames]


def test_mutated_valid_messages_decode_or_raise_decode_error():
    corpus = _corpus()
    rng = random.Random(20261205)
    decoded = 0
    for _ in range(MUTATIONS):
        frames = mutate(rng, rng.choice(corpus), corpus)
        try:
            decoded += decode_or_decode_error(frames)
        except Exception as error:  # report the input that broke the promise
            raise AssertionError(f"{type(error).__name__}: {error} for frames {frames!r:.2000}") from error
    assert 0 < decoded < MUTATIONS  # both outcomes happen: the mutations are neither all fatal nor all benign


# --- in subprocesses: the built-in plugins' messages, and the hostile shapes -----------------------

def _run_isolated(script: str) -> str:
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=100)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-3000:]}"
    return result.stdout


def test_mutated_plugin_messages_in_a_subprocess():
    pytest.importorskip("torch")
    pytest.importorskip("pandas")
    pytest.importorskip("PIL")
    script = textwrap.dedent(f"""
        import io, random, sys
        import numpy as np, pandas as pd, pyarrow as pa, torch
        from PIL import Image
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
        from test_fuzz_codec import mutate, decode_or_decode_error, CODEC
        png = io.BytesIO(); Image.new("RGB", (6, 4), (1, 2, 3)).save(png, format="PNG")
        values = {{
            "torch": [torch.arange(12, dtype=torch.float32).reshape(3, 4), torch.zeros(0), torch.tensor(True)],
            "PIL": [Image.new("P", (5, 3)), Image.open(io.BytesIO(png.getvalue())), Image.new("I;16", (2, 2))],
            "pandas": [pd.DataFrame({{"a": [1, 2], "b": ["x", None]}}), pd.Series([1.5, None], name="s")],
            "pyarrow": [pa.table({{"a": [1, 2], "l": [[1], None]}}), pa.array(["x", None])],
        }}
        from wrapyfi_like.connect.formats import ValueFormat
        from wrapyfi_like.encoding import Codec
        from wrapyfi_like.exceptions import DecodeError
        encoder = Codec(pillow_encoded=True)
        rng = random.Random(7)
        for name, objects in values.items():
            corpus = [[bytes(memoryview(f).cast("B")) for f in encoder.encode(v)] for v in objects]
            assert all(decode_or_decode_error(message) for message in corpus)
            decoded = sum(decode_or_decode_error(mutate(rng, rng.choice(corpus), corpus))
                          for _ in range({PLUGIN_MUTATIONS}))
            print(name, {PLUGIN_MUTATIONS}, decoded)
        frame = np.arange(48 * 64 * 3, dtype=np.uint8).reshape(48, 64, 3)
        data_types = {{  # the data types' own checks, and JPEG/PNG decoding, after the codec's
            "Image": [ValueFormat("Image", **kwargs) for kwargs in ({{}}, {{"jpg": True}}, {{"png": True}})],
            "AudioChunk": [ValueFormat("AudioChunk", rate=16000)],
        }}
        for name, formats in data_types.items():
            sample = frame if name == "Image" else (np.zeros((160, 1), np.float32), 16000)
            corpus = [[bytes(memoryview(f).cast("B")) for f in fmt.encode(sample)] for fmt in formats]
            decoded = 0
            for _ in range({PLUGIN_MUTATIONS}):
                try:
                    rng.choice(formats).decode(mutate(rng, rng.choice(corpus), corpus))
                    decoded += 1
                except DecodeError:
                    pass
            print(name, {PLUGIN_MUTATIONS}, decoded)
    """)
    lines = _run_isolated(script).split("\n")
    assert [line.split()[0] for line in lines if line] == ["torch", "PIL", "pandas", "pyarrow", "Image", "AudioChunk"]


def test_hostile_shapes_in_a_subprocess():
    """The shapes that crashed a listener or could exhaust it, decoded where a crash cannot take
    pytest down: each must be a DecodeError (or, at the limits, a value)."""
    script = textwrap.dedent("""
        import msgpack
        from wrapyfi_like.encoding import Codec
        from wrapyfi_like.exceptions import DecodeError
        from wrapyfi_like.limits import MAX_DEPTH, MAX_HEADER_SIZE

        def nested(code, depth, leaf=b"\\x01", prefix=b"\\x91"):
            # ext 32 around each level, built inside out in linear time
            parts, inner = [], len(leaf)
            for _ in range(depth):
                data = len(prefix) + inner
                parts.append(b"\\xc9" + data.to_bytes(4, "big") + bytes([code]) + prefix)
                inner = 6 + data
            return b"".join(reversed(parts)) + leaf

        def message(body):
            return [b"\\x93\\x01\\x00" + body]

        shapes = {
            "tuples 200 deep (the shape that crashed listeners)": message(nested(1, 200)),
            "tuples 100000 deep": message(nested(1, 100_000)),
            "sets 5000 deep": message(nested(2, 5_000)),
            "plugin fields 5000 deep": message(nested(15, 5_000, prefix=b"\\x92\\xa1x")),
            "tuples at the limit": message(nested(1, MAX_DEPTH)),
            "lists 100000 deep": message(b"\\x91" * 100_000 + b"\\x01"),
            "64 MiB header of nils": [b"\\x93\\x01\\x00\\xdd" + (2 ** 26).to_bytes(4, "big") + b"\\xc0" * 2 ** 26],
            "array claiming 4 G items": message(b"\\xdd\\xff\\xff\\xff\\xff"),
        }
        codec = Codec()
        for name, frames in shapes.items():
            try:
                codec.decode(frames)
                outcome = "value"
            except DecodeError:
                outcome = "DecodeError"
            print(f"{name}: {outcome}")
        # VmHWM, not getrusage: a forked child's ru_maxrss keeps the parent's peak from before exec
        peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
        print("peak RSS MB", peak_kb // 1024)
    """)
    lines = _run_isolated(script).strip().split("\n")
    outcomes = dict(line.split(": ") for line in lines[:-1])
    assert outcomes.pop("tuples at the limit") == "value"
    assert set(outcomes.values()) == {"DecodeError"}, outcomes
    assert int(lines[-1].split()[-1]) < 400  # the 64 MiB header itself is most of it
