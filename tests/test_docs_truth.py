"""What the docs show is what happens: the hello-world output, the install lines, the recording
encodings docs/cli.md names (and that Foxglove cannot decode)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from doc_blocks import blocks

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
HELLO = "examples/hello_world.py --mode "


def shown_output(page: Path, command_tail: str) -> list[str]:
    """The output lines a page shows under the console command ending in ``command_tail``."""
    for block in blocks(page, page.relative_to(ROOT)):
        lines = block.code.splitlines()
        for index, line in enumerate(lines):
            if line.startswith("$ ") and line.endswith(command_tail):
                shown = []
                for following in lines[index + 1:]:
                    if following.startswith("$ "):
                        break
                    shown.append(following)
                return shown
    raise AssertionError(f"{page.name} shows no command ending in {command_tail!r}")


def test_the_hello_world_output_shown_is_what_it_prints(private_discovery):
    env = {**os.environ, **private_discovery}
    publisher = subprocess.Popen([sys.executable, *f"{HELLO}publish --mware zeromq --count 3 --rate 20".split()],
                                 cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        listened = subprocess.run([sys.executable, *f"{HELLO}listen --mware zeromq --count 3".split()], cwd=ROOT,
                                  env=env, capture_output=True, text=True, timeout=50)
        published, _ = publisher.communicate(timeout=30)
    finally:
        if publisher.poll() is None:
            publisher.kill()
    assert listened.returncode == 0, listened.stderr
    for page in (ROOT / "README.md", ROOT / "docs" / "index.md"):
        assert shown_output(page, f"{HELLO}listen --mware zeromq --count 3") == listened.stdout.splitlines()
    shown = shown_output(ROOT / "docs" / "index.md", f"{HELLO}publish --mware zeromq")
    assert shown and published.splitlines()[:len(shown)] == shown


def test_every_pip_install_shown_uses_the_checkout_and_its_constraints():
    """wrapyfi_like is not on PyPI: `pip install "wrapyfi_like[x]"` would fetch something else."""
    for page in PAGES:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            for command in re.findall(r"pip install[^`]*", line):
                assert "-c constraints.txt" in command and "-e " in command, f"{page.name}:{number}: {command}"


def test_every_install_hint_in_error_messages_uses_the_checkout_and_its_constraints():
    for path in [*(ROOT / "wrapyfi_like").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            assert not ("pip install" in line and "wrapyfi_like[" in line), f"{path.name}:{number}: {line.strip()}"


def test_recordings_use_the_encodings_docs_name_which_foxglove_does_not_know():
    from mcap.reader import make_reader
    from mcap.well_known import MessageEncoding, SchemaEncoding

    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    known = {value for name, value in vars(MessageEncoding).items() if not name.startswith("_")}
    known |= {value for name, value in vars(SchemaEncoding).items() if not name.startswith("_")}
    with open(ROOT / "examples" / "recordings" / "numbers.mcap", "rb") as stream:
        summary = make_reader(stream).get_summary()
    assert summary.channels and summary.schemas
    for channel in summary.channels.values():
        assert f"`{channel.message_encoding}`" in text and channel.message_encoding not in known
    for schema in summary.schemas.values():
        assert f"`{schema.encoding}`" in text and schema.encoding not in known


def test_every_test_the_promise_table_names_exists():
    """docs/reliability.md's table names the test that proves each promise: each must exist."""
    import ast

    text = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    table = text[text.index("## Promises, limits and the tests that prove them"):text.index("## Delivery guarantees")]
    names = {}
    for path in (ROOT / "tests").glob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names[path.name] = {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    conformance = ast.parse((ROOT / "wrapyfi_like" / "testing" / "transports.py").read_text(encoding="utf-8"))
    names["conformance"] = {node.name for node in ast.walk(conformance) if isinstance(node, ast.FunctionDef)}
    missing = []
    for row in table.splitlines():
        current = None
        for reference in re.findall(r"`([^`]+)`", row):
            file, _, test = reference.partition("::")
            if file.endswith(".py") and file.startswith("test_"):
                current = file
                if file not in names:
                    missing.append(reference)
            elif not file.startswith("::") or current is None:
                continue
            else:
                test = file[2:]
            if test and current in names:
                pattern = re.escape(test.split("[")[0]).replace(r"\*", ".*")
                if not any(re.fullmatch(pattern, name) for name in names[current]):
                    missing.append(f"{current}::{test}")
    assert missing == []
