"""docs/cli.md's promise, checked on the real console script: every error is one line on stderr
and a non-zero exit, never a traceback; Ctrl-C ends a running command with exit 0; echo decodes
the package's own plugins (Pillow here) in a process that never imported their library."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import pytest

from wrapyfi_like.connect.publishers import Publisher
from wrapyfi_like.middlewares.zeromq.discovery import list_directory
from wrapyfi_like.middlewares.zeromq.keys import listener_key
from wrapyfi_like.utils.core_utils import Plugin, PluginRegistrar

pytestmark = pytest.mark.timeout(60)
CONSOLE_SCRIPT = Path(sys.executable).parent / "wrapyfi-like"


def wrapyfi_like(*args: str, env: dict = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(CONSOLE_SCRIPT), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def assert_one_line(result: subprocess.CompletedProcess, command: str, text: str, exit_code: int = 1) -> None:
    assert result.returncode == exit_code, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"wrapyfi-like {command}: error: ")
    assert text in result.stderr


@pytest.mark.parametrize("args, env, text", [
    (["echo", "", "--timeout", "0.3"], {}, "a topic must be a non-empty string"),
    (["echo", "/" + "a" * 2000, "--timeout", "0.3"], {}, "the limit is 1024"),
    (["echo", "/cli/errors", "--timeout", "0.3"], {"WRAPYFI_ZEROMQ_DISCOVERY": "udp://127.0.0.1:7700"},
     "WRAPYFI_ZEROMQ_DISCOVERY='udp://127.0.0.1:7700': only tcp:// is supported"),
    (["topics", "--timeout", "0.3"], {"WRAPYFI_ZEROMQ_DISCOVERY": "tcp://127.0.0.1:1"},
     "no discovery directory answered at tcp://127.0.0.1:1 within 0.3 s"),
    (["pub", "/cli/errors", "[1", "--timeout", "0.3"], {}, "VALUE is not valid YAML or JSON"),
])
def test_each_documented_error_is_one_line_and_exit_1(args, env, text):
    assert_one_line(wrapyfi_like(*args, env=env), args[0], text)


def test_bad_arguments_exit_2_with_the_usage_and_one_error_line():
    result = wrapyfi_like("hz", "/cli/errors", "--window", "0")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("usage: wrapyfi-like hz")
    assert result.stderr.splitlines()[-1] == "wrapyfi-like hz: error: argument --window: must be at least 1, got 0"


class Secret:
    """A type only this test process has a plugin for."""

    def __init__(self, value: Fraction) -> None:
        self.value = value


@PluginRegistrar.register(types=(Secret,))
class SecretOnlyHere(Plugin):
    codec_id = "tests.cli_errors.Secret"

    def __init__(self, **kwargs) -> None:
        pass

    def encode(self, obj, *args, **kwargs):
        return True, dict(__wrapyfi__=(self.codec_id, str(obj.value)))

    def decode(self, obj_type, obj_full, *args, **kwargs):
        return True, Secret(Fraction(obj_full[1]))


def _publish_when_echo_listens(topic: str, values: list) -> threading.Thread:
    def publish():
        publisher = Publisher("Test", topic, wait_timeout=30)
        try:
            for value in values:
                publisher.publish(value)
        finally:
            publisher.close()

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    return thread


def test_echo_reports_an_unknown_codec_in_one_line_and_goes_on(topic):
    sender = _publish_when_echo_listens(topic, [{"secret": Secret(Fraction(1, 3))}, {"plain": 1}])
    result = wrapyfi_like("echo", topic, "--count", "1", "--timeout", "20")
    sender.join(timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "{'plain': 1}\n---\n"
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"skipped a malformed message on {topic}: unknown codec id "
                                    "'tests.cli_errors.Secret'")


def test_echo_decodes_built_in_plugins_without_their_library_imported(topic):
    Image = pytest.importorskip("PIL.Image")  # the pillow extra is installed wherever the suite runs
    sender = _publish_when_echo_listens(topic, [{"picture": Image.new("RGB", (4, 2), (10, 20, 30))}])
    result = wrapyfi_like("echo", topic, "--once", "--json", "--timeout", "20")
    sender.join(timeout=30)
    assert result.returncode == 0, result.stderr
    picture = json.loads(result.stdout)["picture"]
    assert (picture["type"], picture["size"], picture["mode"]) == ("Image", [4, 2], "RGB")


def _interrupted(command: list, ready) -> subprocess.CompletedProcess:
    """Run the CLI, send SIGINT once ``ready(process)`` holds, and collect what it wrote."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready(process)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def test_ctrl_c_ends_a_running_echo_with_exit_0(topic):
    def listening(process):
        deadline = time.monotonic() + 30
        while not any(entry.key == listener_key(topic) for entry in list_directory()):
            assert process.poll() is None and time.monotonic() < deadline

    result = _interrupted([str(CONSOLE_SCRIPT), "echo", topic], listening)
    assert (result.returncode, result.stderr) == (0, "")


def test_ctrl_c_while_the_commands_load_is_one_line_not_a_traceback(topic):
    """``-X importtime`` reports each import as it ends: SIGINT goes once the commands' first
    module is imported, i.e. while the rest (numpy, ZeroMQ …) loads."""
    def loading(process):
        for line in process.stderr:
            if line.rsplit("|", 1)[-1].strip() == "wrapyfi_like.cli.command":
                return
        raise AssertionError("the CLI's commands were never imported")

    result = _interrupted([sys.executable, "-X", "importtime", "-m", "wrapyfi_like", "echo", topic], loading)
    said = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
    assert "Traceback" not in result.stderr
    assert result.returncode in (0, 130)  # 0: the commands had loaded already and echo stopped
    assert said == (["wrapyfi-like: interrupted while starting"] if result.returncode else [])


def test_a_reader_that_stops_early_ends_echo_quietly(topic):
    sender = _publish_when_echo_listens(topic, [{"n": n} for n in range(2000)])
    process = subprocess.Popen([str(CONSOLE_SCRIPT), "echo", topic], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        assert process.stdout.readline() == "{'n': 0}\n"
        process.stdout.close()  # as `| head -1` does once it has its line
        assert process.wait(timeout=30) == 1
        assert process.stderr.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
        sender.join(timeout=30)
    assert not sender.is_alive()
