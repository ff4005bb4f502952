"""examples/hello_world.py as two real processes, started in either order."""

import os
import selectors
import subprocess
import sys
import time
from pathlib import Path

import pytest

HELLO = Path(__file__).resolve().parent.parent / "examples" / "hello_world.py"

pytestmark = pytest.mark.timeout(90)


def start(mode, *extra):
    return subprocess.Popen([sys.executable, str(HELLO), "--mode", mode, "--mware", "zeromq", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_for_line(stream, needle, timeout=30.0):
    """Read ``stream`` until a line contains ``needle``; fail after ``timeout`` seconds."""
    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        if selector.select(deadline - time.monotonic()):
            line = stream.readline()
            if not line:
                break
            seen.append(line)
            if needle in line:
                return
    pytest.fail(f"{needle!r} not seen in time; got {seen}")


def finish(*processes):
    outputs = []
    for process in processes:
        try:
            out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        outputs.append((process.returncode, out, err))
    return outputs


def check_received(listener_output):
    returncode, out, err = listener_output
    assert returncode == 0, err
    lines = [line for line in out.splitlines() if line.startswith("received")]
    assert len(lines) == 3, out
    for index, line in enumerate(lines, start=1):
        assert f"'message': 'hello world #{index}'" in line
        assert f"'tuple': ({index}, (2.5, 'three'))" in line
        assert "'array': array([[" in line


def test_publisher_first():
    publisher = start("publish", "--count", "3", "--rate", "50")
    try:
        wait_for_line(publisher.stderr, "waiting for a listener on /hello/my_message")
    except BaseException:
        publisher.kill()
        raise
    listener = start("listen", "--count", "3")
    listened, published = finish(listener, publisher)
    check_received(listened)
    assert published[0] == 0, published[2]


def test_listener_first():
    listener = start("listen", "--count", "3")
    publisher = start("publish", "--count", "3", "--rate", "50")
    listened, published = finish(listener, publisher)
    check_received(listened)
    assert published[0] == 0, published[2]


def test_a_publisher_that_exits_without_closing_still_delivers(topic):
    from wrapyfi_like.connect.listeners import Listener

    listener = Listener("Test", topic)
    script = ("import numpy as np; from wrapyfi_like.connect.publishers import Publisher; "
              f"publisher = Publisher('Test', {topic!r}, wait_timeout=30); "
              "[publisher.publish(np.full(1 << 20, index, np.float32)) for index in range(5)]")
    try:
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        for index in range(5):
            assert listener.listen()[0] == index
    finally:
        listener.close()
