"""Per-message cost of each piece of JSON mode, typed messages and inline serializers, in one process.

    .venv/bin/python -m benchmarks.serializers

``make bench`` runs it too and puts the table in docs/benchmarks.md. No sockets: each line times
one step of one message (the codec's or the validator's whole share of its cost). Every step of
a comparison runs in the same loop, block by block in turn, and keeps its fastest block, so a
loaded machine slows both sides of a ratio alike. Ratios over 1 mean faster than the reference.
The JSON targets through the transport (our JSON mode ÷ raw orjson over pyzmq, one paired run)
are the ``JSON`` cases of :mod:`benchmarks.run`.
"""

from __future__ import annotations

import base64
import dataclasses
import time
import typing
from typing import Any, Callable

import msgspec
import numpy as np
import orjson
import pydantic

from benchmarks.paths import _from_json_body, _json_body
from wrapyfi_like.connect.formats import ValueFormat

DICT_1KB = {"name": "pose", "frame": 42, "ok": True, "stamp": 1732350000.25,
            "values": [float(i) * 0.5 for i in range(100)], "label": "x" * 64}  # benchmarks/cases.py's dict
STAMPED_1KB = {"seq": 1, "data": DICT_1KB}
"""The message of the pub/sub ``dict`` cases (:class:`benchmarks.paths.OursSender`): nested dicts."""
ARRAY_1MB = np.arange((1 << 20) // 4, dtype=np.float32)
TYPED_TARGET = 1 / 1.05
"""Issue 19: a typed message costs at most 5 % more than the same message untyped."""


class Dict1KB(msgspec.Struct):
    name: str
    frame: int
    ok: bool
    stamp: float
    values: list[float]
    label: str


@dataclasses.dataclass
class Dict1KBDataclass:
    name: str
    frame: int
    ok: bool
    stamp: float
    values: list[float]
    label: str


class Dict1KBModel(pydantic.BaseModel):
    name: str
    frame: int
    ok: bool
    stamp: float
    values: list[float]
    label: str


class Dict1KBTypedDict(typing.TypedDict):
    name: str
    frame: int
    ok: bool
    stamp: float
    values: list[float]
    label: str


class Rotation:
    def __init__(self, quat):
        self.quat = quat


def fastest(steps: dict[str, Callable[[], Any]], repeats: int, number: int) -> dict[str, float]:
    """µs per call of each step: the fastest of ``repeats`` blocks of ``number`` calls, the steps'
    blocks interleaved (in turns that alternate their order)."""
    best = dict.fromkeys(steps, float("inf"))
    names = list(steps)
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else reversed(names):
            step = steps[name]
            started = time.perf_counter_ns()
            for _ in range(number):
                step()
            best[name] = min(best[name], (time.perf_counter_ns() - started) / number / 1e3)
    return best


def raw_orjson_array(array: np.ndarray) -> Callable[[], np.ndarray]:
    def run() -> np.ndarray:
        body = orjson.dumps({"data_b64": base64.b64encode(array).decode(), "shape": list(array.shape),
                             "dtype": array.dtype.str})
        tree = orjson.loads(body)
        return np.frombuffer(base64.b64decode(tree["data_b64"]), tree["dtype"]).reshape(tree["shape"])
    return run


def received(body: bytes) -> memoryview:
    """A body as a listener hands it over: a writable memoryview of the frame (a copy, as the
    socket's read is)."""
    return memoryview(bytearray(body))


def encode_decode(fmt: ValueFormat, value: Any) -> tuple[Callable, Callable, Callable]:
    """Encode, decode, and both, of ``value`` by ``fmt``."""
    frames = fmt.encode(value)
    return (lambda: fmt.encode(value)), (lambda: fmt.decode(frames)), (lambda: fmt.decode(fmt.encode(value)))


def measure(quick: bool = False) -> list[dict]:
    """One row per measurement: ``name``, ``micros``, and for the compared rows ``ratio``
    (reference ÷ ours: over 1 is faster) with its ``target``, as in issue 19."""
    repeats, small, large = (20, 100, 2) if quick else (100, 200, 3)
    binary, json_mode = ValueFormat(), ValueFormat(serializer="json")
    json_encode, json_decode, json_both = encode_decode(json_mode, DICT_1KB)
    stamped_body = orjson.dumps({"wrapyfi_like": 1, "value": STAMPED_1KB})
    body = orjson.dumps({"wrapyfi_like": 1, "value": DICT_1KB})
    untyped_encode, untyped_decode, untyped_both = encode_decode(binary, DICT_1KB)
    dict_steps = {"raw dumps": lambda: orjson.dumps(DICT_1KB), "raw loads": lambda: orjson.loads(body),
                  "raw both": lambda: orjson.loads(orjson.dumps(DICT_1KB)),
                  "json encode": json_encode, "json decode": json_decode, "json both": json_both,
                  "binary encode": untyped_encode, "binary decode": untyped_decode, "binary both": untyped_both}
    stamped = dict(zip(("stamped encode", "stamped decode", "stamped both"), encode_decode(json_mode, STAMPED_1KB)))
    dict_steps.update(stamped, **{"stamped raw dumps": lambda: orjson.dumps(STAMPED_1KB),
                                  "stamped raw loads": lambda: orjson.loads(stamped_body),
                                  "stamped raw both": lambda: orjson.loads(orjson.dumps(STAMPED_1KB))})
    typed_values = {"msgspec Struct": (Dict1KB, msgspec.convert(DICT_1KB, Dict1KB)),
                    "dataclass": (Dict1KBDataclass, Dict1KBDataclass(**DICT_1KB)),
                    "pydantic model": (Dict1KBModel, Dict1KBModel(**DICT_1KB)),
                    "TypedDict": (Dict1KBTypedDict, DICT_1KB)}
    for label, (model, value) in typed_values.items():
        encode, decode, both = encode_decode(ValueFormat(message_type=model), value)
        dict_steps.update({f"{label} encode": encode, f"{label} decode": decode, f"{label} both": both})
    rotation = Rotation(np.array([0.0, 0.0, 0.0, 1.0]))
    inline = ValueFormat(serializers={Rotation: (lambda r: r.quat, Rotation)})
    dict_steps["inline"] = lambda: inline.decode(inline.encode({"rot": rotation}))
    dict_steps["inline reference"] = lambda: binary.decode(binary.encode({"rot": rotation.quat}))
    us = fastest(dict_steps, repeats, small)

    array_steps = {"raw numpy": lambda: orjson.loads(orjson.dumps(ARRAY_1MB, option=orjson.OPT_SERIALIZE_NUMPY)),
                   "raw base64": raw_orjson_array(ARRAY_1MB),
                   "json": encode_decode(json_mode, ARRAY_1MB)[2],
                   "binary": encode_decode(binary, ARRAY_1MB)[2],
                   "stamped raw": lambda: _from_json_body(received(_json_body(1, ARRAY_1MB))),
                   "stamped json": lambda: json_mode.decode([received(json_mode.encode({"seq": 1, "data": ARRAY_1MB})[0])])}
    array_us = fastest(array_steps, max(4, repeats // 5), large)

    rows = [
        {"name": "1 KB dict: raw orjson dumps / loads / both", "micros": us["raw both"],
         "detail": f"{us['raw dumps']:.1f} / {us['raw loads']:.1f}"},
        {"name": "1 KB dict: JSON mode encode / decode / both", "micros": us["json both"],
         "detail": f"{us['json encode']:.1f} / {us['json decode']:.1f}",
         "ratio": us["raw both"] / us["json both"], "target": 0.8},
        {"name": "1 KB dict: binary mode encode / decode / both", "micros": us["binary both"],
         "detail": f"{us['binary encode']:.1f} / {us['binary decode']:.1f}"},
        {"name": "1 KB dict in `{seq, data}` (the pub/sub cases' message): raw orjson", "micros": us["stamped raw both"],
         "detail": f"{us['stamped raw dumps']:.1f} / {us['stamped raw loads']:.1f}"},
        {"name": "1 KB dict in `{seq, data}`: JSON mode", "micros": us["stamped both"],
         "detail": f"{us['stamped encode']:.1f} / {us['stamped decode']:.1f}",
         "ratio": us["stamped raw both"] / us["stamped both"], "target": 0.8},
    ]
    for label in typed_values:
        rows.append({"name": f"1 KB typed message ({label}), binary: encode / decode / both",
                     "micros": us[f"{label} both"],
                     "detail": f"{us[f'{label} encode']:.1f} / {us[f'{label} decode']:.1f}",
                     "ratio": us["binary both"] / us[f"{label} both"], "target": TYPED_TARGET})
    rows += [
        {"name": "1 MB array: raw orjson OPT_SERIALIZE_NUMPY (numbers as text)", "micros": array_us["raw numpy"]},
        {"name": "1 MB array: raw orjson + base64, the same layout by hand", "micros": array_us["raw base64"]},
        {"name": "1 MB array: JSON mode", "micros": array_us["json"],
         "ratio": array_us["raw base64"] / array_us["json"], "target": 0.8},
        {"name": "1 MB array: binary mode", "micros": array_us["binary"]},
        {"name": "1 MB array in `{seq, data}`, the received frame a memoryview (the pub/sub cases'): "
                 "raw orjson + base64 (`benchmarks.paths`)", "micros": array_us["stamped raw"]},
        {"name": "1 MB array in `{seq, data}`, received: JSON mode", "micros": array_us["stamped json"],
         "ratio": array_us["stamped raw"] / array_us["stamped json"], "target": 0.8},
        {"name": "inline serializer (a quaternion array), binary", "micros": us["inline"]},
        {"name": "the same array without it, binary", "micros": us["inline reference"]},
    ]
    return rows


def markdown(rows: list[dict]) -> list[str]:
    """The rows as a Markdown table, for docs/benchmarks.md."""
    lines = ["| message | encode / decode | encode + decode | ratio (reference ÷ ours) | target | met |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        ratio = row.get("ratio")
        cells = ("", "", "") if ratio is None else (
            f"{ratio:.2f}", f"≥ {row['target']:.2f}", "yes" if ratio >= row["target"] else "**no**")
        detail = f"{row['detail']} µs" if row.get("detail") else ""
        lines.append(f"| {row['name']} | {detail} | {row['micros']:.1f} µs | {cells[0]} | {cells[1]} | {cells[2]} |")
    return lines


def main() -> None:
    print("\n".join(markdown(measure())))


if __name__ == "__main__":
    main()
