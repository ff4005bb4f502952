"""``wrapyfi-like plugins`` also lists plugins installed as entry points, and entry points that fail."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PLUGIN = '''
from wrapyfi_like.utils.core_utils import Plugin, PluginRegistrar


class Celsius(float):
    pass


@PluginRegistrar.register(types=(Celsius,))
class CelsiusPlugin(Plugin):
    codec_id = "demo.Celsius"

    def encode(self, obj, *args, **kwargs):
        return True, {"__wrapyfi__": (self.codec_id, float(obj))}

    def decode(self, obj_type, obj_full, *args, **kwargs):
        return True, Celsius(obj_full[1])
'''


def installed_with_entry_points(folder, *entry_points):
    """An environment in which ``folder`` holds an installed distribution: the Celsius plugin
    module and a dist-info declaring ``entry_points`` (``"name = module"``) in our group."""
    (folder / "celsius_plugin.py").write_text(PLUGIN)
    dist_info = folder / "celsius_plugin-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: celsius-plugin\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[wrapyfi_like.plugins]\n" + "".join(f"{e}\n" for e in entry_points))
    return {**os.environ, "PYTHONPATH": str(folder)}


def test_entry_point_plugins_are_listed_with_source_and_failures(tmp_path):
    env = installed_with_entry_points(tmp_path, "celsius = celsius_plugin", "broken = no_such_module_here")
    result = subprocess.run([sys.executable, "-m", "wrapyfi_like", "plugins"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1  # one entry point failed
    out = result.stdout
    assert "demo.Celsius  (CelsiusPlugin)" in out
    assert f"from:  {tmp_path / 'celsius_plugin.py'}" in out
    assert "types: celsius_plugin.Celsius" in out
    assert "FAILED entry point broken = no_such_module_here" in out
    assert "No module named 'no_such_module_here'" in out
    assert "Traceback" not in result.stderr


ENCODE = '''
from celsius_plugin import Celsius
from wrapyfi_like.encoding import Codec
print(" ".join(bytes(frame).hex() for frame in Codec().encode({"t": Celsius(21.5)})))
'''

DECODE = '''
import sys
from wrapyfi_like.encoding import Codec
from wrapyfi_like.exceptions import DecodeError
frames = [bytes.fromhex(frame) for frame in sys.argv[1].split()]
try:
    Codec().decode(frames)
except DecodeError as error:
    print("refused:", error)
codec = Codec(allowed_plugins=["demo.Celsius"])
assert "importlib.metadata" not in sys.modules, "entry points were read at start-up"
value = codec.decode(frames)["t"]
print(type(value).__name__, value)
'''


def test_a_plugin_installed_only_as_an_entry_point_is_found_when_first_needed(tmp_path):
    """The receiving process never imports the plugin itself: the unknown codec id, once the
    listener allows it, makes the codec read the entry points, which it does not do at start-up
    (it costs ~60 ms); a codec id nobody allowed imports nothing."""
    env = installed_with_entry_points(tmp_path, "celsius = celsius_plugin")
    encoded = subprocess.run([sys.executable, "-c", ENCODE], env=env, cwd=ROOT, capture_output=True,
                             text=True, timeout=120, check=True).stdout.strip()
    result = subprocess.run([sys.executable, "-c", DECODE, encoded], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    refused, decoded = result.stdout.strip().split("\n")
    assert refused.startswith("refused: unknown codec id 'demo.Celsius'") and "allowed_plugins" in refused
    assert decoded == "Celsius 21.5"
