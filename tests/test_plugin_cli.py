"""``python -m wrapyfi_like plugins``: every plugin, where from, its types, and load errors."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _plugins_command(plugin_paths=None):
    env = {k: v for k, v in os.environ.items() if k != "WRAPYFI_PLUGIN_PATHS"}
    if plugin_paths:
        env["WRAPYFI_PLUGIN_PATHS"] = os.pathsep.join(str(p) for p in plugin_paths)
    return subprocess.run([sys.executable, "-m", "wrapyfi_like", "plugins"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_lists_builtin_plugins_with_source_and_types():
    pytest.importorskip("torch")
    pytest.importorskip("pandas")
    result = _plugins_command()
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "torch.Tensor  (TorchTensor)" in out and "types: torch.Tensor" in out
    assert str(ROOT / "plugins" / "torch_tensor.py") in out
    assert "pandas.DataFrame  (PandasDataFrame)" in out and "types: pandas.DataFrame" in out
    assert "FAILED" not in out


def test_lists_external_plugins_and_failures(tmp_path):
    broken = tmp_path / "plugins"
    broken.mkdir()
    (broken / "broken_plugin.py").write_text("import a_module_that_does_not_exist\n")
    result = _plugins_command([ROOT / "examples" / "encoders", tmp_path])
    assert result.returncode == 1
    out = result.stdout
    assert "examples.fractions.Fraction  (ExactFraction)" in out
    assert str(ROOT / "examples" / "encoders" / "plugins" / "exact_numbers.py") in out
    assert "types: fractions.Fraction" in out
    assert f"FAILED {broken / 'broken_plugin.py'}" in out
    assert "No module named 'a_module_that_does_not_exist'" in out


def test_a_builtin_whose_library_is_not_installed_is_listed_as_such_not_as_a_failure():
    # jax hidden as if its extra were not installed: sys.modules[name] = None makes find_spec say so
    script = ("import sys; sys.modules['jax'] = None; sys.argv = ['wrapyfi-like', 'plugins']; "
              "from wrapyfi_like.cli import run; run()")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not installed: jax.Array (needs jax)" in result.stdout
    assert "FAILED" not in result.stdout
    assert "torch.Tensor  (TorchTensor)" in result.stdout
