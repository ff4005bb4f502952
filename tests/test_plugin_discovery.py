"""Plugins found through WRAPYFI_PLUGIN_PATHS: Wrapyfi-style and zero-copy ones, broken ones."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from wrapyfi_like.encoding import Codec
from wrapyfi_like.exceptions import DecodeError, PluginError
from wrapyfi_like.utils import plugin_discovery
from wrapyfi_like.utils.core_utils import Plugin, PluginRegistrar


def write_plugin(root, name, source):
    folder = root / "plugins"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(textwrap.dedent(source))


WRAPYFI_STYLE = """
    import base64
    from fractions import Fraction
    from wrapyfi_like.utils import Plugin, PluginRegistrar

    @PluginRegistrar.register(types=(Fraction,))
    class FractionAsText{suffix}(Plugin):
        def __init__(self, **kwargs):
            pass

        def encode(self, obj, *args, **kwargs):
            text = base64.b64encode(f"{{obj.numerator}}/{{obj.denominator}}".encode()).decode("ascii")
            return True, dict(__wrapyfi__=(str(self.__class__.__name__), text))

        def decode(self, obj_type, obj_full, *args, **kwargs):
            return True, Fraction(base64.b64decode(obj_full[1]).decode())
"""

ZERO_COPY = """
    import numpy as np
    from wrapyfi_like.utils.core_utils import Plugin, PluginRegistrar

    class Frame{suffix}:
        def __init__(self, pixels, label):
            self.pixels, self.label = pixels, label

    @PluginRegistrar.register(types=(Frame{suffix},))
    class FramePlugin{suffix}(Plugin):
        codec_id = "tests.Frame{suffix}"

        def __init__(self, scale=1, **kwargs):
            self.scale = scale

        def encode(self, obj, *args, **kwargs):
            return True, {{"__wrapyfi__": (self.codec_id, obj.pixels, {{"label": obj.label}})}}

        def decode(self, obj_type, obj_full, *args, **kwargs):
            _, pixels, meta = obj_full
            return True, Frame{suffix}(pixels * self.scale if self.scale != 1 else pixels, meta["label"])
"""


def test_wrapyfi_style_string_plugin_round_trips(tmp_path, monkeypatch):
    write_plugin(tmp_path, "fraction_text", WRAPYFI_STYLE.format(suffix="A"))
    monkeypatch.setenv("WRAPYFI_PLUGIN_PATHS", str(tmp_path))
    from fractions import Fraction

    codec = Codec()
    value = {"ratio": Fraction(22, 7), "list": [Fraction(1, 3)]}
    assert codec.decode(codec.encode(value)) == value


def test_zero_copy_plugin_payload_travels_out_of_band(tmp_path, monkeypatch):
    write_plugin(tmp_path, "frames", ZERO_COPY.format(suffix="B"))
    monkeypatch.setenv("WRAPYFI_PLUGIN_PATHS", str(tmp_path))
    codec = Codec(scale=1, some_unknown_kwarg=True)
    frame_cls = next(cls for cls in PluginRegistrar.encoder_registry if cls.__name__ == "FrameB")
    pixels = np.arange(1 << 16, dtype=np.uint8)
    frames = codec.encode(frame_cls(pixels, "cam0"))
    assert len(frames) == 2 and np.shares_memory(frames[1], pixels)
    received = bytearray(frames[1])
    result = codec.decode([frames[0], received])
    assert result.label == "cam0"
    assert np.shares_memory(result.pixels, np.frombuffer(received, np.uint8))
    np.testing.assert_array_equal(result.pixels, pixels)


def test_broken_plugin_is_reported_and_does_not_break_the_others(tmp_path, monkeypatch, caplog):
    write_plugin(tmp_path, "a_broken", "raise RuntimeError('plugin exploded')\n")
    write_plugin(tmp_path, "b_good", WRAPYFI_STYLE.format(suffix="C"))
    monkeypatch.setenv("WRAPYFI_PLUGIN_PATHS", str(tmp_path))
    from fractions import Fraction

    codec = Codec()
    assert codec.decode(codec.encode(Fraction(1, 2))) == Fraction(1, 2)
    failures = [f for f in plugin_discovery.load_failures() if "a_broken" in f.path]
    assert failures and "plugin exploded" in failures[0].error
    assert "a_broken" in caplog.text and "plugin exploded" in caplog.text


def test_two_plugins_claiming_one_codec_id_is_an_error():
    @PluginRegistrar.register(types=(type("OnlyHere", (), {}),))
    class First(Plugin):
        codec_id = "tests.duplicate-id"

    with pytest.raises(PluginError, match="tests.duplicate-id"):
        @PluginRegistrar.register(types=(type("AlsoHere", (), {}),))
        class Second(Plugin):
            codec_id = "tests.duplicate-id"


def test_encode_lookup_walks_the_mro_from_the_most_derived_class():
    class Base:
        pass

    class Derived(Base):
        pass

    class Leaf(Derived):
        pass

    @PluginRegistrar.register(types=(Base,))
    class BasePlugin(Plugin):
        codec_id = "tests.mro-base"

        def encode(self, obj, *args, **kwargs):
            return True, {"__wrapyfi__": (self.codec_id, "base")}

        def decode(self, obj_type, obj_full, *args, **kwargs):
            return True, obj_full[1]

    @PluginRegistrar.register(types=(Derived,))
    class DerivedPlugin(BasePlugin):
        codec_id = "tests.mro-derived"

        def encode(self, obj, *args, **kwargs):
            return True, {"__wrapyfi__": (self.codec_id, "derived")}

    codec = Codec()
    assert codec.decode(codec.encode(Leaf())) == "derived"
    assert codec.decode(codec.encode(Base())) == "base"


def test_failing_plugin_decode_is_a_decode_error():
    class Fragile:
        pass

    @PluginRegistrar.register(types=(Fragile,))
    class FragilePlugin(Plugin):
        codec_id = "tests.fragile"

        def encode(self, obj, *args, **kwargs):
            return True, {"__wrapyfi__": (self.codec_id, b"payload")}

        def decode(self, obj_type, obj_full, *args, **kwargs):
            raise KeyError("corrupted")

    codec = Codec()
    with pytest.raises(DecodeError, match="FragilePlugin"):
        codec.decode(codec.encode(Fragile()))


def test_nothing_is_loaded_from_the_current_directory_without_the_variable(tmp_path):
    write_plugin(tmp_path, "sneaky", "import sys\nsys.exit('loaded from the current directory')\n")
    script = ("from wrapyfi_like.encoding import Codec; import sys; Codec(); "
              "assert not [m for m in sys.modules if 'sneaky' in m]")
    env = {k: v for k, v in __import__("os").environ.items() if k != "WRAPYFI_PLUGIN_PATHS"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_importing_the_wrapper_imports_no_heavy_library():
    script = ("import sys, wrapyfi_like.connect.wrapper; "
              "heavy = [m for m in ('torch', 'pandas', 'pyarrow', 'PIL') if m in sys.modules]; "
              "assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
