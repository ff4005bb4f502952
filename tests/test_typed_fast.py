"""The typed fast path (wrapyfi_like.encoding.typed_fast): a msgspec Struct of plain fields is
encoded and decoded by msgspec in one step, writing exactly the codec's bytes, and a message it
refuses reads, fails and counts exactly as on the codec's path."""

import collections
import dataclasses
import enum
import logging
import typing

import msgpack
import msgspec
import pytest
from hypothesis import given, settings, strategies as st

from wrapyfi_like.connect.formats import ValueFormat
from wrapyfi_like.connect.wrapper import MiddlewareCommunicator
from wrapyfi_like.encoding import Codec
from wrapyfi_like.encoding.typed_fast import HEADER_START, fast_path
from wrapyfi_like.exceptions import DecodeError, EncodeError, ValidationError
from wrapyfi_like.limits import MAX_HEADER_SIZE
from wrapyfi_like.testing import inproc_middleware
from wrapyfi_like.validation import plain

pytestmark = pytest.mark.timeout(60)


class Inner(msgspec.Struct):
    label: str
    weight: typing.Optional[float]


class Outer(msgspec.Struct):
    name: str
    frame: int
    ok: bool
    stamp: float
    values: list[float]
    counts: dict[str, int]
    inner: Inner
    children: list[Inner]
    note: typing.Optional[str] = None


class Level(enum.IntEnum):
    HIGH = 2


INT64 = st.integers(-(2 ** 63), 2 ** 64 - 1)
FLOATS = st.floats(allow_nan=False) | INT64  # an int is a valid float field
TEXT = st.text(max_size=40) | st.text(min_size=250, max_size=300)
INNER = st.builds(Inner, label=TEXT, weight=st.none() | FLOATS)
OUTER = st.builds(
    Outer, name=TEXT, frame=INT64, ok=st.booleans(), stamp=FLOATS, values=st.lists(FLOATS, max_size=70),
    counts=st.dictionaries(TEXT, INT64, max_size=20), inner=INNER, children=st.lists(INNER, max_size=5),
    note=st.none() | TEXT)


def same(one, other):
    """Equal, with each number of the same type (1 == 1.0 in Python, not on the wire) and NaN
    equal to NaN: the same repr."""
    return type(one) is type(other) and repr(one) == repr(other)


def codec_frames(value):
    """What the codec writes for the plain map of ``value``: the path before the fast one."""
    return Codec().encode(plain(value))


@settings(max_examples=150, deadline=None)
@given(OUTER)
def test_the_fast_path_writes_the_codecs_bytes_and_reads_them_back(value):
    fmt = ValueFormat(message_type=Outer)
    frames = fmt.encode(value)
    assert frames == codec_frames(value)
    decoded = fmt.decode(frames)
    assert type(decoded) is Outer and same(decoded, fmt._decode_native(frames))  # an int in a float field: a float
    assert ValueFormat().decode(frames) == plain(value)  # an untyped listener gets the plain map


@dataclasses.dataclass
class InnerDC:
    label: str
    weight: typing.Optional[float]


@dataclasses.dataclass
class OuterDC:
    name: str
    frame: int
    ok: bool
    stamp: float
    values: list[float]
    counts: dict[str, int]
    inner: InnerDC
    children: list[InnerDC]
    note: typing.Optional[str] = None


class InnerTD(typing.TypedDict):
    label: str
    weight: typing.Optional[float]


class OuterTD(typing.TypedDict):
    name: str
    frame: int
    ok: bool
    stamp: float
    values: list[float]
    counts: dict[str, int]
    inner: InnerTD
    children: list[InnerTD]
    note: typing.Optional[str]


def as_dataclass(value):
    tree = plain(value)
    return OuterDC(**{**tree, "inner": InnerDC(**tree["inner"]), "children": [InnerDC(**c) for c in tree["children"]]})


@settings(max_examples=60, deadline=None)
@given(OUTER, st.sampled_from(["dataclass", "TypedDict"]))
def test_dataclasses_and_typeddicts_take_the_fast_path_with_the_same_bytes(value, kind):
    model, value = (OuterDC, as_dataclass(value)) if kind == "dataclass" else (OuterTD, plain(value))
    fmt = ValueFormat(message_type=model)
    assert fmt.decode == fmt._decode_fast
    frames = fmt.encode(value)
    assert frames == codec_frames(value)
    decoded = fmt.decode(frames)
    assert type(decoded) is type(value) and same(decoded, fmt._decode_native(frames))


