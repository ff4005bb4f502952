"""The codec receives its plugin set from outside, built once per topic; ``encoding/`` itself
does no plugin discovery and no I/O."""

import ast
from pathlib import Path

import numpy as np

from wrapyfi_like.connect.formats import ValueFormat
from wrapyfi_like.encoding import Codec
from wrapyfi_like.utils import plugin_discovery
from wrapyfi_like.utils.plugin_set import PluginSet

ENCODING = Path(__file__).resolve().parent.parent / "wrapyfi_like" / "encoding"
IO_MODULES = {"os", "pathlib", "importlib", "io", "socket", "subprocess", "wrapyfi_like.utils.plugin_discovery"}


def imported_modules(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_no_encoding_module_imports_discovery_or_io():
    for path in ENCODING.glob("*.py"):
        assert not IO_MODULES & set(imported_modules(path)), path.name


def test_a_value_format_builds_one_plugin_set_and_messages_do_no_discovery(monkeypatch):
    fmt = ValueFormat()
    assert isinstance(fmt._codec.plugins, PluginSet)
    assert ValueFormat()._codec.plugins is not fmt._codec.plugins  # one per topic

    def refuse(*args, **kwargs):
        raise AssertionError("plugin paths scanned while a message was encoded or decoded")

    monkeypatch.setattr(plugin_discovery, "load_external_plugins", refuse)
    for serializer in ("binary", "json"):
        codec = Codec(serializer=serializer, plugins=fmt._codec.plugins)
        assert codec.plugins is fmt._codec.plugins
        back = codec.decode(codec.encode({"a": np.arange(3), "t": (1, 2)}))
        assert back["t"] == (1, 2)
