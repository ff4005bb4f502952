"""JSON mode: a sender writes one JSON document; every receiver reads it with no setting; a JSON
parser in another language reads it too; hostile JSON raises DecodeError and nothing else."""

import base64
import enum
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

from wrapyfi_like.connect.clients import Client
from wrapyfi_like.connect.formats import SERIALIZER_ENV, ValueFormat
from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.connect.publishers import Publisher
from wrapyfi_like.connect.servers import Server
from wrapyfi_like.encoding import Codec
from wrapyfi_like.encoding.json_mode import MAX_JSON_DEPTH
from wrapyfi_like.exceptions import ConfigurationError, DecodeError, EncodeError

pytestmark = pytest.mark.timeout(60)
JSON = Codec(serializer="json")
BINARY = Codec()
ROOT = Path(__file__).resolve().parent.parent


def body(value):
    return orjson.dumps({"wrapyfi_like": 1, "value": value})


def test_a_json_body_is_one_utf8_document_that_any_parser_reads():
    (frame,) = JSON.encode({"name": "cam", "pose": (1.0, 2.0), "depth": np.arange(3, dtype="<f4")})
    document = json.loads(frame.decode("utf-8"))
    assert document == {"wrapyfi_like": 1, "value": {
        "name": "cam", "pose": {"__wrapyfi__": ["tuple", [1.0, 2.0]]},
        "depth": {"data_b64": base64.b64encode(np.arange(3, dtype="<f4").tobytes()).decode(),
                  "shape": [3], "dtype": "<f4"}}}


def test_the_binary_codec_reads_json_and_the_json_codec_reads_binary():
    value = {"a": (1, {2}), "b": np.ones((2, 2))}
    for sender, receiver in ((JSON, BINARY), (BINARY, JSON)):
        received = receiver.decode(sender.encode(value))
        assert received["a"] == (1, {2}) and type(received["a"]) is tuple
        np.testing.assert_array_equal(received["b"], value["b"])


def test_a_truss_numpy_array_field_decodes_here():
    """Truss Chains' NumpyArrayField writes ``str(dtype)`` (``"float64"``) with no byte order."""
    data = np.array([[1.5, 2.5]], dtype=np.float64)
    truss = {"data_b64": base64.b64encode(data.tobytes()).decode(), "shape": [1, 2], "dtype": "float64"}
    received = BINARY.decode([body({"array": truss})])["array"]
    assert received.dtype == np.float64 and received.shape == (1, 2)
    np.testing.assert_array_equal(received, data)


@pytest.mark.parametrize("value", [{"__wrapyfi__": ["tuple", [1]]}, {"data_b64": "", "shape": [0], "dtype": "<f4"},
                                   {"__wrapyfi__": 1, "other": 2}])
def test_user_dicts_that_look_like_markers_come_back_as_the_same_dict(value):
    received = BINARY.decode(JSON.encode(value))
    assert type(received) is dict and received == value


def test_the_process_setting_chooses_what_senders_write(monkeypatch):
    monkeypatch.setenv(SERIALIZER_ENV, "json")
    assert ValueFormat().encode({"x": 1})[0].startswith(b"{")
    assert ValueFormat(serializer="binary").encode({"x": 1})[0][:1] == b"\x93"
    monkeypatch.setenv(SERIALIZER_ENV, "xml")
    with pytest.raises(ConfigurationError, match="serializer"):
        ValueFormat()


def test_a_listener_needs_no_setting_for_json(topic, in_thread):
    listener = Listener("Json", topic)
    publisher = Publisher("Json", topic, wait_timeout=5, serializer="json")
    try:
        publisher.publish({"t": (1, 2), "a": np.arange(4)})
        received = listener.listen()
        assert received["t"] == (1, 2)
        np.testing.assert_array_equal(received["a"], np.arange(4))
    finally:
        publisher.close()
        listener.close()


def test_a_server_reads_json_requests_and_a_client_reads_json_replies(topic, in_thread):
    server = Server("Json", topic, value_formats=[ValueFormat(serializer="json")])
    client = Client("Json", topic, value_formats=[ValueFormat()], serializer="json", request_timeout=10)

    def serve_one():
        request = server.await_request()
        server.reply(request, [{"echo": request.args, "kw": request.kwargs}])

    try:
        served = in_thread(serve_one)
        (reply,) = client.request((1, (2, 3)), {"k": b"x"})
        served.result(timeout=10)
        assert reply == {"echo": (1, (2, 3)), "kw": {"k": b"x"}}
    finally:
        client.close()
        server.close()


