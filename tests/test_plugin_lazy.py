"""Built-in plugins load lazily: importing wrapyfi_like imports no heavy library, using one loads it."""

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "pandas", "pyarrow", "PIL")


def _run(script):
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_wrapper_testing_and_cli_import_no_heavy_library():
    script = ("import sys, wrapyfi_like.connect.wrapper, wrapyfi_like.testing, wrapyfi_like.cli, wrapyfi_like.plugins; "
              f"print([m for m in {HEAVY!r} if m in sys.modules])")
    assert _run(script).strip() == "[]"


@pytest.mark.parametrize("library, make, plugin_module", [
    ("torch", "torch.zeros(2)", "torch_tensor"),
    ("pandas", "pandas.DataFrame({'a': [1]})", "pandas_data"),
    ("pyarrow", "pyarrow.array([1])", "pyarrow_data"),
    ("PIL.Image", "PIL.Image.new('L', (1, 1))", "pillow_image"),
])
def test_first_object_of_a_library_loads_its_plugin_only(library, make, plugin_module):
    pytest.importorskip(library)
    script = (f"import json, sys, {library}; from wrapyfi_like.encoding import Codec; codec = Codec(); "
              f"loaded = lambda: sorted(m.rsplit('.', 1)[1] for m in sys.modules "
              f"if m.startswith('wrapyfi_like.plugins.') and m.count('.') == 2); "
              f"before = loaded(); codec.decode(codec.encode({make})); print(json.dumps([before, loaded()]))")
    before, after = json.loads(_run(script))
    assert before == [] and plugin_module in after


def _torch_message():
    from wrapyfi_like.encoding import Codec
    import torch

    frames = Codec().encode({"t": torch.arange(3)})
    return [bytes(memoryview(frame).cast("B")) for frame in frames]


def test_received_codec_id_imports_nothing_in_a_fresh_process():
    """A 20-byte message naming torch.Tensor must not make a listener import torch (190 MB, 1 s)."""
    pytest.importorskip("torch")
    header = b"\x93\x01\x00\xc7\x0f\x0f\x92\xactorch.Tensor\xc0"  # ext 15 ["torch.Tensor", nil]
    assert len(header) == 21
    script = ("import sys; from wrapyfi_like.encoding import Codec; from wrapyfi_like.exceptions import DecodeError\n"
              "for frames in (" + repr([header]) + ", " + repr(_torch_message()) + "):\n"
              "    try:\n        Codec().decode(frames)\n    except DecodeError as error:\n        print(error)\n"
              "print('torch' in sys.modules, any(m.startswith('wrapyfi_like.plugins.torch') for m in sys.modules))")
    lines = _run(script).strip().splitlines()
    assert lines[-1] == "False False"
    assert len(lines) == 3
    for line in lines[:2]:
        assert "'torch.Tensor'" in line and "allowed_plugins=['torch.Tensor']" in line


def test_allowed_plugins_lets_a_received_codec_id_load_its_plugin():
    pytest.importorskip("torch")
    script = ("from wrapyfi_like.encoding import Codec; "
              f"value = Codec(allowed_plugins=['torch.Tensor']).decode({_torch_message()!r}); "
              "print(type(value['t']).__module__, value['t'].tolist())")
    assert _run(script).strip() == "torch [0, 1, 2]"


def test_a_library_the_process_imported_lets_its_plugin_load_on_decode():
    pytest.importorskip("torch")
    script = ("import torch; from wrapyfi_like.encoding import Codec; "
              f"value = Codec().decode({_torch_message()!r}); print(value['t'].tolist())")
    assert _run(script).strip() == "[0, 1, 2]"


def test_allowed_plugins_must_be_a_list_of_codec_ids():
    from wrapyfi_like.encoding import Codec
    from wrapyfi_like.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="allowed_plugins"):
        Codec(allowed_plugins="torch.Tensor")


def test_torch_kwargs_load_and_check_the_plugin_when_the_codec_is_built():
    pytest.importorskip("torch")
    script = ("from wrapyfi_like.encoding import Codec; from wrapyfi_like.exceptions import ConfigurationError\n"
              "try:\n    Codec(map_torch_devices={'cuda:1': 'cpu', 1: 'cuda:0'})\n"
              "except ConfigurationError as error:\n    print('refused:', error)\n")
    assert "refused: torch device 'cuda:1' is mapped to both" in _run(script)
