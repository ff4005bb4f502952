"""The wrapyfi-like command line: help everywhere, one-line errors, the console script."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wrapyfi_like.cli import main
from wrapyfi_like.cli.app import COMMANDS

ROOT = Path(__file__).resolve().parent.parent
CONSOLE_SCRIPT = Path(sys.executable).with_name("wrapyfi-like")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: wrapyfi-like {command}" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["echo"],                                   # TOPIC missing
    ["hz", "/t", "--window", "0"],             # not a positive count
    ["pub", "/t", "1", "--rate", "-2"],         # not a positive rate
    ["play", "x.mcap", "--rate", "fast"],      # not a number
    ["no-such-command"],
])
def test_bad_arguments_exit_2_with_usage_and_no_traceback(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def one_line_error(capsys, argv):
    out = io.StringIO()
    code = main(argv, out)
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and err.startswith(f"wrapyfi-like {argv[0]}: error: "), err
    return err


def test_echo_on_a_silent_topic_times_out_with_one_line(topic, capsys):
    err = one_line_error(capsys, ["echo", topic, "--timeout", "0.3"])
    assert f"no message on {topic} within 0.3 s" in err


def test_pub_rejects_a_value_that_is_not_yaml(topic, capsys):
    err = one_line_error(capsys, ["pub", topic, "{a: [1, 2"])
    assert "not valid YAML or JSON" in err


def test_pub_without_listener_times_out_with_one_line(topic, capsys):
    err = one_line_error(capsys, ["pub", topic, "1", "--timeout", "0.3"])
    assert f"no listener for {topic}" in err


def test_info_and_play_reject_what_is_not_an_mcap_file(tmp_path, capsys):
    sample = (ROOT / "examples" / "recordings" / "numbers.mcap").read_bytes()
    for name, content in [("notes.mcap", b"not a recording"), ("tiny.mcap", b"abc"),
                          ("cut.mcap", sample[:len(sample) // 2])]:
        bogus = tmp_path / name
        bogus.write_bytes(content)
        assert "is not a readable MCAP file" in one_line_error(capsys, ["info", str(bogus)])
        assert "is not a readable MCAP file" in one_line_error(capsys, ["play", str(bogus)])
    assert "No such file" in one_line_error(capsys, ["info", str(tmp_path / "missing.mcap")])


def test_play_of_a_recording_damaged_inside_a_chunk_stops_with_one_line(tmp_path, capsys):
    damaged = bytearray((ROOT / "examples" / "recordings" / "numbers.mcap").read_bytes())
    damaged[100:116] = b"\xff" * 16  # inside the first chunk; the summary at the end is intact
    path = tmp_path / "damaged.mcap"
    path.write_bytes(damaged)
    assert "the recording is damaged" in one_line_error(capsys, ["play", str(path), "--wait", "0.1"])


def test_record_needs_topics_or_all_and_a_new_file(tmp_path, capsys):
    assert "name the TOPICs" in one_line_error(capsys, ["record", "-o", str(tmp_path / "a.mcap")])
    existing = tmp_path / "b.mcap"
    existing.write_bytes(b"keep me")
    assert "exists" in one_line_error(capsys, ["record", "-o", str(existing), "/t"])
    assert existing.read_bytes() == b"keep me"
    assert "non-empty string" in one_line_error(capsys, ["record", "-o", str(tmp_path / "c.mcap"), "/t", ""])
    assert not (tmp_path / "c.mcap").exists()


def test_console_script_and_module_run_topics_without_a_directory_as_one_line(tmp_path):
    from wrapyfi_like.middlewares.ports import free_port

    address = f"tcp://127.0.0.1:{free_port()}"  # where no directory runs
    env = {**os.environ, "WRAPYFI_ZEROMQ_DISCOVERY": address}
    for launcher in ([str(CONSOLE_SCRIPT)], [sys.executable, "-m", "wrapyfi_like"]):
        result = subprocess.run([*launcher, "topics", "--timeout", "0.3"], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 1
        assert result.stderr == (f"wrapyfi-like topics: error: no discovery directory answered at {address} "
                                 "within 0.3 s (no wrapyfi_like process is running with this "
                                 "WRAPYFI_ZEROMQ_DISCOVERY)\n")
