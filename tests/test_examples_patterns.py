"""Every pattern/scheme/sensor example and the demo, run in all their roles as separate processes
on both middlewares (ZeroMQ and zenoh); checks what arrived."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TIMEOUT = 90

pytestmark = pytest.mark.timeout(2 * TIMEOUT)


@pytest.fixture(params=["zeromq", "zenoh"], autouse=True)
def mware(request):
    """Every test runs on both middlewares; the examples get it as ``--mware``."""
    return request.param


def run_together(mware, *commands):
    """Start every ``(script, args)`` at once; return their stdouts once all have exited."""
    processes = [subprocess.Popen([sys.executable, str(EXAMPLES / script), "--mware", mware, *args],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for script, *args in commands]
    outputs = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=TIMEOUT)
            assert process.returncode == 0, f"{process.args} failed:\n{err}"
            outputs.append(out)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    return outputs


def test_request_reply_example(mware):
    script = "communication_patterns/request_reply_example.py"
    requester, replier = run_together(mware, (script, "--mode", "request", "--count", "3"),
                                      (script, "--mode", "reply", "--count", "3"))
    lines = requester.splitlines()
    assert len(lines) == 3
    for n, line in enumerate(lines, 1):
        assert f"'message': \"got 'hello #{n}'\", 'counter': {n}" in line
        assert "image (240, 320, 3) uint8 audio (1600, 1) @ 16000 Hz" in line
    assert replier.count("served {'message'") == 3


def test_transceive_reemit_example(mware):
    script = "communication_patterns/transceive_reemit_example.py"
    transceiver, reemitter = run_together(mware, (script, "--mode", "transceive", "--count", "3"),
                                          (script, "--mode", "reemit", "--effect", "invert", "--count", "3"))
    lines = transceiver.splitlines()
    assert [line.split(" came back")[0] for line in lines] == ["frame 1", "frame 2", "frame 3"]
    # pixel (0, 0) of frame n is [0, 0, n]; inverted it is [255, 255, 255 - n]
    for n, line in enumerate(lines, 1):
        assert f"effect invert: (120, 160, 3), pixel[0,0]=[255, 255, {255 - n}]" in line
    assert reemitter.count("reemitted frame") == 3


@pytest.mark.parametrize("first, second", [("publish", "listen"), ("reply", "request")])
def test_mirroring_example(mware, first, second):
    script = "communication_schemes/mirroring_example.py"
    maker, mirror = run_together(mware, (script, "--mode", first, "--count", "3", "--rate", "20"),
                                 (script, "--mode", second, "--count", "3", "--rate", "20"))
    for n in (1, 2, 3):
        assert f"{second}: {{'text': 'mirrored message #{n}', 'counter': {n}" in mirror
        assert f"{first}: {{'text': 'mirrored message #{n}', 'counter': {n}" in maker


def test_forwarding_example(mware):
    script = "communication_schemes/forwarding_example.py"
    _, forwarder, listener = run_together(mware, (script, "--mode", "publish", "--count", "3", "--rate", "20"),
                                          (script, "--mode", "forward", "--count", "3"),
                                          (script, "--mode", "listen", "--count", "3"))
    lines = listener.splitlines()
    assert len(lines) == 3
    for n, line in enumerate(lines, 1):
        assert line.startswith(f"received on chain B: {{'counter': {n}, 'hops': ['source ")
        assert "'forwarder " in line
    assert forwarder.count("forwarded to chain B") == 3


def test_channeling_example_with_a_full_listener(mware):
    script = "communication_schemes/channeling_example.py"
    full, _ = run_together(mware, (script, "--mode", "listen", "--count", "3"),
                           (script, "--mode", "publish", "--count", "3", "--rate", "20"))
    lines = full.splitlines()
    assert len(lines) == 3
    for n, line in enumerate(lines, 1):
        assert line.startswith(f"A: {{'counter': {n}, 'image_mean'")
        assert line.endswith("B: (150, 200, 3) | C: (1600, 1) @ 16000 Hz")


def test_channeling_example_with_a_listener_of_one_channel(mware):
    """A one-channel listener next to a full one (which the publisher's should_wait needs on A and B)."""
    script = "communication_schemes/channeling_example.py"
    publisher = subprocess.Popen([sys.executable, str(EXAMPLES / script), "--mware", mware,
                                  "--mode", "publish", "--rate", "20"], stdout=subprocess.DEVNULL)
    try:
        partial, full = run_together(mware, (script, "--mode", "listen", "--channels", "C", "--count", "2"),
                                     (script, "--mode", "listen", "--count", "2"))
    finally:
        publisher.kill()
        publisher.wait()
    assert partial.splitlines() == ["A: None | B: None | C: (1600, 1) @ 16000 Hz"] * 2
    assert all(line.endswith("B: (150, 200, 3) | C: (1600, 1) @ 16000 Hz") for line in full.splitlines())


@pytest.mark.parametrize("jpg", [[], ["--jpg"]])
def test_cam_mic_example(mware, jpg):
    script = "sensors/cam_mic.py"
    listener, _ = run_together(mware, (script, "--mode", "listen", "--count", "3", *jpg),
                               (script, "--mode", "publish", "--count", "3", "--rate", "20", *jpg))
    lines = listener.splitlines()
    assert [line.split(":")[0] for line in lines] == ["video 1", "audio 1", "video 2", "audio 2", "video 3", "audio 3"]
    assert all("frame (240, 320, 3) uint8" in line for line in lines[0::2])
    assert all("chunk (1600, 1) @ 16000 Hz peak 0.50" in line for line in lines[1::2])


def test_demo_runs_hello_world_as_two_processes(mware):
    result = subprocess.run([sys.executable, str(EXAMPLES / "demo.py"), "--mware", mware], capture_output=True,
                            text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    received = result.stdout.split("the listener process received:")[1]
    assert [line.split(",")[0] for line in received.splitlines() if line.startswith("received")] == [
        f"received {{'message': 'hello world #{n}'" for n in (1, 2, 3)]
