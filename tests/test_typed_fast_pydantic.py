"""The typed fast path for pydantic models (wrapyfi_like.encoding.typed_fast.PydanticFast): a
model of plain fields whose verdict depends on its fields' values alone skips the codec's walk,
writes exactly the codec's bytes, and reads, fails and counts exactly as on the codec's path;
pydantic stays the only judge on both sides."""

import typing

import msgpack
import pydantic
import pytest
from hypothesis import given, settings, strategies as st

from test_typed_fast import ANY_PLAIN, FLOATS, INT64, TEXT, old_path, reads_as_on_the_codecs_path, refusals, same
from wrapyfi_like.connect.formats import ValueFormat
from wrapyfi_like.encoding import Codec
from wrapyfi_like.encoding.typed_fast import HEADER_START, PydanticFast, fast_path
from wrapyfi_like.exceptions import ValidationError

pytestmark = pytest.mark.timeout(60)


class Reading(pydantic.BaseModel):
    name: str
    frame: int
    ok: bool
    stamp: float
    values: list[float]
    counts: dict[str, int]
    note: typing.Optional[str] = None


class Inner(pydantic.BaseModel):
    label: str
    weight: typing.Optional[float]


READING = st.builds(Reading, name=TEXT, frame=INT64, ok=st.booleans(), stamp=FLOATS,
                    values=st.lists(FLOATS, max_size=70), counts=st.dictionaries(TEXT, INT64, max_size=20),
                    note=st.none() | TEXT)


def fields(value: pydantic.BaseModel) -> dict:
    return dict(value.__dict__)


@settings(max_examples=150, deadline=None)
@given(READING)
def test_a_plain_pydantic_model_takes_the_fast_path_with_the_codecs_bytes(value):
    fmt = ValueFormat(message_type=Reading)
    assert type(fmt._fast) is PydanticFast and fmt.encode == fmt._encode_model_fast and fmt.decode == fmt._decode_fast
    frames = fmt.encode(value)
    assert frames == Codec().encode(fields(value))
    decoded = fmt.decode(frames)
    assert type(decoded) is Reading and same(decoded, old_path(fmt, frames))


def test_bytes_that_pydantics_check_accepts_for_a_str_go_through_the_codec():
    """pydantic's lax check takes bytes for a str field, and the tree keeps them: the codec sends
    them as a buffer of their own, so the fast path must not pack them into the header."""
    value = Inner.model_construct(label=b"raw", weight=None)
    frames = ValueFormat(message_type=Inner).encode(value)
    assert frames == Codec().encode({"label": b"raw", "weight": None}) and len(frames) == 2


def test_a_dict_given_for_the_model_goes_through_the_codec():
    """pydantic ignores keys the model lacks, so they may hold anything (bytes)."""
    value = {"label": "x", "weight": None, "extra": b"raw"}
    frames = ValueFormat(message_type=Inner).encode(value)
    assert frames == Codec().encode(value) and len(frames) == 2


@pytest.mark.parametrize("on_invalid", ["skip", "raise"])
@pytest.mark.parametrize("case", list(refusals()))
def test_a_refused_message_fails_exactly_as_on_the_codecs_path(case, on_invalid):
    frames = refusals()[case]
    fmt = ValueFormat(message_type=Inner, on_invalid=on_invalid)
    assert fmt.decode == fmt._decode_fast
    assert reads_as_on_the_codecs_path(fmt, frames) is not None


@settings(max_examples=200, deadline=None)
@given(READING, st.sampled_from([None, *Reading.model_fields, "extra"]), ANY_PLAIN)
def test_any_message_reads_as_on_the_codecs_path(value, where, replacement):
    """A valid message with one field (or a key the model does not have) replaced by any msgpack
    value: the same model, or the same error (pydantic converts what msgspec refuses: the codec's
    path then decides)."""
    tree = fields(value)
    if where is not None:
        tree[where] = replacement
    frames = [HEADER_START + msgpack.packb(tree)]
    for on_invalid in ("skip", "raise"):
        reads_as_on_the_codecs_path(ValueFormat(message_type=Reading, on_invalid=on_invalid), frames)


def test_an_int_where_a_float_goes_reads_as_on_the_codecs_path():
    frames = [HEADER_START + msgpack.packb({"label": "x", "weight": 3})]
    fmt = ValueFormat(message_type=Inner)
    value = fmt.decode(frames)
    assert value == old_path(fmt, frames) and type(value.weight) is float


class Validated(Inner):
    @pydantic.field_validator("label")
    @classmethod
    def upper(cls, label: str) -> str:
        return label.upper()


class Checked(Inner):
    @pydantic.model_validator(mode="before")
    @classmethod
    def whole(cls, data: typing.Any) -> typing.Any:
        return data


class Aliased(pydantic.BaseModel):
    label: str = pydantic.Field(alias="Label")


class Constrained(pydantic.BaseModel):
    weight: float = pydantic.Field(gt=0)


class Forbidding(Inner):
    model_config = pydantic.ConfigDict(extra="forbid")


class Strict(Inner):
    model_config = pydantic.ConfigDict(strict=True)


class Nested(pydantic.BaseModel):
    inner: Inner


class WithBytes(pydantic.BaseModel):
    data: bytes


class WithAny(pydantic.BaseModel):
    anything: typing.Any


class Computed(Inner):
    @pydantic.computed_field
    @property
    def heavy(self) -> bool:
        return (self.weight or 0) > 1


@pytest.mark.parametrize("model", [Validated, Checked, Aliased, Constrained, Forbidding, Strict, Nested, WithBytes,
                                   WithAny, Computed])
