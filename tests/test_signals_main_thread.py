"""Ctrl-C reaches the main thread: no thread wrapyfi_like starts (nor libzmq's, pyzmq's frame
collector, zenoh's runtime) may take a signal sent to the process.

Why: Linux gives a process-directed signal to any one thread that does not block it, and Python
runs the handler only in the main thread. A SIGINT taken by a background thread left a publisher
waiting for its first listener deaf to Ctrl-C (tests/test_threads_shutdown.py hung 1 run in 12
under load before every thread started blocking the asynchronous signals).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = Path(__file__).resolve().parent / "signal_threads_child.py"

pytestmark = pytest.mark.timeout(120)


def test_every_background_thread_blocks_sigint(topic):
    # One BLAS thread: numpy's OpenBLAS pool is not ours, and does not block signals.
    result = subprocess.run([sys.executable, str(CHILD), topic], capture_output=True, text=True, timeout=100,
                            env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    blocks_sigint = json.loads(result.stdout)
    names = " ".join(blocks_sigint)
    for expected in ("wrapyfi_like intake", "wrapyfi_like-discovery", "wrapyfi_like-peer-check",
                     "wrapyfi_like-flusher-", "zenoh publisher", "ZMQbg/IO", "GarbageCollectorThread"):
        assert expected in names, f"{expected!r} not among the threads the child started: {names}"
    assert [name for name, blocked in blocks_sigint.items() if not blocked] == []