def test_the_fast_path_is_taken_on_both_sides():
    """Not the codec: its encode and decode are never called for a plain Struct value."""
    fmt = ValueFormat(message_type=Outer)
    value = Outer("pose", 1, True, 2.5, [0.5] * 100, {"a": 1}, Inner("x", None), [Inner("y", 1.0)])

    class NoCodec:
        serializer = "binary"

        def encode(self, tree):
            raise AssertionError("the codec encoded a fast-path value")

        def decode(self, frames):
            raise AssertionError("the codec decoded a fast-path message")

    fmt._codec = NoCodec()
    assert fmt.decode(fmt.encode(value)) == value


@pytest.mark.parametrize("field, odd", [
    ("values", (1.0, 2.0)),  # a tuple: the codec writes a TUPLE extension
    ("frame", Level.HIGH),  # an IntEnum: the codec refuses it, as before
    ("frame", 2 ** 64),  # beyond msgpack's 64 bits: the codec's BIGINT
    ("counts", collections.OrderedDict(a=1)),  # a dict subclass: refused, as before
    ("values", [1.0, Level.HIGH]),
])
def test_values_the_codec_writes_otherwise_take_the_codec(field, odd):
    value = Outer("pose", 1, True, 2.5, [0.5], {}, Inner("x", None), [])
    setattr(value, field, odd)
    fmt = ValueFormat(message_type=Outer)
    try:
        expected = codec_frames(value)
    except Exception as error:
        with pytest.raises(type(error)):
            fmt.encode(value)
        return
    assert fmt.encode(value) == expected
    assert same(fmt.decode(expected), msgspec.convert(plain(value), Outer))


def test_a_wrong_value_still_raises_at_the_call_site_with_the_field_path():
    value = Outer("pose", 1, True, 2.5, [0.5, "x"], {}, Inner("x", None), [])
    with pytest.raises(ValidationError, match=r"\$\.values\[1\]"):
        ValueFormat(message_type=Outer).encode(value)


class Renamed(msgspec.Struct, rename="camel"):
    some_field: int


class Tagged(msgspec.Struct, tag=True):
    a: int


class ArrayLike(msgspec.Struct, array_like=True):
    a: int


class OmitDefaults(msgspec.Struct, omit_defaults=True):
    a: int = 0


class WithBytes(msgspec.Struct):
    data: bytes


class WithTuple(msgspec.Struct):
    xyz: tuple[float, float, float]


class WithAny(msgspec.Struct):
    anything: typing.Any


class WithUnion(msgspec.Struct):
    either: typing.Union[int, str]


class Tree(msgspec.Struct):
    children: list["Tree"]


@dataclasses.dataclass
class NotAllInit:
    a: int
    b: int = dataclasses.field(init=False, default=0)


class TypedDictWithBytes(typing.TypedDict):
    data: bytes


@pytest.mark.parametrize("model", [NotAllInit, TypedDictWithBytes, Renamed, Tagged, ArrayLike, OmitDefaults,
                                   WithBytes, WithTuple, WithAny, WithUnion, Tree, dict, Inner | None])
def test_types_the_codec_writes_otherwise_have_no_fast_path(model):
    assert fast_path(model) is None


def test_nested_structs_lists_dicts_and_optionals_have_a_fast_path():
    assert fast_path(Outer) is not None


def old_path(fmt, frames):
    """The codec and the validator: what a typed format did before the fast path."""
    return fmt._decode_native(frames)


def reads_as_on_the_codecs_path(fmt, frames) -> typing.Optional[Exception]:
    """Assert that ``fmt.decode(frames)`` gives what :func:`old_path` gives: the same value, or an
    error of the same class and text, which is returned (None for a value)."""
    try:
        expected = old_path(fmt, frames)
    except (DecodeError, ValidationError) as error:
        with pytest.raises(type(error)) as got:
            fmt.decode(frames)
        assert str(got.value) == str(error)
        return got.value
    assert same(fmt.decode(frames), expected)
    return None


