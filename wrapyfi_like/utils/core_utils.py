"""The plugin API, with Wrapyfi's names and shapes so that Wrapyfi plugins work unchanged.

A plugin turns one kind of object into ``{"__wrapyfi__": (codec_id, payload, *extra)}`` and back.
Wrapyfi plugins return a ``str`` payload (base64 text); ours may also return bytes-like objects or
numpy arrays anywhere in the tuple, and the codec then sends those as separate zero-copy frames.

Registration is by codec id (the first element of the tuple). An id must belong to one plugin
only: two different classes claiming the same id is a :class:`PluginError`, because a message
could otherwise be decoded by the wrong code. For encoding, the first plugin to claim a type keeps
it; a later claim is logged and ignored, so a user's own plugin (loaded first) wins over a built-in
one (loaded lazily, when an object of its library is first seen).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Iterable, Optional

from wrapyfi_like.exceptions import PluginError

logger = logging.getLogger("wrapyfi_like.plugins")


class Plugin:
    """Base class of every encoding plugin.

    Subclasses implement :meth:`encode` and :meth:`decode`. Their constructor receives the
    communicator's kwargs (``load_torch_device``, ``jpg`` …) and must accept, and ignore, the ones it
    does not know: take ``**kwargs``.
    """

    def __init__(self, **kwargs: Any) -> None:
        pass

    def encode(self, obj: Any, *args: Any, **kwargs: Any) -> tuple[bool, dict]:
        """Return ``(True, {"__wrapyfi__": (codec_id, payload, *extra)})``, or ``(False, None)``."""
        raise NotImplementedError

    def decode(self, obj_type: str, obj_full: tuple, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        """Rebuild the object from ``obj_full`` (the tuple encode produced); return ``(True, obj)``."""
        raise NotImplementedError


def plugin_codec_id(cls: type) -> str:
    """The id a plugin class is registered under: ``codec_id`` if it declares one, else its name.

    Wrapyfi keys decoders by the plugin class name, and Wrapyfi plugins put that name first in
    their tuple, so the class name is the compatible default.
    """
    return getattr(cls, "codec_id", None) or cls.__name__


class PluginRegistrar:
    """Process-wide tables of plugin classes: by type for encoding, by codec id for decoding."""

    encoder_registry: dict[type, type] = {}
    decoder_registry: dict[str, type] = {}
    generation = 0
    """Counts registrations, so a codec knows when the plugins it looked up and kept may have changed."""
    _lock = threading.Lock()

    @staticmethod
    def register(types: Optional[Iterable[type]] = None):
        """Class decorator: register a plugin for ``types`` (a tuple of classes) and for its id.

        ``types=None`` registers nothing, as in Wrapyfi, where plugins pass ``None`` when their
        library is not installed.
        """

        def wrapper(cls: type) -> type:
            if types is not None:
                PluginRegistrar._add(cls, tuple(types))
            return cls

        return wrapper

    @staticmethod
    def _add(cls: type, types: tuple[type, ...]) -> None:
        codec_id = plugin_codec_id(cls)
        with PluginRegistrar._lock:
            known = PluginRegistrar.decoder_registry.get(codec_id)
            if known is not None and _qualified(known) != _qualified(cls):
                raise PluginError(
                    f"plugin {_qualified(cls)} claims codec id {codec_id!r}, "
                    f"which {_qualified(known)} already has; give one of them another id"
                )
            PluginRegistrar.decoder_registry[codec_id] = cls
            for cls_type in types:
                owner = PluginRegistrar.encoder_registry.get(cls_type)
                if owner is not None and _qualified(owner) != _qualified(cls):
                    logger.warning(
                        "plugin %s also claims type %s; keeping %s, which registered it first",
                        _qualified(cls), _qualified(cls_type), _qualified(owner),
                    )
                    continue
                PluginRegistrar.encoder_registry[cls_type] = cls
            PluginRegistrar.generation += 1  # last: a lookup that saw half of this keeps the old count

    @staticmethod
    def encoder_for(obj_type: type) -> Optional[type]:
        """The plugin class for ``obj_type``, walking its MRO from the most derived class."""
        registry = PluginRegistrar.encoder_registry
        for cls in obj_type.__mro__[:-1]:
            plugin = registry.get(cls)
            if plugin is not None:
                return plugin
        return None


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# -- what ``from wrapyfi.utils.core_utils import *`` gives a Wrapyfi plugin ---------------------------
# Wrapyfi's plugin files import their base classes with a star import and then use some of that
# module's other names too (its zarr plugin calls ``os``); these make the same star import work here.
# Wrapyfi's middleware-registry internals (deepcopy, match_args, dynamic_module_import,
# scan_external, lock) are not plugin API and are not provided.

import glob as _glob_module
import importlib
import importlib.util
import inspect as _inspect
import os
import sys
from pathlib import Path
from typing import Callable, List, Union

glob = _glob_module.glob
WRAPYFI_PLUGIN_PATHS = "WRAPYFI_PLUGIN_PATHS"
"""The environment variable naming folders whose ``plugins/*.py`` are loaded."""
WRAPYFI_MWARE_PATHS = "WRAPYFI_MWARE_PATHS"
"""Wrapyfi's variable for external middlewares; read by nothing here (no external middlewares)."""


class SingletonOptimized(type):
    """Metaclass: the first instance of a class is the only one (thread-safe), as in Wrapyfi."""

    _instances: dict = {}
    _singleton_lock = threading.Lock()

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        instance = SingletonOptimized._instances.get(cls)
        if instance is None:
            with SingletonOptimized._singleton_lock:
                instance = SingletonOptimized._instances.get(cls)
                if instance is None:
                    instance = SingletonOptimized._instances[cls] = super().__call__(*args, **kwargs)
        return instance


def get_default_args(fnc: Callable[..., Any]) -> dict:
    """``{parameter: default}`` for every parameter of ``fnc`` that has a default."""
    return {name: param.default for name, param in _inspect.signature(fnc).parameters.items()
            if param.default is not param.empty}
