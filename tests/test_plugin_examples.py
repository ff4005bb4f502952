"""Each examples/encoders script, run as a publisher and a listener process over ZeroMQ and zenoh.

The examples print a description of every message (dtypes, shapes, devices, digests of the exact
values); what the listener prints must be exactly what the publisher printed.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENCODERS = ROOT / "examples" / "encoders"
COUNT = 2
PLUGIN_ENV = {"WRAPYFI_PLUGIN_PATHS": str(ENCODERS)}


MWARES = pytest.mark.parametrize("mware", ["zeromq", "zenoh"])


def _run_pair(script, mware, env_extra=None, publisher_args=()):
    env = {**os.environ, **(env_extra or {})}
    command = [sys.executable, str(ENCODERS / script), "--mware", mware, "--count", str(COUNT)]
    listener = subprocess.Popen([*command, "--mode", "listen"], cwd=ROOT, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    publisher = subprocess.Popen([*command, "--mode", "publish", "--rate", "50", *publisher_args], cwd=ROOT,
                                 env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        published, publisher_errors = publisher.communicate(timeout=90)
        received, listener_errors = listener.communicate(timeout=90)
    finally:
        for process in (publisher, listener):
            if process.poll() is None:
                process.kill()
                process.wait()
    assert publisher.returncode == 0, publisher_errors
    assert listener.returncode == 0, listener_errors
    return published.splitlines(), received.splitlines()


def _assert_same_messages(published, received):
    assert len(published) == COUNT and all(line.startswith("published ") for line in published)
    assert [line.replace("received ", "", 1) for line in received] == \
           [line.replace("published ", "", 1) for line in published]


@pytest.mark.timeout(200)
@MWARES
@pytest.mark.parametrize("script, needs", [
    ("pytorch_example.py", "torch"),
    ("numpy_pandas_example.py", "pandas"),
    ("pyarrow_example.py", "pyarrow"),
    ("pillow_example.py", "PIL"),
])
def test_example_delivers_what_was_published(script, needs, mware):
    pytest.importorskip(needs)
    _assert_same_messages(*_run_pair(script, mware))


@pytest.mark.timeout(200)
@MWARES
def test_pillow_example_encoded(mware):
    pytest.importorskip("PIL")
    published, received = _run_pair("pillow_example.py", mware, publisher_args=["--encoded"])
    _assert_same_messages(published, received)
    assert "format=PNG" in received[0]


@pytest.mark.timeout(200)
@MWARES
def test_external_plugin_example_with_plugin_path(mware):
    published, received = _run_pair("exact_numbers_example.py", mware, PLUGIN_ENV)
    _assert_same_messages(published, received)
    assert "Fraction(1, 3)" in received[0] and "Decimal('19.99')" in received[0]


def test_external_plugin_example_without_plugin_path_says_how_to_fix():
    env = {k: v for k, v in os.environ.items() if k != "WRAPYFI_PLUGIN_PATHS"}
    result = subprocess.run([sys.executable, str(ENCODERS / "exact_numbers_example.py"), "--mode", "listen",
                             "--count", "1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "WRAPYFI_PLUGIN_PATHS=examples/encoders" in result.stderr
