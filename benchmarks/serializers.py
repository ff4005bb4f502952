"""Per-message cost of JSON mode, typed messages and inline serializers, in one process.

    .venv/bin/python benchmarks/serializers.py

No sockets: each line times encode + decode of one message (the codec's whole share of a
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


def main():
    rows = []
    binary, json_mode = ValueFormat(), ValueFormat(serializer="json")
    raw_dict = best(lambda: orjson.loads(orjson.dumps(DICT_1KB)), 20000)
    ours_dict = best(round_trip(json_mode, DICT_1KB), 20000)
    rows.append(("1 KB dict: raw orjson dumps+loads", raw_dict, None))
    rows.append(("1 KB dict: JSON mode encode+decode", ours_dict, raw_dict / ours_dict))
    rows.append(("1 KB dict: binary mode encode+decode", best(round_trip(binary, DICT_1KB), 20000), None))
    raw_numpy = best(lambda: orjson.loads(orjson.dumps(ARRAY_1MB, option=orjson.OPT_SERIALIZE_NUMPY)), 20)
    raw_array = best(raw_orjson_array(ARRAY_1MB), 50)
    ours_array = best(round_trip(json_mode, ARRAY_1MB), 50)
    rows.append(("1 MB array: raw orjson OPT_SERIALIZE_NUMPY (numbers as text)", raw_numpy, None))
    rows.append(("1 MB array: raw orjson + base64, the same layout by hand", raw_array, None))
    rows.append(("1 MB array: JSON mode encode+decode", ours_array, raw_array / ours_array))
    rows.append(("1 MB array: binary mode encode+decode", best(round_trip(binary, ARRAY_1MB), 2000), None))
    typed = ValueFormat(message_type=Dict1KB)
    instance = msgspec.convert(DICT_1KB, Dict1KB)
    untyped_us = best(round_trip(binary, DICT_1KB), 20000)
    typed_us = best(round_trip(typed, instance), 20000)
    rows.append(("1 KB typed (msgspec Struct) encode+decode, binary", typed_us, untyped_us / typed_us))
    inline = ValueFormat(serializers={Rotation: (lambda r: r.quat, Rotation)})
    rotation = Rotation(np.array([0.0, 0.0, 0.0, 1.0]))
    rows.append(("inline serializer (a quaternion array), binary", best(round_trip(inline, {"rot": rotation}), 20000), None))
    rows.append(("the same array without it, binary", best(round_trip(binary, {"rot": rotation.quat}), 20000), None))
    width = max(len(row[0]) for row in rows)
    for name, micros, ratio in rows:
        print(f"{name:<{width}}  {micros:10.2f} µs" + (f"   ratio {ratio:.2f}" if ratio is not None else ""))


if __name__ == "__main__":
    main()
