"""record / play / info: MCAP files that hold the wire bytes and replay them bit for bit."""

import io
import os
import selectors
import subprocess
import sys
import time

import numpy as np
import pytest

from wrapyfi_like.cli import main
from wrapyfi_like.cli.mcap_format import MESSAGE_ENCODING, pack_frames, read_messages, unpack_frames
from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.connect.publishers import Publisher
from wrapyfi_like.encoding import Codec
from wrapyfi_like.exceptions import DecodeError

pytestmark = pytest.mark.timeout(90)


def run(*argv):
    out = io.StringIO()
    code = main(list(argv), out)
    return code, out.getvalue()


def originals():
    rng = np.random.default_rng(7)
    return [{"i": i, "frame": rng.integers(0, 255, (4, 5, 3), dtype=np.uint8),
             "points": np.asfortranarray(rng.standard_normal((3, 2))), "tag": ("t", i)} for i in range(4)]


def test_framing_round_trip_and_rejects_bad_framing():
    frames = [b"header", b"", memoryview(np.arange(3, dtype=np.int16))]
    body = pack_frames(frames)
    assert body[:4] == (3).to_bytes(4, "little") and body[4:12] == (6).to_bytes(8, "little")
    assert [bytes(f) for f in unpack_frames(body)] == [b"header", b"", np.arange(3, dtype=np.int16).tobytes()]
    for broken in (b"", (0).to_bytes(4, "little"), body[:-1], body + b"!", body[:4] + (99).to_bytes(8, "little")):
        with pytest.raises(DecodeError):
            unpack_frames(broken)


def test_recording_replays_bit_identical_to_a_normal_listener(topic, tmp_path, in_thread):
    path = tmp_path / "run.mcap"
    values = originals()

    def publish():
        publisher = Publisher("Camera", topic, wait_timeout=20)
        for value in values:
            publisher.publish(value)
        publisher.close()

    sent = in_thread(publish)
    assert run("record", "-o", str(path), topic, "--count", "4") == (
        0, f"recording {topic} to {path} (Ctrl-C to stop)\nrecorded 4 messages on 1 topic(s) to {path}\n")
    sent.result(timeout=20)

    with open(path, "rb") as stream:  # stored as the wire bytes the codec produces
        recorded = list(read_messages(stream))
    codec = Codec()
    assert [r.topic for r in recorded] == [topic] * 4
    assert [[bytes(f) for f in r.frames] for r in recorded] == \
        [[bytes(memoryview(f).cast("B")) for f in codec.encode(v)] for v in values]
    assert [r.data_type for r in recorded] == ["NativeObject"] * 4
    times = [r.log_time_ns for r in recorded]
    assert times == sorted(times) and abs(times[0] / 1e9 - time.time()) < 60

    code, out = run("info", str(path))
    assert code == 0
    assert "messages:  4\n" in out and f"  {topic}  4 messages  NativeObject  ({MESSAGE_ENCODING})" in out

    listener = Listener("Viewer", topic)
    try:
        played = in_thread(lambda: run("play", str(path), "--rate", "20", "--wait", "20"))
        received = [listener.listen() for _ in range(4)]
        assert played.result(timeout=30) == (0, f"played 4 messages from {path}\n")
    finally:
        listener.close()
    for got, want in zip(received, values):
        assert got["i"] == want["i"] and got["tag"] == want["tag"]
        for key in ("frame", "points"):
            assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape
            assert got[key].tobytes(order="A") == want[key].tobytes(order="A")
            assert got[key].flags.f_contiguous == want[key].flags.f_contiguous


def test_play_rejects_unknown_topics_and_reports_unheard_ones(topic, tmp_path, in_thread, capsys):
    path = tmp_path / "one.mcap"
    sent = in_thread(lambda: Publisher("P", topic, wait_timeout=20).publish({"x": 1}))
    assert run("record", "-o", str(path), topic, "--count", "1")[0] == 0
    sent.result(timeout=20)
    assert run("play", str(path), "--topics", "/not/recorded") == (1, "")
    err = capsys.readouterr().err
    assert f"has no topic /not/recorded (it has: {topic})" in err
    code, out = run("play", str(path), "--wait", "0.2")
    err = capsys.readouterr().err
    assert code == 1 and out == f"played 0 messages from {path}\n"
    assert f"skipped messages on topics nobody listened to: {topic} (1)" in err


def _wait_for_line(stream, needle, timeout=30.0):
    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if selector.select(deadline - time.monotonic()):
            line = stream.readline()
            if needle in line:
                return
            if not line:
                break
    pytest.fail(f"{needle!r} not seen in time")


def test_record_all_finds_topics_announced_later(topic, tmp_path):
    path = tmp_path / "all.mcap"
    recorder = subprocess.Popen([sys.executable, "-m", "wrapyfi_like", "record", "-o", str(path), "--all",
                                 "--count", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        _wait_for_line(recorder.stdout, "recording every topic")
        for name in (f"{topic}/a", f"{topic}/b"):  # appear after the recording started
            publisher = Publisher("Late", name, wait_timeout=30)
            try:
                publisher.publish({"topic": name, "n": 1})
                publisher.publish({"topic": name, "n": 2})
            finally:
                publisher.close()
        out, err = recorder.communicate(timeout=30)
    except BaseException:
        recorder.kill()
        print("recorder said:", recorder.communicate())
        raise
    finally:
        recorder.kill()
    assert recorder.returncode == 0, err
    code, info = run("info", str(path))
    assert f"  {topic}/a  2 messages  NativeObject" in info and f"  {topic}/b  2 messages  NativeObject" in info
