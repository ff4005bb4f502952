"""The wheel carries every module: an installed (not editable) copy must work like the checkout."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(120)
def test_the_wheel_contains_every_module_of_the_checkout(tmp_path):
    # built from a copy: setuptools reuses the checkout's build/, where stale files would hide a gap
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".*", "build", "site", "*.egg-info", "__pycache__", "benchmarks", "docs", "tests"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(source)], check=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("*.whl")
    packed = {name for name in zipfile.ZipFile(wheel).namelist() if name.endswith(".py")}
    on_disk = {path.relative_to(ROOT).as_posix() for path in (ROOT / "wrapyfi_like").rglob("*.py")}
    on_disk |= {"wrapyfi_like/plugins/" + path.relative_to(ROOT / "plugins").as_posix()
                for path in (ROOT / "plugins").rglob("*.py")}
    assert on_disk - packed == set()