def test_models_judging_more_than_plain_field_values_have_no_fast_path(model):
    assert fast_path(model) is None
    fmt = ValueFormat(message_type=model)
    assert fmt.encode == fmt._encode_native and fmt.decode == fmt._decode_native


class Positive(pydantic.BaseModel):
    weight: float

    def model_post_init(self, context: typing.Any) -> None:
        if self.weight < 0:
            raise ValueError("a weight is never negative")


@pytest.mark.parametrize("on_invalid", ["skip", "raise"])
def test_a_model_refusing_in_post_init_fails_as_on_the_codecs_path(on_invalid):
    """pydantic refuses what msgspec decoded: the codec's path gives the verdict, with its text."""
    fmt = ValueFormat(message_type=Positive, on_invalid=on_invalid)
    assert type(fmt._fast) is PydanticFast
    assert fmt.decode(fmt.encode(Positive(weight=2.0))) == Positive(weight=2.0)
    frames = [HEADER_START + msgpack.packb({"weight": -1.0, "extra": 1})]
    assert "never negative" in str(reads_as_on_the_codecs_path(fmt, frames))


@settings(max_examples=60, deadline=None)
@given(READING)
def test_a_model_of_plain_settings_is_checked_by_its_shadow_alone(value):
    """A value of the model's own class whose fields the shadow takes is sent without pydantic's
    check running too, in the codec's bytes."""
    fmt = ValueFormat(message_type=Reading)
    assert fmt._fast.shadow_decides
    fmt._type.to_wire = lambda value: pytest.fail("pydantic's check ran as well")
    assert fmt.encode(value) == Codec().encode(fields(value))


FIELD_VALUES = st.none() | st.booleans() | INT64 | st.floats() | TEXT | st.binary(max_size=4) | st.lists(
    st.none() | st.booleans() | INT64 | st.floats() | TEXT, max_size=4) | st.dictionaries(
    st.text(max_size=4) | INT64, INT64 | TEXT, max_size=3) | st.tuples(FLOATS)


VALID_FIELDS = {"name": TEXT, "frame": INT64, "ok": st.booleans(), "stamp": st.floats() | INT64,
                "values": st.lists(FLOATS, max_size=5), "counts": st.dictionaries(TEXT, INT64, max_size=3),
                "note": st.none() | TEXT}


READING_FORMAT = ValueFormat(message_type=Reading)


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries(VALID_FIELDS), st.sampled_from([None, *VALID_FIELDS]), FIELD_VALUES)
def test_what_the_shadow_alone_sends_pydantic_takes(tree, replaced, replacement):
    """Soundness of the shortcut: for any values of a model built without checks
    (``model_construct``), a message the shadow lets through is one pydantic accepts, and a value
    pydantic refuses raises at the call site with its field path, as before."""
    if replaced is not None:
        tree[replaced] = replacement
    value = Reading.model_construct(**tree)
    fmt = READING_FORMAT
    try:
        Reading.model_validate(tree)
    except pydantic.ValidationError:
        assert fmt._fast.encode_model(value) is None
        with pytest.raises(ValidationError, match=r"at \$\."):
            fmt.encode(value)
    else:
        assert same(fmt.decode(fmt.encode(value)), Reading.model_validate(tree))  # NaN too


class NoNaN(Inner):
    model_config = pydantic.ConfigDict(allow_inf_nan=False)


class ShortLabel(Inner):
    model_config = pydantic.ConfigDict(str_max_length=3)


def negative() -> Positive:
    value = Positive(weight=2.0)
    value.weight = -1.0  # assignments are not checked: model_post_init would refuse it
    return value


class CheckedInInit(pydantic.BaseModel):
    weight: float

    def __init__(self, **fields: typing.Any) -> None:  # pydantic's validation calls it too
        if fields.get("weight", 0) < 0:
            raise ValueError("a weight is never negative")
        super().__init__(**fields)


def _never_negative(value: typing.Any) -> typing.Any:
    if value.weight < 0:
        raise ValueError("a weight is never negative")
    return value


class CheckedInSchema(pydantic.BaseModel):
    weight: float

    @classmethod
    def __get_pydantic_core_schema__(cls, source: typing.Any, handler: typing.Any) -> typing.Any:
        from pydantic_core import core_schema
        return core_schema.no_info_after_validator_function(_never_negative, handler(source))


class Deferred(Inner):
    model_config = pydantic.ConfigDict(defer_build=True, allow_inf_nan=False)


@pytest.mark.parametrize("build", [lambda: NoNaN.model_construct(label="x", weight=float("nan")),
                                   lambda: ShortLabel.model_construct(label="long", weight=1.0), negative,
                                   lambda: CheckedInInit.model_construct(weight=-1.0),
                                   lambda: CheckedInSchema.model_construct(weight=-1.0),
                                   lambda: Deferred.model_construct(label="x", weight=float("nan"))],
                         ids=["allow_inf_nan", "str_max_length", "model_post_init", "custom __init__",
                              "wrapped core schema", "defer_build"])
def test_models_whose_settings_or_post_init_refuse_more_are_still_checked_by_pydantic(build):
    """A setting that refuses values the fields' types allow, or a ``model_post_init``: the
    shadow does not decide, pydantic's check runs and refuses at the call site."""
    value = build()
    fmt = ValueFormat(message_type=type(value))
    assert type(fmt._fast) is PydanticFast and not fmt._fast.shadow_decides
    with pytest.raises(ValidationError):
        fmt.encode(value)
