"""Frozen messages of wire format version 1: the codec must write exactly these bytes and read them back.

They were written by the codec of main at 1d629bb, before the small-message cuts of issue 21
(docs/wire.md): a listener of any version reads what this publisher sends, and
this listener reads what any earlier publisher sent, only as long as both directions hold for
every kind of value. The values cover the benchmarks' 1 KB messages (the dict, a float32 array
and a tensor inside ``{seq, data}``), a message that is one array, and one that takes every slow
path of the encoder's walk: bytes-like values as keys, in lists, in a list of dicts, inside a
tuple, and a dict wider than the walk's loop.
"""

import datetime as dt

import numpy as np
import pytest

from wrapyfi_like.encoding import Codec

GOLDEN = {
    "dict-1kb": [
        "93010082a373657107a46461746186a46e616d65a4706f7365a56672616d652aa26f6bc3a57374616d70cb41d9d0640c100000a676616c756573dc0064cb0000000000000000cb3fe0000000000000cb3ff0000000000000cb3ff8000000000000cb4000000000000000cb4004000000000000cb4008000000000000cb400c000000000000cb4010000000000000cb4012000000000000cb4014000000000000cb4016000000000000cb4018000000000000cb401a000000000000cb401c000000000000cb401e000000000000cb4020000000000000cb4021000000000000cb4022000000000000cb4023000000000000cb4024000000000000cb4025000000000000cb4026000000000000cb4027000000000000cb4028000000000000cb4029000000000000cb402a000000000000cb402b000000000000cb402c000000000000cb402d000000000000cb402e000000000000cb402f000000000000cb4030000000000000cb4030800000000000cb4031000000000000cb4031800000000000cb4032000000000000cb4032800000000000cb4033000000000000cb4033800000000000cb4034000000000000cb4034800000000000cb4035000000000000cb4035800000000000cb4036000000000000cb4036800000000000cb4037000000000000cb4037800000000000cb4038000000000000cb4038800000000000cb4039000000000000cb4039800000000000cb403a000000000000cb403a800000000000cb403b000000000000cb403b800000000000cb403c000000000000cb403c800000000000cb403d000000000000cb403d800000000000cb403e000000000000cb403e800000000000cb403f000000000000cb403f800000000000cb4040000000000000cb4040400000000000cb4040800000000000cb4040c00000000000cb4041000000000000cb4041400000000000cb4041800000000000cb4041c00000000000cb4042000000000000cb4042400000000000cb4042800000000000cb4042c00000000000cb4043000000000000cb4043400000000000cb4043800000000000cb4043c00000000000cb4044000000000000cb4044400000000000cb4044800000000000cb4044c00000000000cb4045000000000000cb4045400000000000cb4045800000000000cb4045c00000000000cb4046000000000000cb4046400000000000cb4046800000000000cb4046c00000000000cb4047000000000000cb4047400000000000cb4047800000000000cb4047c00000000000cb4048000000000000cb4048400000000000cb4048800000000000cb4048c00000000000a56c6162656cd94078787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878",
    ],
    "float32-in-dict": [
        "93010182a373657107a464617461c709099400a33c66349108c2",
        "000000000000803f0000004000004040000080400000a0400000c0400000e040",
    ],
    "lone-array": [
        "930101c70a099400a33c6932920203c2",
        "000001000200030004000500",
    ],
    "mixed": [
        "9301088aa161c70a099405a33c6932920203c2a162d40600a16392cb3ff8000000000000d40701a174c714019301c706089306a1429101c7060c93cd07e80102d406028201c0a166d70a92a33c6634d40607a3626967c70904000000000000000040a173d5029103a26378d805000000000000f03f0000000000000040a4776964658ca26b3000a26b3101a26b3202a26b3303a26b3404a26b3505a26b3606a26b3707a26b3808a26b3909a36b31300aa36b31310ba4726f77739281a172d4060391d40604",
        "7879",
        "7a",
        "6b",
        "71",
        "70",
        "000001000200030004000500",
        "77",
        "0000003f",
    ],
    "torch-in-dict": [
        "93010182a373657107a464617461c7260f96ac746f7263682e54656e736f72c706089300a1429110a7666c6f617433329104a3637075c2",
        "000000000000803f0000004000004040",
    ],
}


def golden_values():
    bench = {"name": "pose", "frame": 42, "ok": True, "stamp": 1732350000.25,
             "values": [float(i) * 0.5 for i in range(100)], "label": "x" * 64}
    values = {
        "dict-1kb": {"seq": 7, "data": bench},
        "float32-in-dict": {"seq": 7, "data": np.arange(8, dtype=np.float32)},
        "lone-array": np.arange(6, dtype="<i2").reshape(2, 3),
        "mixed": {"a": np.arange(6, dtype="<i2").reshape(2, 3), "b": b"xy", "c": [1.5, bytearray(b"z")],
                  "t": (1, memoryview(b"w"), dt.date(2024, 1, 2)), b"k": {1: None, "f": np.float32(0.5)},
                  "big": 2 ** 70, "s": {3}, "cx": 1 + 2j, "wide": {f"k{i}": i for i in range(12)},
                  "rows": [{"r": b"q"}, [b"p"]]},
    }
    return values


def value_named(name):
    if name == "torch-in-dict":
        torch = pytest.importorskip("torch")
        return {"seq": 7, "data": torch.arange(4, dtype=torch.float32)}
    return golden_values()[name]


def plain(value):
    """``value`` with arrays, tensors and views as comparable Python values."""
    if isinstance(value, dict):
        return {plain(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set)):
        return type(value)(plain(item) for item in value)
    if isinstance(value, memoryview):
        return ("memoryview", value.tobytes())
    if hasattr(value, "numpy") and not isinstance(value, np.generic):  # a tensor
        value = value.numpy()
    if isinstance(value, (np.ndarray, np.generic)):
        return (type(value).__name__, value.dtype.str, np.shape(value), value.tobytes())
    return (type(value).__name__, value)


@pytest.mark.parametrize("name", GOLDEN)
def test_the_codec_writes_the_frozen_bytes(name):
    frames = Codec().encode(value_named(name))
    assert [bytes(memoryview(frame).cast("B")).hex() for frame in frames] == GOLDEN[name]


@pytest.mark.parametrize("name", GOLDEN)
def test_the_codec_reads_the_frozen_bytes(name):
    expected = value_named(name)
    frames = [bytearray.fromhex(frame) for frame in GOLDEN[name]]
    assert plain(Codec().decode(frames)) == plain(expected)
    assert plain(Codec().decode(frames)) == plain(expected)  # again: the second read takes the kept layouts
