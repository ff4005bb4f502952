"""``wrapyfi_like.utils.serialization_encoders``: Wrapyfi's JsonEncoder and JsonDecodeHook names."""

import datetime as dt
import json

import numpy as np
import pytest

from wrapyfi_like.exceptions import DecodeError, EncodeError
from wrapyfi_like.utils.serialization_encoders import JsonDecodeHook, JsonEncoder


def test_a_script_that_encodes_wrapyfi_json_itself_gets_exact_values_back():
    value = {"t": (1, (2, "x")), "s": {3}, "when": dt.datetime(2025, 1, 2, 3, 4, 5),
             "arr": np.arange(6, dtype=">i4").reshape(2, 3)}
    text = json.dumps(value, cls=JsonEncoder)
    assert '{"__wrapyfi__": ["tuple", [1, {"__wrapyfi__": ["tuple", [2, "x"]]}]]}' in text
    back = json.loads(text, object_hook=JsonDecodeHook().object_hook)
    assert back["t"] == (1, (2, "x")) and back["s"] == {3} and back["when"] == value["when"]
    assert back["arr"].dtype == np.dtype(">i4") and np.array_equal(back["arr"], value["arr"])
    assert json.dumps({"a": (1,)}, cls=JsonEncoder, indent=1) == '{\n "a": {\n  "__wrapyfi__": [\n   "tuple",\n   [\n    1\n   ]\n  ]\n }\n}'


def test_values_wrapyfi_json_cannot_carry_and_pickle_markers_are_refused():
    with pytest.raises(EncodeError, match="bytes"):
        json.dumps({"b": b"x"}, cls=JsonEncoder)
    pickled = '{"__wrapyfi__": ["PandasData", "x", "AAAA"]}'
    with pytest.raises(DecodeError, match="PandasData"):
        json.loads(pickled, object_hook=JsonDecodeHook().object_hook)
