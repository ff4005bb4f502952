"""Plugins with layouts (``encode_layout``, ``decode_layout``, ``from_layout``): the codec keeps a
stream's packed fields and checked layout, so the next message skips the plugin's encode, its
checks and a msgpack pack or parse. What is kept must give the same bytes and objects as the
plain path, never stand in for a check that depends on the message, stay per codec (a layout may
depend on the plugin's settings) and stay bounded."""

import msgpack
import pytest

from wrapyfi_like.encoding import Codec
from wrapyfi_like.encoding import codec as codec_module
from wrapyfi_like.exceptions import DecodeError, EncodeError
from wrapyfi_like.utils.core_utils import Plugin, PluginRegistrar

pytestmark = pytest.mark.timeout(60)


class _Block:
    """Raw bytes with a name: the shape of a tensor's payload."""

    def __init__(self, data: bytes, name: str = "block", lie: int = 0) -> None:
        self.data = bytearray(data)
        self.name = name
        self.lie = lie  # bytes encode_layout reports beyond the real ones (a broken plugin)


@PluginRegistrar.register(types=(_Block,))
class _BlockPlugin(Plugin):
    codec_id = "tests.layouts.Block"

    def __init__(self, block_suffix: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.suffix = block_suffix
        self.calls = {"encode": 0, "decode_layout": 0, "from_layout": 0}

    def encode(self, obj, *args, **kwargs):
        self.calls["encode"] += 1
        return True, {"__wrapyfi__": (self.codec_id, memoryview(obj.data), obj.name, [len(obj.data)])}

    def encode_layout(self, obj):
        raw = memoryview(obj.data if not obj.lie else bytes(len(obj.data) + obj.lie))
        return raw, (obj.name, len(obj.data))

    def decode(self, obj_type, obj_full, *args, **kwargs):
        return True, self.from_layout(self.decode_layout(obj_full), obj_full[1])

    def decode_layout(self, obj_full):
        self.calls["decode_layout"] += 1
        _, raw, name, shape = obj_full
        if name == "explode":
            raise ValueError("no such block")
        if type(name) is not str or shape != [raw.nbytes]:
            raise DecodeError(f"bad block {name!r:.40} {shape!r:.40}")
        return name + self.suffix

    def from_layout(self, layout, raw):
        self.calls["from_layout"] += 1
        if layout == "late":
            raise RuntimeError("cannot build")
        if layout == "refused":
            raise DecodeError("refused block")
        block = _Block(raw, layout)
        return block


def _plugin(codec: Codec) -> _BlockPlugin:
    return codec.decoder_plugin(_BlockPlugin.codec_id)


def test_a_kept_layout_sends_the_same_bytes_and_skips_the_plugins_encode():
    codec = Codec()
    value = [_Block(b"abcd"), _Block(b"wxyz", "other")]
    first = codec.encode(value)
    calls = _plugin(codec).calls["encode"]
    value[0].data[:] = b"ABCD"  # same layout, new bytes: sent from the object, never from what was kept
    second = codec.encode(value)
    assert _plugin(codec).calls["encode"] == calls
    assert second[0] == first[0] and [bytes(b) for b in second[1:]] == [b"ABCD", b"wxyz"]


def test_a_layout_whose_bytes_do_not_match_what_encode_sends_is_not_kept():
    codec = Codec()
    liar = _Block(b"abcd", "liar", lie=3)
    for _ in range(3):
        header, *buffers = codec.encode(liar)
        assert [bytes(b) for b in buffers] == [b"abcd"]  # encode's own view, every time
        assert codec.decode([header, *buffers]).data == b"abcd"


def test_a_kept_layout_is_decoded_once_and_still_checks_each_message_buffer():
    codec = Codec()
    header, payload = codec.encode(_Block(b"abcdefgh"))
    for _ in range(3):
        assert codec.decode([header, bytearray(payload)]).data == b"abcdefgh"
    assert _plugin(codec).calls["decode_layout"] == 1
    with pytest.raises(DecodeError, match="buffer size"):  # same header, a shorter frame: checked again
        codec.decode([header, bytearray(5)])
    with pytest.raises(DecodeError, match="buffer index 0 out of range"):
        codec.decode([header])


def test_kept_layouts_belong_to_their_codec_and_its_plugin_settings():
    plain, suffixed = Codec(), Codec(block_suffix="-b")
    message = plain.encode(_Block(b"abcd", "x"))
    for _ in range(2):
        assert plain.decode(message).name == "x"
        assert suffixed.decode(message).name == "x-b"


def test_what_a_layout_plugin_raises_reaches_the_caller_as_our_error():
    codec = Codec()
    with pytest.raises(DecodeError, match="_BlockPlugin failed in decode_layout: ValueError: no such block"):
        codec.decode(codec.encode(_Block(b"ab", "explode")))
    message = codec.encode(_Block(b"ab", "late"))
    for _ in range(2):  # the second time from the kept layout
        with pytest.raises(DecodeError, match="failed in from_layout: RuntimeError: cannot build"):
            codec.decode(message)


def test_our_own_errors_from_a_layout_plugin_reach_the_caller_as_they_were_raised(monkeypatch):
    """The codec calls a kept layout's methods without _call_plugin (one call less per message):
    a DecodeError or EncodeError the plugin raises itself still passes unchanged, cause and all."""
    codec = Codec()
    message = codec.encode(_Block(b"ab", "refused"))
    for _ in range(2):  # the second time from the kept layout
        with pytest.raises(DecodeError) as caught:
            codec.decode(message)
        assert str(caught.value) == "refused block"
    cause = ValueError("why")

    def refusing(self, obj):
        raise EncodeError("no view of this block") from cause

    monkeypatch.setattr(_BlockPlugin, "encode_layout", refusing)
    with pytest.raises(EncodeError) as caught:
        Codec().encode(_Block(b"ab"))
    assert str(caught.value) == "no view of this block" and caught.value.__cause__ is cause


def test_an_unhashable_layout_is_an_encode_error_naming_the_plugin(monkeypatch):
    monkeypatch.setattr(_BlockPlugin, "encode_layout", lambda self, obj: (memoryview(obj.data), [obj.name]))
    with pytest.raises(EncodeError, match="_BlockPlugin gave an unhashable layout"):
        Codec().encode(_Block(b"ab"))


def test_kept_layouts_stay_bounded_whatever_peers_send():
    codec = Codec()
    for length in range(3 * codec_module.MAX_KEPT_LAYOUTS):
        data = msgpack.packb([_BlockPlugin.codec_id, msgpack.ExtType(int(codec_module.Ext.MEMORYVIEW),
                                                                     msgpack.packb([0, "B", [length]])),
                              "n", [length]])
        header = b"\x93\x01\x01" + msgpack.packb(msgpack.ExtType(int(codec_module.Ext.PLUGIN), data))
        assert codec.decode([header, bytearray(length)]).data == bytes(length)
        codec.encode(_Block(bytes(length)))
    assert len(codec.plugin_layouts) <= codec_module.MAX_KEPT_LAYOUTS
    assert len(codec_module._PLUGIN_METADATA) <= codec_module.MAX_KEPT_LAYOUTS


def test_what_encode_layout_raises_is_an_encode_error_naming_the_plugin(monkeypatch):
    def broken(self, obj):
        raise RuntimeError("no view")

    monkeypatch.setattr(_BlockPlugin, "encode_layout", broken)
    with pytest.raises(EncodeError, match="_BlockPlugin failed in broken: RuntimeError: no view"):
        Codec().encode(_Block(b"ab"))


def test_a_long_payload_is_decoded_but_its_layout_not_kept(monkeypatch):
    codec = Codec()
    message = codec.encode(_Block(b"abcd", "n" * 100))  # a payload over MAX_KEPT_METADATA bytes
    for _ in range(2):
        assert codec.decode(message).name == "n" * 100
    assert _plugin(codec).calls["decode_layout"] == 2 and not codec.plugin_layouts
