"""The conformance suite itself: it passes a sound plugin and fails broken ones."""

import base64

import numpy as np
import pytest

from wrapyfi_like.exceptions import DecodeError
from wrapyfi_like.testing import PluginConformance
from wrapyfi_like.utils.core_utils import Plugin, PluginRegistrar


class Samples:
    """A value type for these tests: a name and some float samples."""

    def __init__(self, name, values):
        self.name = name
        self.values = np.asarray(values, dtype=np.float64)


class LaxSamples(Samples):
    pass


class TextSamples(Samples):
    pass


@PluginRegistrar.register(types=(Samples,))
class SoundSamplesPlugin(Plugin):
    codec_id = "tests.conformance.Samples"

    def encode(self, obj, *args, **kwargs):
        return True, {"__wrapyfi__": (self.codec_id, obj.values.view(np.uint8).reshape(-1), obj.name,
                                      len(obj.values))}

    def decode(self, obj_type, obj_full, *args, **kwargs):
        if len(obj_full) != 4 or not isinstance(obj_full[2], str) or type(obj_full[3]) is not int:
            raise DecodeError("bad Samples payload")
        raw = obj_full[1]
        if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8 or raw.nbytes != 8 * obj_full[3]:
            raise DecodeError("Samples data does not match its length")
        return True, Samples(obj_full[2], raw.view(np.float64))


@PluginRegistrar.register(types=(LaxSamples,))
class LaxSamplesPlugin(Plugin):
    """Broken: accepts buffers of any length, so a cut payload decodes to fewer samples."""

    codec_id = "tests.conformance.LaxSamples"

    def encode(self, obj, *args, **kwargs):
        return True, {"__wrapyfi__": (self.codec_id, obj.values.view(np.uint8).reshape(-1), obj.name)}

    def decode(self, obj_type, obj_full, *args, **kwargs):
        raw = obj_full[1]
        return True, LaxSamples(str(obj_full[2]), np.frombuffer(bytes(raw)[: len(raw) // 8 * 8]))


class RigidSamplesPlugin(SoundSamplesPlugin):
    """Broken: its constructor rejects kwargs it does not know.

    Not registered: every codec builds every registered plugin, so registering it would break
    other tests' codecs.
    """

    codec_id = "tests.conformance.RigidSamples"

    def __init__(self):
        super().__init__()



@PluginRegistrar.register(types=(TextSamples,))
class TextSamplesPlugin(Plugin):
    """The Wrapyfi way: the payload is base64 text inside the header."""

    codec_id = "tests.conformance.TextSamples"

    def encode(self, obj, *args, **kwargs):
        return True, {"__wrapyfi__": (self.codec_id, base64.b64encode(obj.values.tobytes()).decode("ascii"))}

    def decode(self, obj_type, obj_full, *args, **kwargs):
        if len(obj_full) != 2 or not isinstance(obj_full[1], str):
            raise DecodeError("bad TextSamples payload")
        return True, TextSamples("", np.frombuffer(base64.b64decode(obj_full[1], validate=True)))


class _SamplesSuite(PluginConformance):
    kind = Samples

    def samples(self):
        return {"three": self.kind("abc", [1.0, 2.5, -3.0]), "one": self.kind("", [np.nan])}

    def assert_equal(self, expected, actual):
        assert type(actual) is type(expected)
        np.testing.assert_array_equal(actual.values, expected.values)

    def large_sample(self):
        return self.kind("big", np.arange(2**18, dtype=np.float64))


class TestSoundPluginPasses(_SamplesSuite):
    plugin = SoundSamplesPlugin


class TestWrapyfiStylePluginPassesWithoutOutOfBand(_SamplesSuite):
    plugin = TextSamplesPlugin
    kind = TextSamples
    out_of_band = False


def test_lax_plugin_fails_the_corruption_check():
    class Suite(_SamplesSuite):
        plugin = LaxSamplesPlugin
        kind = LaxSamples

    Suite().test_round_trip()
    with pytest.raises(AssertionError, match="cut by one item"):
        Suite().test_corrupted_payload_raises_decode_error()


class ExitingSamples(Samples):
    pass


@PluginRegistrar.register(types=(ExitingSamples,))
class ExitingSamplesPlugin(Plugin):
    """Broken: ends the process on a payload it does not like (as a C library's abort() would)."""

    codec_id = "tests.conformance.ExitingSamples"

    def encode(self, obj, *args, **kwargs):
        return True, {"__wrapyfi__": (self.codec_id, obj.values.tobytes(), obj.name)}

    def decode(self, obj_type, obj_full, *args, **kwargs):
        if len(obj_full) != 3 or not isinstance(obj_full[1], bytes) or len(obj_full[1]) % 8:
            raise SystemExit("bad payload")
        return True, ExitingSamples(obj_full[2], np.frombuffer(obj_full[1]))


def test_plugin_ending_the_process_on_bad_input_fails_the_damage_check():
    class Suite(_SamplesSuite):
        plugin = ExitingSamplesPlugin
        kind = ExitingSamples

    Suite().test_round_trip()
    with pytest.raises(AssertionError, match="SystemExit: bad payload instead of DecodeError"):
        Suite().test_damaged_messages_raise_only_decode_error()


def test_plugin_rejecting_unknown_kwargs_fails():
    class Suite(_SamplesSuite):
        plugin = RigidSamplesPlugin

    with pytest.raises(TypeError):
        Suite().test_unknown_kwargs_accepted()


def test_payload_in_header_fails_the_large_check():
    class Suite(_SamplesSuite):
        plugin = TextSamplesPlugin
        kind = TextSamples

    with pytest.raises(AssertionError, match="frames of its own"):
        Suite().test_large()


def test_plugin_handling_another_type_fails():
    class Suite(_SamplesSuite):
        plugin = LaxSamplesPlugin

    with pytest.raises(AssertionError, match="handled by SoundSamplesPlugin"):
        Suite().test_round_trip()
