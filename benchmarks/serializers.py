"""Per-message cost of JSON mode, typed messages and inline serializers, in one process.

    .venv/bin/python -m benchmarks.serializers

``make bench`` runs it too and puts the table in docs/benchmarks.md. No sockets: each line times encode + decode of one message (the codec's whole share of a
message's cost), best of several repeats, so a loaded machine's noise shows as little as
possible. Ratios over 1 mean faster than the reference.
"""

import base64
import timeit

import msgspec
import numpy as np
import orjson

from wrapyfi_like.connect.formats import ValueFormat

DICT_1KB = {"name": "pose", "frame": 42, "ok": True, "stamp": 1732350000.25,
            "values": [float(i) * 0.5 for i in range(100)], "label": "x" * 64}  # benchmarks/cases.py's dict
ARRAY_1MB = np.arange((1 << 20) // 4, dtype=np.float32)


class Dict1KB(msgspec.Struct):
    name: str
    frame: int
    ok: bool
    stamp: float
    values: list[float]
    label: str


class Rotation:
    def __init__(self, quat):
        self.quat = quat


def best(function, number):
    return min(timeit.repeat(function, number=number, repeat=7)) / number * 1e6  # µs


def round_trip(fmt, value):
    return lambda: fmt.decode(fmt.encode(value))


def raw_orjson_array(array):
    def run():
        body = orjson.dumps({"data_b64": base64.b64encode(array).decode(), "shape": list(array.shape),
                             "dtype": array.dtype.str})
        tree = orjson.loads(body)
        return np.frombuffer(base64.b64decode(tree["data_b64"]), tree["dtype"]).reshape(tree["shape"])
    return run


def measure(quick: bool = False) -> list[dict]:
    """One row per measurement: ``name``, ``micros`` (encode + decode), and for the compared rows
    ``ratio`` (reference ÷ ours: over 1 is faster) with its ``target``, as in issue 19."""
    scale = 10 if quick else 1
    small, large = 20000 // scale, max(50 // scale, 3)
    binary, json_mode = ValueFormat(), ValueFormat(serializer="json")
    raw_dict = best(lambda: orjson.loads(orjson.dumps(DICT_1KB)), small)
    ours_dict = best(round_trip(json_mode, DICT_1KB), small)
    untyped = best(round_trip(binary, DICT_1KB), small)
    raw_array = best(raw_orjson_array(ARRAY_1MB), large)
    ours_array = best(round_trip(json_mode, ARRAY_1MB), large)
    typed = best(round_trip(ValueFormat(message_type=Dict1KB), msgspec.convert(DICT_1KB, Dict1KB)), small)
    rotation = Rotation(np.array([0.0, 0.0, 0.0, 1.0]))
    inline = ValueFormat(serializers={Rotation: (lambda r: r.quat, Rotation)})
    return [
        {"name": "1 KB dict: raw orjson dumps + loads", "micros": raw_dict},
        {"name": "1 KB dict: JSON mode", "micros": ours_dict, "ratio": raw_dict / ours_dict, "target": 0.8},
        {"name": "1 KB dict: binary mode", "micros": untyped},
        {"name": "1 MB array: raw orjson OPT_SERIALIZE_NUMPY (numbers as text)",
         "micros": best(lambda: orjson.loads(orjson.dumps(ARRAY_1MB, option=orjson.OPT_SERIALIZE_NUMPY)), large)},
        {"name": "1 MB array: raw orjson + base64, the same layout by hand", "micros": raw_array},
        {"name": "1 MB array: JSON mode", "micros": ours_array, "ratio": raw_array / ours_array, "target": 0.8},
        {"name": "1 MB array: binary mode", "micros": best(round_trip(binary, ARRAY_1MB), small // 10)},
        {"name": "1 KB typed message (msgspec Struct), binary", "micros": typed, "ratio": untyped / typed,
         "target": 1 / 1.05},
        {"name": "inline serializer (a quaternion array), binary",
         "micros": best(round_trip(inline, {"rot": rotation}), small)},
        {"name": "the same array without it, binary", "micros": best(round_trip(binary, {"rot": rotation.quat}), small)},
    ]


def markdown(rows: list[dict]) -> list[str]:
    """The rows as a Markdown table, for docs/benchmarks.md."""
    lines = ["| message | encode + decode | ratio (reference ÷ ours) | target | met |", "|---|---|---|---|---|"]
    for row in rows:
        ratio = row.get("ratio")
        cells = ("", "", "") if ratio is None else (
            f"{ratio:.2f}", f"≥ {row['target']:.2f}", "yes" if ratio >= row["target"] else "**no**")
        lines.append(f"| {row['name']} | {row['micros']:.1f} µs | {cells[0]} | {cells[1]} | {cells[2]} |")
    return lines


def main() -> None:
    print("\n".join(markdown(measure())))


if __name__ == "__main__":
    main()