def refusals():
    good = msgspec.msgpack.encode(Inner("x", 1.0))
    timestamp_field = msgpack.packb({"label": "x", "weight": msgpack.Timestamp(1, 0)}, datetime=False)
    return {
        "wrong type": [HEADER_START + msgpack.packb({"label": 1, "weight": None})],
        "missing field": [HEADER_START + msgpack.packb({"weight": None})],
        "msgpack Timestamp": [HEADER_START + timestamp_field],
        "unknown extension": [HEADER_START + msgpack.packb({"label": "x", "weight": msgpack.ExtType(99, b"")})],
        "a tuple extension where a str goes": [
            HEADER_START + msgpack.packb({"label": msgpack.ExtType(1, msgpack.packb([1])), "weight": None})],
        "truncated": [HEADER_START + good[:-3]],
        "trailing bytes": [HEADER_START + good + b"\xc0"],
        "a string longer than the message": [HEADER_START + b"\x82\xa5label\xdb\xff\xff\xff\xf0ab\xa6weight\xc0"],
        "a buffer more than announced": [HEADER_START + good, b"extra"],
        "another version": [bytes([0x93, 2, 0]) + good],
        "over MAX_HEADER_SIZE": [HEADER_START + b"\xc0" * MAX_HEADER_SIZE],
        "lists nested 100000 deep in a key the type does not have": [
            HEADER_START + good.replace(b"\x82", b"\x83", 1) + b"\xa1z" + b"\x91" * 100000 + b"\xc0"],
    }


@pytest.mark.parametrize("model", [Inner, InnerDC, InnerTD])
@pytest.mark.parametrize("on_invalid", ["skip", "raise"])
@pytest.mark.parametrize("case", list(refusals()))
def test_a_refused_message_fails_exactly_as_on_the_codecs_path(case, on_invalid, model):
    """The same error class and text (field path included): listeners skip, log and count it as
    malformed, or raise it with ``on_invalid="raise"``, as before."""
    frames = refusals()[case]
    fmt = ValueFormat(message_type=model, on_invalid=on_invalid)
    assert fmt.decode == fmt._decode_fast
    assert reads_as_on_the_codecs_path(fmt, frames) is not None


def test_an_int_where_a_float_goes_reads_as_on_the_codecs_path():
    frames = [HEADER_START + msgpack.packb({"label": "x", "weight": 3})]
    fmt = ValueFormat(message_type=Inner)
    value = fmt.decode(frames)
    assert value == old_path(fmt, frames) and type(value.weight) is float


def test_json_mode_and_inline_serializers_keep_their_paths():
    fmt = ValueFormat(message_type=Inner, serializer="json")
    assert fmt.encode == fmt._encode_native
    value = Inner("x", 1.0)
    assert fmt.decode(fmt.encode(value)) == value
    # a JSON body reaches a fast-path receiver: read by the codec
    assert ValueFormat(message_type=Inner).decode(fmt.encode(value)) == value


@pytest.fixture
def in_memory():
    with inproc_middleware() as bus:
        yield bus
    MiddlewareCommunicator.close_all_instances()


class Labels(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Labels", "$topic", should_wait="$wait")
    def inner(self, value, topic, wait=False) -> Inner:
        return value,

    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Labels", "$topic", should_wait="$wait",
                                     listener_kwargs=dict(on_invalid="raise"))
    def strict_inner(self, value, topic, wait=False) -> Inner:
        return value,

    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Labels", "$topic", should_wait="$wait")
    def untyped(self, value, topic, wait=False) -> tuple[dict]:
        return value,


def test_a_fast_path_listener_skips_counts_and_logs_an_invalid_message(in_memory, topic, caplog):
    sender, viewer, raw = Labels(), Labels(), Labels()
    sender.activate_communication(Labels.inner, mode="publish")
    viewer.activate_communication(Labels.inner, mode="listen")
    raw.activate_communication(Labels.untyped, mode="publish")
    assert viewer.inner(None, topic) == [None]  # builds the listener
    raw.untyped({"label": 5, "weight": None}, topic)  # an untyped peer's bad map
    sender.inner(Inner("ok", 2.0), topic)
    with caplog.at_level(logging.WARNING, logger="wrapyfi_like"):
        (received,) = viewer.inner(None, topic, wait=True)
    assert received == Inner("ok", 2.0)
    assert viewer.stats()["inner"][topic]["malformed"] == 1
    assert "$.label" in caplog.text and "Inner" in caplog.text


