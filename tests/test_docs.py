"""Every code block of the docs and the README runs (see tests/doc_blocks.py for the convention),
and the site builds with ``mkdocs build --strict``.

One test per page, so a failure names the page, the block's line and its output. Pages run
concurrently (each on a discovery address of its own, so their examples never meet); blocks
within a page run in order. Skipped blocks are listed as skipped tests with their reasons.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from doc_blocks import Block, ConventionError, blocks
from wrapyfi_like.middlewares.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(p.relative_to(ROOT) for p in (ROOT / "docs").rglob("*.md")) + [Path("README.md")]
BLOCK_TIMEOUT = 30.0
PARALLEL_PAGES = 3

pytestmark = pytest.mark.timeout(180)


def _page_environment() -> dict:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1",
            "WRAPYFI_ZEROMQ_DISCOVERY": f"tcp://127.0.0.1:{free_port()}", "NO_MKDOCS_2_WARNING": "1"}


class PageRun:
    """Runs one page's blocks in order; collects the first failure as a readable report."""

    def __init__(self, page: Path, workdir: Path) -> None:
        self.page = page
        self.workdir = workdir
        self.env = _page_environment()
        self.background: list[tuple[Block, subprocess.Popen, Path]] = []

    def run(self) -> None:
        try:
            for block in blocks(ROOT / self.page, self.page):
                if block.skip_reason is None:
                    self._run(block)
            self._check_background_still_fine()
        finally:
            self._stop_background()

    def _run(self, block: Block) -> None:
        if block.lang == "yaml":
            yaml.safe_load(block.code)
        elif block.lang == "json":
            json.loads(block.code)
        elif block.lang in ("python", "console"):
            command = self._command(block)
            if block.background:
                log = self.workdir / f"L{block.line}.log"
                with open(log, "wb") as out:
                    process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                               start_new_session=True)
                self.background.append((block, process, log))
            else:
                self._run_to_completion(block, command)

    def _command(self, block: Block) -> list[str]:
        if block.lang == "python":
            script = self.workdir / f"{self.page.stem}_L{block.line}.py"
            script.write_text(block.code, encoding="utf-8")
            return [sys.executable, str(script)]
        commands = block.commands()
        if not commands:
            raise AssertionError(f"{block.where}: console block without a `$ ` command")
        script = "set -eo pipefail\n" + "\n".join(commands) + "\n"
        return ["bash", "-c", script]

    def _run_to_completion(self, block: Block, command: list[str]) -> None:
        process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            output, _ = process.communicate(timeout=BLOCK_TIMEOUT)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            output, _ = process.communicate()
            raise AssertionError(f"{block.where}: did not finish within {BLOCK_TIMEOUT} s\n{_tail(output)}") from None
        if process.returncode != 0:
            raise AssertionError(f"{block.where}: exited with {process.returncode}\n{_tail(output)}\n"
                                 f"{self._background_logs()}")

    def _check_background_still_fine(self) -> None:
        for block, process, log in self.background:
            if process.poll() not in (None, 0):
                raise AssertionError(f"{block.where}: background block failed with {process.returncode}\n"
                                     f"{_tail(log.read_bytes())}")

    def _background_logs(self) -> str:
        return "".join(f"--- background {block.where}:\n{_tail(log.read_bytes())}\n"
                       for block, _, log in self.background)

    def _stop_background(self) -> None:
        for _, process, _ in self.background:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)  # the Ctrl-C a reader would press
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    _kill_group(process)
                    process.wait()


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _tail(output: bytes, lines: int = 40) -> str:
    return "\n".join(output.decode(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="session")
def page_runs(request, tmp_path_factory) -> dict[Path, Future]:
    """Start every selected page at once (a few at a time); each test then waits for its own."""
    selected = [item.callspec.params["page"] for item in request.session.items
                if getattr(item, "originalname", None) == "test_page"]
    executor = ThreadPoolExecutor(max_workers=PARALLEL_PAGES, thread_name_prefix="docs-page")
    request.addfinalizer(lambda: executor.shutdown(wait=True, cancel_futures=True))
    return {page: executor.submit(PageRun(page, tmp_path_factory.mktemp(page.stem)).run) for page in selected}


@pytest.mark.parametrize("page", PAGES, ids=str)
def test_page(page, page_runs):
    page_runs[page].result()


def _skipped(page: Path) -> list[Block]:
    try:
        return [block for block in blocks(ROOT / page, page) if block.skip_reason]
    except ConventionError:
        return []  # test_page reports it, naming the page


SKIPPED = [block for page in PAGES for block in _skipped(page)]


@pytest.mark.parametrize("block", SKIPPED, ids=lambda block: block.where)
def test_skipped_block(block):
    pytest.skip(f"{block.where} not run: {block.skip_reason}")


def test_site_builds_in_strict_mode(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    pytest.importorskip("material", reason="the docs extra is not installed (pip install -e '.[docs]')")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                            cwd=ROOT, env=_page_environment(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "wire" / "index.html").exists()
