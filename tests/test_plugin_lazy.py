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


def test_received_codec_id_loads_its_plugin_in_a_fresh_process():
    pytest.importorskip("torch")
    from wrapyfi_like.encoding import Codec
    import torch

    frames = Codec().encode({"t": torch.arange(3)})
    payload = [bytes(memoryview(frame).cast("B")) for frame in frames]
    script = ("import sys; from wrapyfi_like.encoding import Codec; "
              f"value = Codec().decode({payload!r}); print(type(value['t']).__module__, value['t'].tolist())")
    assert _run(script).strip() == "torch [0, 1, 2]"


def test_torch_kwargs_load_and_check_the_plugin_when_the_codec_is_built():
    pytest.importorskip("torch")
    script = ("from wrapyfi_like.encoding import Codec; from wrapyfi_like.exceptions import ConfigurationError\n"
              "try:\n    Codec(map_torch_devices={'cuda:1': 'cpu', 1: 'cuda:0'})\n"
              "except ConfigurationError as error:\n    print('refused:', error)\n")
    assert "refused: torch device 'cuda:1' is mapped to both" in _run(script)