def test_a_fast_path_listener_with_on_invalid_raise_hands_the_error_to_the_caller(in_memory, topic):
    viewer, raw = Labels(), Labels()
    viewer.activate_communication(Labels.strict_inner, mode="listen")
    raw.activate_communication(Labels.untyped, mode="publish")
    assert viewer.strict_inner(None, topic) == [None]
    raw.untyped({"label": "x", "weight": "heavy"}, topic)
    with pytest.raises(ValidationError, match=r"\$\.weight"):
        viewer.strict_inner(None, topic, wait=True)
    assert viewer.stats()["strict_inner"][topic]["malformed"] == 1


@pytest.mark.parametrize("model, value", [
    (Outer, {**plain(Outer("pose", 1, True, 2.5, [0.5], {}, Inner("x", None), [])), "extra": b"raw"}),
    (Outer, Outer("pose", 1, True, 2.5, [0.5], {}, {"label": "x", "weight": None, "extra": bytearray(b"raw")}, [])),
    (Outer, Outer("pose", 1, True, 2.5, [0.5], {}, Inner("x", None), [{"label": "y", "weight": 1.0, "x": b"r"}])),
    (OuterDC, OuterDC("pose", 1, True, 2.5, [0.5], {}, {"label": "x", "weight": None, "extra": b"raw"}, [])),
    (InnerTD, {"label": "x", "weight": None, "extra": memoryview(b"raw")}),
    (OuterTD, {**plain(Outer("pose", 1, True, 2.5, [0.5], {}, Inner("x", None), [])),
               "inner": {"label": "x", "weight": None, "extra": b"raw"}}),
])
def test_keys_the_model_does_not_have_are_written_by_the_codec(model, value):
    """The check ignores them, so they may hold anything: bytes go out of band, as before."""
    fmt = ValueFormat(message_type=model)
    assert fmt.encode == fmt._encode_fast
    frames = fmt.encode(value)
    assert frames == codec_frames(value) and len(frames) == 2


def test_a_key_the_type_does_not_have_is_skipped_unread():
    """msgspec skips it within the message's bytes; the codec's path would decode it (and refuse
    an unknown extension code in it). The typed value is the same either way."""
    frames = [HEADER_START + msgpack.packb({"label": "x", "weight": None, "z": msgpack.ExtType(99, b"")})]
    fmt = ValueFormat(message_type=Inner)
    assert fmt.decode(frames) == Inner("x", None)
    with pytest.raises(DecodeError, match="unknown extension code 99"):
        old_path(fmt, frames)


ANY_PLAIN = st.recursive(
    st.none() | st.booleans() | INT64 | st.floats() | TEXT | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6) | INT64, inner, max_size=4),
    max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(OUTER, st.sampled_from([None, *Outer.__struct_fields__, "inner.label", "inner.weight", "extra"]), ANY_PLAIN)
def test_any_message_reads_as_on_the_codecs_path(value, where, replacement):
    """A valid message with one field (or a field inside, or a key the type does not have)
    replaced by any msgpack value: the same value, or the same error."""
    tree = plain(value)
    if where is not None and "." in where:
        tree["inner"][where.split(".")[1]] = replacement
    elif where is not None:
        tree[where] = replacement
    frames = [HEADER_START + msgpack.packb(tree)]
    for on_invalid in ("skip", "raise"):
        reads_as_on_the_codecs_path(ValueFormat(message_type=Outer, on_invalid=on_invalid), frames)


def test_a_header_over_the_limit_is_refused_on_sending_as_before():
    value = Inner("x" * MAX_HEADER_SIZE, None)
    with pytest.raises(EncodeError, match="MAX_HEADER_SIZE") as expected:
        Codec().encode(plain(value))
    with pytest.raises(EncodeError) as got:
        ValueFormat(message_type=Inner).encode(value)
    assert str(got.value) == str(expected.value)
