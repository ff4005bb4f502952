"""A topic's plugin set: which plugin encodes each type and decodes each codec id.

Built once per topic (by the connect layer, or by a :class:`~wrapyfi_like.encoding.Codec` given
none) and handed to the codec, so the codec itself never scans plugin paths or imports modules:
all plugin discovery and its I/O happen here. Discovery runs when the set is built (external
plugin paths, the built-in plugins whose kwargs are given) and, lazily, when a type or codec id
is first met (a built-in plugin for a library the process has imported; entry points).

A received codec id never makes this process import a library: decoding loads a plugin only if
its library is already imported or its codec id is in ``allowed_plugins`` (e.g.
``allowed_plugins=["torch.Tensor"]``, the only way to let received messages load an entry-point
plugin).
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Iterable, Optional

from wrapyfi_like.exceptions import ConfigurationError, DecodeError, PluginError
from wrapyfi_like.logs import truncate
from wrapyfi_like.utils import plugin_discovery
from wrapyfi_like.utils.core_utils import Plugin, PluginRegistrar

PLUGIN_GUIDE = "docs/plugins.md"


class PluginSet:
    """Plugin instances built once with their kwargs (device maps, image settings …), found per
    type and per codec id. Thread-safe."""

    def __init__(self, allowed_plugins: Iterable[str] = (), **plugin_kwargs: Any) -> None:
        names = () if isinstance(allowed_plugins, str) else tuple(allowed_plugins)
        if isinstance(allowed_plugins, str) or not all(isinstance(name, str) for name in names):
            raise ConfigurationError(
                f"allowed_plugins must be a list of codec ids such as ['torch.Tensor'], got {allowed_plugins!r:.200}"
            )
        self._allowed = frozenset(names)
        self._plugin_kwargs = plugin_kwargs
        self._plugins: dict[type, Plugin] = {}
        # Plugins found per type and per codec id, each with the registrar's generation at the
        # lookup: a message then finds its plugin in one step instead of an MRO walk and two
        # tables, and a plugin registered later (a more derived type) is still found.
        self._encoders: dict[type, tuple[int, Plugin]] = {}
        self._decoders: dict[str, tuple[int, Plugin]] = {}
        self._lock = threading.Lock()
        plugin_discovery.load_external_plugins()
        plugin_discovery.load_builtins_for_kwargs(plugin_kwargs)
        for plugin_cls in set(PluginRegistrar.decoder_registry.values()):
            self._plugin(plugin_cls)

    def encoder_plugin(self, obj_type: type) -> Optional[Plugin]:
        found = self._encoders.get(obj_type)
        generation = PluginRegistrar.generation
        if found is not None and found[0] == generation:
            return found[1]
        plugin_cls = PluginRegistrar.encoder_for(obj_type)
        if plugin_cls is None and (plugin_discovery.load_builtin_for_type(obj_type)
                                   or plugin_discovery.load_entry_point_plugins()):
            plugin_cls = PluginRegistrar.encoder_for(obj_type)
        if plugin_cls is None:
            return None
        plugin = self._plugin(plugin_cls)
        self._encoders[obj_type] = (generation, plugin)
        return plugin

    def decoder_plugin(self, codec_id: str) -> Plugin:
        found = self._decoders.get(codec_id)
        generation = PluginRegistrar.generation
        if found is not None and found[0] == generation:
            return found[1]
        plugin_cls = PluginRegistrar.decoder_registry.get(codec_id)
        if plugin_cls is None:
            plugin_cls = self._load_decoder(codec_id)
        plugin = self._plugin(plugin_cls)
        self._decoders[codec_id] = (generation, plugin)
        return plugin

    def _load_decoder(self, codec_id: str) -> type:
        """The plugin class for a received ``codec_id``, imported only if the rule in the class
        docstring allows it; otherwise a :class:`DecodeError` saying how to allow it."""
        allowed = codec_id in self._allowed
        builtin = plugin_discovery.builtin_for_id(codec_id)
        if builtin is not None and (allowed or all(lib in sys.modules for lib in builtin.libraries)):
            plugin_discovery.load_builtin_for_id(codec_id)
        elif allowed:
            plugin_discovery.load_entry_point_plugins()
        plugin_cls = PluginRegistrar.decoder_registry.get(codec_id)
        if plugin_cls is not None:
            return plugin_cls
        shown = truncate(repr(codec_id))
        if builtin is not None and not allowed:
            raise DecodeError(
                f"codec id {shown} needs the {builtin.module} plugin, which would import "
                f"{', '.join(builtin.libraries)}: a received message loads a plugin only if its library "
                f"is already imported or the listener allows it, e.g. allowed_plugins=[{codec_id!r}] "
                f"in listener_kwargs ({PLUGIN_GUIDE})"
            )
        raise DecodeError(
            f"unknown codec id {shown}: the sender used a plugin this process does not have; install it "
            f"(WRAPYFI_PLUGIN_PATHS, or an entry point named in allowed_plugins) ({PLUGIN_GUIDE})"
        )

    def _plugin(self, plugin_cls: type) -> Plugin:
        plugin = self._plugins.get(plugin_cls)
        if plugin is None:
            with self._lock:
                plugin = self._plugins.get(plugin_cls)
                if plugin is None:
                    plugin = self._plugins[plugin_cls] = _construct(plugin_cls, self._plugin_kwargs)
        return plugin



def _construct(plugin_cls: type, kwargs: dict) -> Plugin:
    try:
        return plugin_cls(**kwargs)
    except TypeError as error:
        raise PluginError(
            f"plugin {plugin_cls.__name__} could not be built with kwargs {sorted(kwargs)}: {error}; "
            "a plugin's __init__ must accept **kwargs it does not use"
        ) from error
