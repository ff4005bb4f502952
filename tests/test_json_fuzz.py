"""Structure-aware fuzzing of JSON mode (the style of tests/test_fuzz_codec.py): random valid
values round-trip exactly; random JSON trees over the marker grammar (markers and array objects
anywhere, with fields of any shape) decode or raise DecodeError, nothing else."""

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from test_fuzz_codec import FUZZ_SETTINGS, _values, same
from wrapyfi_like.encoding import Codec
from wrapyfi_like.encoding.json_mode import MARKERS, _Decoder, _Encoder
from wrapyfi_like.exceptions import DecodeError, EncodeError

pytestmark = pytest.mark.timeout(120)
JSON = Codec(serializer="json")
BINARY = Codec()


@settings(max_examples=300, **FUZZ_SETTINGS)
@given(_values)
def test_random_valid_values_round_trip_exactly_in_json_mode(value):
    (body,) = JSON.encode(value)
    assert same(BINARY.decode([bytes(body)]), value)


_leaves = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 63), 2 ** 64 - 1), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=8), st.sampled_from(["nan", "inf", "-inf", "<f4", "float64", "|O", "AAAA", "12", "B"]))


def _shaped(children):
    names = st.sampled_from([*MARKERS, "pickle", ""])
    return st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=6), children, max_size=3),
        st.tuples(names, st.lists(children, max_size=4)).map(lambda t: {"__wrapyfi__": [t[0], *t[1]]}),
        st.tuples(names, children).map(lambda t: {"__wrapyfi__": [t[0], t[1]]}),
        st.fixed_dictionaries({"data_b64": st.sampled_from(["", "AAAA", "AAAAAAAAAAA=", "!!", 3]),
                               "shape": children, "dtype": children}),
    )


_trees = st.recursive(_leaves, _shaped, max_leaves=25)


@settings(max_examples=1500, **FUZZ_SETTINGS)
@given(_trees)
def test_random_json_trees_decode_or_raise_decode_error(tree):
    body = orjson.dumps({"wrapyfi_like": 1, "value": tree})
    try:
        BINARY.decode([body])
    except DecodeError:
        pass


def _marker_walk(value):
    """The body the marker walk writes for ``value`` (what JSON mode wrote before its plain fast path)."""
    return orjson.dumps({"wrapyfi_like": 1, "value": _Encoder(JSON).prepare(value, 1)})


@settings(max_examples=300, **FUZZ_SETTINGS)
@given(_values)
def test_the_plain_fast_path_writes_what_the_marker_walk_writes(value):
    """One orjson call for plain values must not change a single byte of any body."""
    try:
        expected = _marker_walk(value)
    except EncodeError:
        with pytest.raises(EncodeError):
            JSON.encode(value)
        return
    assert JSON.encode(value) == [expected]


@settings(max_examples=500, **FUZZ_SETTINGS)
@given(_trees)
def test_the_receivers_fast_path_returns_what_the_marker_walk_returns(tree):
    """A body whose braces show no marker can hold is returned as orjson parsed it: the same
    value the marker walk rebuilds, or the same DecodeError."""
    body = orjson.dumps({"wrapyfi_like": 1, "value": tree})
    try:
        expected = _Decoder(JSON).rebuild(orjson.loads(body)["value"], 1)
    except (DecodeError, ValueError, TypeError, KeyError, IndexError, OverflowError):
        with pytest.raises(DecodeError):
            BINARY.decode([body])
        return
    assert same(BINARY.decode([body]), expected)