def test_node_reads_a_json_message_and_its_array(tmp_path):
    """A reader in another language needs only JSON and base64 (docs/wire.md, "JSON body")."""
    message = tmp_path / "message.json"
    message.write_bytes(JSON.encode({"stamp": 1.5, "scan": np.array([1.0, -2.5], dtype="<f8"), "tag": (1, "x")})[0])
    reader = """
      const doc = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
      const v = doc.value, raw = Buffer.from(v.scan.data_b64, "base64");
      const scan = new Float64Array(raw.buffer, raw.byteOffset, raw.length / 8);
      console.log(doc.wrapyfi_like, v.stamp, v.scan.dtype, Array.from(scan).join(","), JSON.stringify(v.tag.__wrapyfi__));
    """
    out = subprocess.run(["node", "-e", reader, str(message)], capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.strip() == '1 1.5 <f8 1,-2.5 ["tuple",[1,"x"]]'


@pytest.mark.parametrize("mware", ["zeromq", "zenoh"])
def test_the_example_runs_in_two_processes_with_json(mware):
    script = str(ROOT / "examples" / "json_messages.py")
    listener = subprocess.Popen([sys.executable, script, "--mode", "listen", "--count", "2", "--mware", mware],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    publisher = subprocess.Popen([sys.executable, script, "--mode", "publish", "--mware", mware, "--serializer", "json",
                                  "--count", "60", "--rate", "20"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        out, err = listener.communicate(timeout=45)
        assert listener.returncode == 0, err
        lines = out.splitlines()
        assert len(lines) == 2 and all(line.startswith("received {'count': ") for line in lines)
        assert "'position': (" in lines[0] and "dtype=float32" in lines[0] and "'raw': b'" in lines[0]
    finally:
        for process in (listener, publisher):
            if process.poll() is None:
                process.kill()
            process.communicate()


def nested(levels):
    value = 0
    for _ in range(levels):
        value = [value]
    return value


def test_nesting_is_bounded_the_same_way_on_both_sides():
    BINARY.decode(JSON.encode(nested(MAX_JSON_DEPTH - 1)))
    with pytest.raises(EncodeError, match="MAX_JSON_DEPTH"):
        JSON.encode(nested(MAX_JSON_DEPTH + 1))
    with pytest.raises(DecodeError):
        BINARY.decode([b'{"wrapyfi_like":1,"value":' + b"[" * 300 + b"]" * 300 + b"}"])
    with pytest.raises(DecodeError):
        BINARY.decode([b'{"wrapyfi_like":1,"value":' + b"[" * 5000 + b"]" * 5000 + b"}"])
    deep_tuples = b'{"__wrapyfi__":["tuple",[' * 100 + b"1" + b"]]}" * 100
    with pytest.raises(DecodeError, match="MAX_DEPTH"):
        BINARY.decode([b'{"wrapyfi_like":1,"value":' + deep_tuples + b"}"])


HOSTILE = {
    "not json": b"{nope",
    "no envelope": b'{"value": 1}',
    "wrong version": b'{"wrapyfi_like": 2, "value": 1}',
    "bool version": b'{"wrapyfi_like": true, "value": 1}',
    "unknown marker": body({"__wrapyfi__": ["pickle", "gASV"]}),
    "marker with company": body({"__wrapyfi__": ["tuple", []], "x": 1}),
    "marker not a list": body({"__wrapyfi__": "tuple"}),
    "object dtype": body({"data_b64": "AAAAAAAAAAA=", "shape": [1], "dtype": "|O"}),
    "short array": body({"data_b64": "AAAA", "shape": [4], "dtype": "<f4"}),
    "negative shape": body({"data_b64": "", "shape": [-1], "dtype": "<f4"}),
    "bad base64": body({"__wrapyfi__": ["bytes", "!!!"]}),
    "base64 past ASCII": body({"__wrapyfi__": ["bytes", "\u00ff\u00ff\u00ff\u00ff"]}),
    "unhashable set item": body({"__wrapyfi__": ["set", [[1]]]}),
    "bad datetime": body({"__wrapyfi__": ["datetime", 2020, 13, 1, 0, 0, 0, 0, 0, None]}),
    "bad int": body({"__wrapyfi__": ["int", "12a"]}),
    "bad float": body({"__wrapyfi__": ["float", "1e999"]}),
    "unknown plugin": body({"__wrapyfi__": ["plugin", "no.such.plugin", 1]}),
    "bad scalar": body({"__wrapyfi__": ["numpy.scalar", "<c8", 1.0]}),
    "two frames": None,
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_json_raises_decode_error_only(name):
    frames = [body(1), b"extra"] if HOSTILE[name] is None else [HOSTILE[name]]
    with pytest.raises(DecodeError):
        BINARY.decode(frames)


def test_mutated_json_bodies_never_raise_anything_but_decode_error():
    """Seeded mutation fuzzing of valid JSON bodies (the style of tests/test_fuzz_codec.py)."""
    import datetime as dt
    seeds = [JSON.encode(v)[0] for v in (
        {"a": (1, 2.5, "x"), "b": np.arange(4), "c": {1, 2}, 3: b"k"},
        [dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), 1 + 2j, np.float32(0.5), float("nan"), 2 ** 80],
        {"__wrapyfi__": 0, "m": memoryview(b"abcd").cast("B", [2, 2]), "f": frozenset({"x"})},
    )]
    alphabet = b'{}[]",:0123456789-.eE_abcdefghijklmnopqrstuvwxyz\\ \x00\xff'
    rng = random.Random(19)
    for case in range(6000):
        mutated = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(mutated))
            action = rng.random()
            if action < 0.5:
                mutated[position] = rng.choice(alphabet)
            elif action < 0.75:
                del mutated[position]
            else:
                mutated.insert(position, rng.choice(alphabet))
        try:
            BINARY.decode([bytes(mutated)])
        except DecodeError:
            pass


def test_the_cli_echo_reads_json_messages_with_no_setting(topic, in_thread):
    import io

    from wrapyfi_like.cli import main

    def send():
        publisher = Publisher("Source", topic, wait_timeout=20, serializer="json")
        publisher.publish({"label": ("cat", 1), "frame": np.arange(4, dtype=np.uint8)})
        publisher.close()

    sent = in_thread(send)
    out = io.StringIO()
    code = main(["echo", topic, "--once", "--timeout", "20"], out)
    sent.result(timeout=20)
    assert code == 0
    assert out.getvalue() == "{'label': ('cat', 1), 'frame': <ndarray shape=(4,) dtype=uint8 min=0 max=3 mean=1.5>}\n---\n"


def test_an_int_beyond_the_text_limit_raises_encode_error():
    assert BINARY.decode(JSON.encode(10 ** 4299)) == 10 ** 4299
    with pytest.raises(EncodeError, match="binary mode"):
        JSON.encode(10 ** 5000)


@pytest.mark.parametrize("data_type, value", [
    ("Image", np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)),
    ("AudioChunk", (np.linspace(-1, 1, 8, dtype=np.float32).reshape(8, 1), 16000)),
])
def test_images_and_audio_chunks_round_trip_in_json_mode(data_type, value):
    declared = {"rate": 16000} if data_type == "AudioChunk" else {}
    (body,) = ValueFormat(data_type, serializer="json", **declared).encode(value)
    received = ValueFormat(data_type, **declared).decode([body])
    if data_type == "Image":
        assert received.dtype == value.dtype
        np.testing.assert_array_equal(received, value)
    else:
        assert received[1] == 16000 and received[0].dtype == np.float32
        np.testing.assert_array_equal(received[0], value[0])


class Level(enum.IntEnum):
    LOW = 1


class Text(str):
    pass


class Ratio(float, enum.Enum):
    HALF = 0.5


@pytest.mark.parametrize("value", [
    [0.5, (1.0, 2.0)], [0.5, float("nan")], [float("inf"), 0.5], {"a": 0.5, "b": float("-inf")}, [1, 2, 2 ** 64],
    [0.5, np.float64(1.5)], [0.5, np.float32(1.5)], {"k": [1.5, 2.5], "t": ("x",)}, [[0.5], {"__wrapyfi__": 1}],
    [{"data_b64": "", "shape": [0], "dtype": "<f4"}], {1: 0.5}, [{"a": {2.5: "b"}}], ["x", "y", b"z"], [None, {1}],
    [1e308, 1e308],
])
def test_values_orjson_would_write_inexactly_still_round_trip_exactly(value):
    """The plain fast path hands orjson only what it writes as it is: tuples, NaN, infinity,
    numpy scalars, big ints, int keys and marker-like dicts inside otherwise plain containers
    still take markers."""
    assert exact(BINARY.decode(JSON.encode(value)), value)


def exact(a, b):
    """Same types at every depth (dict keys too) and the same repr at the leaves, NaN included."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(exact, a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(map(exact, a, b)) and all(map(exact, a.values(), b.values()))
    return repr(a) == repr(b)


@pytest.mark.parametrize("value", [[0.5, Level.LOW], {"a": Level.LOW}, [Level.LOW], {Text("k"): 1}, [Text("s")],
                                   [0.5, Ratio.HALF], [Ratio.HALF, 0.5], {"r": Ratio.HALF}])
def test_enums_and_subclasses_are_refused_in_json_mode_as_in_binary_mode(value):
    """orjson would write an IntEnum (or a float Enum, also a float) as its number and a str
    subclass as a str: both modes refuse them."""
    for codec in (JSON, BINARY):
        with pytest.raises(EncodeError):
            codec.encode(value)


def test_a_plain_value_is_sent_as_orjson_writes_it():
    value = {"name": "pose", "frame": 42, "ok": True, "stamp": 0.25, "values": [0.5, 1.5], "none": None}
    assert JSON.encode(value) == [body(value)]
    assert BINARY.decode([body(value)]) == value


def test_a_plain_body_with_nested_dicts_is_returned_as_orjson_parsed_it(monkeypatch):
    """No ``__wrapyfi__`` or ``data_b64`` in a body without escapes: no dict in it can be a marker
    or an array however deep dicts nest, so the receiver skips the marker walk."""
    from wrapyfi_like.encoding import json_mode

    value = {"seq": 7, "data": {"name": "pose", "values": [0.5, 1.5], "inner": {"ok": True, "none": None}}}
    (sent,) = JSON.encode(value)
    monkeypatch.setattr(json_mode._Decoder, "rebuild", lambda *args: pytest.fail("the marker walk ran"))
    assert BINARY.decode([sent]) == value


@pytest.mark.parametrize("key", [r"\u005f_wrapyfi__", r"data\u005fb64"])
def test_a_marker_key_written_with_escapes_is_still_a_marker(key):
    """Another JSON writer may escape any character of a key: a body with a backslash takes the
    marker walk, so what it says still decodes to what it means."""
    inner = '["tuple", [1, 2]]' if "wrapyfi" in key else '"AACAPw==", "shape": [1], "dtype": "<f4"'
    body = f'{{"wrapyfi_like": 1, "value": {{"a": {{"{key}": {inner}}}, "b": {{}}}}}}'.encode()
    received = BINARY.decode([body])
    if "wrapyfi" in key:
        assert received == {"a": (1, 2), "b": {}}
    else:
        assert type(received["a"]) is np.ndarray and received["a"].tolist() == [1.0] and received["b"] == {}


def test_dicts_reached_through_dicts_are_settled_by_their_keys_without_the_walk(monkeypatch):
    """The pub/sub message ``{"seq": …, "data": {…}}`` whose strings hold the marker words: every
    dict of the body is one the receiver reached through dicts and whose keys it checked, so the
    marker walk does not run (the body's scans alone would have sent it there)."""
    from wrapyfi_like.encoding import json_mode

    value = {"seq": 7, "data": {"label": "__wrapyfi__ data_b64 \\", "values": [0.5], "inner": {"ok": True}}}
    (sent,) = JSON.encode(value)
    monkeypatch.setattr(json_mode._Decoder, "rebuild", lambda *args: pytest.fail("the marker walk ran"))
    assert BINARY.decode([sent]) == value


@pytest.mark.parametrize("text, expected", [
    ('{"seq": 1, "data": {"a": {"__wrapyfi__": ["tuple", [1, 2]]}}}', {"seq": 1, "data": {"a": (1, 2)}}),
    ('{"seq": 1, "data": {"x": [{"__wrapyfi__": ["set", [3]]}]}}', {"seq": 1, "data": {"x": [{3}]}}),
    ('{"seq": 1, "data": {"s": "{", "x": [{"__wrapyfi__": ["tuple", []]}]}}', {"seq": 1, "data": {"s": "{", "x": [()]}}),
    ('{"seq": 1, "data": {"a": {"data_b64": "AACAPw==", "shape": [1], "dtype": "<f4"}}}', None),
])
def test_a_marker_in_a_nested_dict_or_inside_a_list_is_still_rebuilt(text, expected):
    received = BINARY.decode([f'{{"wrapyfi_like": 1, "value": {text}}}'.encode()])
    if expected is None:
        assert received["data"]["a"].tolist() == [1.0]
    else:
        assert received == expected


def test_dicts_of_more_items_than_the_walks_budget_go_to_the_scans():
    """A big dict is left to the scans of the body (C speed), and a marker in it is still found."""
    from wrapyfi_like.encoding import json_mode

    wide = {f"k{index}": index for index in range(json_mode._DICT_WALK_ITEMS)}
    value = {"seq": 1, "data": {**wide, "t": {"__wrapyfi__": ["tuple", [1]]}}}
    assert json_mode._plain_dicts({"seq": 1, "data": {**wide, "t": {}}}) == -1
    assert BINARY.decode([orjson.dumps({"wrapyfi_like": 1, "value": value})]) == {"seq": 1, "data": {**wide, "t": (1,)}}


def _received(value) -> memoryview:
    """A JSON body as the listener hands it over: a writable memoryview of the frame."""
    return memoryview(bytearray(JSON.encode(value)[0]))


def test_a_large_body_with_an_array_among_its_dicts_is_neither_copied_nor_scanned(monkeypatch):
    """``{"seq": …, "data": <1 MB array>}``: the array is found among the dicts' keys, so the
    1.4 MB frame is parsed in place and never copied to bytes for the scans (1.3 ms a MB)."""
    from wrapyfi_like.encoding import json_mode

    array = np.arange(1 << 18, dtype=np.float32)
    frame = _received({"seq": 3, "data": array, "meta": {"unit": "m"}})
    monkeypatch.setattr(json_mode, "bytes", lambda *args: pytest.fail("the body was copied"), raising=False)
    received = BINARY.decode([frame])
    assert received["seq"] == 3 and received["meta"] == {"unit": "m"}
    assert received["data"].dtype == array.dtype and np.array_equal(received["data"], array)
    assert received["data"].flags.writeable


@pytest.mark.parametrize("value, expected", [
    ({"seq": 1, "data": {"a": ("x" * 20000, 2)}}, None),  # a tuple marker two dicts down
    ({"seq": 1, "data": [{"a": (1, 2)}, "x" * 20000]}, None),  # a marker in a list: the scans find it
    ({"seq": 1, "data": {**{f"k{index}": index for index in range(200)}, "t": (1,), "s": "x" * 20000}}, None),
])
def test_a_large_received_body_still_rebuilds_every_marker(value, expected):
    """Over the size from which dicts are looked at first, markers the look cannot reach (in a
    list, past its budget) are still found by the scans, and every value comes back exactly."""
    from wrapyfi_like.encoding import json_mode

    frame = _received(value)
    assert frame.nbytes > json_mode._SCAN_FIRST_BYTES
    assert BINARY.decode([frame]) == value


def test_a_large_body_of_plain_dicts_skips_the_marker_walk(monkeypatch):
    from wrapyfi_like.encoding import json_mode

    value = {"seq": 1, "data": {"label": "__wrapyfi__ data_b64 \\ " * 2000, "inner": {"ok": [0.5] * 10}}}
    frame = _received(value)
    assert frame.nbytes > json_mode._SCAN_FIRST_BYTES
    monkeypatch.setattr(json_mode._Decoder, "rebuild", lambda *args: pytest.fail("the marker walk ran"))
    assert BINARY.decode([frame]) == value
