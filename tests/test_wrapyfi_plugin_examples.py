"""Wrapyfi 0.5.0's own example scripts for xarray, dask, pint and JAX, run unchanged except for the
import line (``from wrapyfi.`` -> ``from wrapyfi_like.``), as the two processes their docstrings name.

The scripts come from the wrapyfi package the bench extra installs (its wheel ships ``examples/``).
Each listener loops forever and each publisher reads its message from stdin, so the test types one
line, waits for the listener to print what it received, then closes stdin (the publisher's next
``input()`` ends it) and stops the listener.

Wrapyfi's zarr example is not here: it calls ``Group.create_dataset(name, data=..., chunks=10)``,
zarr 2's API, which zarr 3 (pinned here) refuses (``shape`` is required) before anything is sent.
"""

import importlib.metadata
import os
import queue
import subprocess
import sys
import threading
import time

import pytest

TIMEOUT = 60


def _script(name, tmp_path):
    source = importlib.metadata.distribution("wrapyfi").locate_file(f"examples/encoders/{name}")
    text = source.read_text()
    assert "from wrapyfi." in text
    target = tmp_path / name
    target.write_text(text.replace("from wrapyfi.", "from wrapyfi_like."))
    return target


def _lines(stream, into):
    for line in stream:
        into.put(line)
    into.put(None)


def _wait_for(lines, seen, done, deadline):
    """Collect the listener's lines into ``seen`` until ``done(seen)``; False at the deadline or EOF."""
    while not done(seen):
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return False
        if line is None:
            return False
        seen.append(line)
    return True


@pytest.mark.timeout(2 * TIMEOUT)
@pytest.mark.parametrize("name, expected", [
    ("xarray_example.py", ["<xarray.DataArray 'example' (time: 4, space: 3)>", "* space    (space) <U2 24B 'IA' 'IL' 'IN'"]),
    ("dask_example.py", ["dask_dataframe computed:", "dask_array computed:", "dask_series computed:"]),
    ("pint_example.py", ["'pint_quantity': <Quantity(42, 'meter')>", "'other': (1, 2, 3, 4.32)"]),
    ("jax_example.py", ["'jax_ones': Array([[1., 1., 1., 1.],"]),
])
def test_wrapyfi_example_runs_with_the_import_renamed(name, expected, tmp_path):
    """The listener prints exactly what the publisher printed of the same message (random arrays
    included; one hash seed for both, so the example's set prints in one order)."""
    script = _script(name, tmp_path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONHASHSEED": "0"}
    command = [sys.executable, str(script), "--mware", "zeromq"]
    listener = subprocess.Popen([*command, "--mode", "listen"], env=env, text=True, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    publisher = subprocess.Popen([*command, "--mode", "publish"], env=env, text=True, cwd=tmp_path,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = queue.Queue()
    threading.Thread(target=_lines, args=(listener.stdout, lines), daemon=True).start()
    seen = []
    try:
        # one line typed, then end of input: the publisher sends it, prints it and ends at its next input()
        published, _ = publisher.communicate(f"hello {name.split('_')[0]}\n", timeout=TIMEOUT)
        prompts = published.split("Type your message: ", 2)
        assert len(prompts) == 3 and "EOFError" in prompts[2], published
        block = prompts[1]
        received = _wait_for(lines, seen, lambda got: block in "".join(got), time.monotonic() + TIMEOUT)
    finally:
        for process in (publisher, listener):
            if process.poll() is None:
                process.kill()
            process.wait()
    assert "hello" in block and all(part in block for part in expected), block
    assert received, f"the publisher printed:\n{block}\nthe listener printed:\n{''.join(seen)}"
