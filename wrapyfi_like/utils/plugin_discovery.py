"""Finding plugins: built-in ones lazily, external ones from ``WRAPYFI_PLUGIN_PATHS`` and entry points.

Built-in plugins live in the top-level ``plugins/`` folder, installed as ``wrapyfi_like.plugins``.
Their index (:data:`wrapyfi_like.plugins.BUILTIN_PLUGINS`) says which libraries, codec ids and
kwargs each serves, so a plugin module (and the heavy library it imports) is loaded only when an
object of that library is first encoded, its codec id first decoded (and the codec allows it: see
:class:`wrapyfi_like.encoding.Codec`), or its kwargs first given.
Importing wrapyfi_like therefore never imports torch, pandas, pyarrow or PIL.

External plugins are every ``<path>/plugins/*.py`` for each path in ``WRAPYFI_PLUGIN_PATHS``
(``os.pathsep``-separated). Nothing is read from the current directory when the variable is unset.
Installed packages can also ship plugins as entry points in the :data:`ENTRY_POINT_GROUP` group
(``my_plugin = my_package.my_module``); each is imported once, when the first codec is built.
A module that fails to import is logged with its path and error, remembered in
:func:`load_failures`, and does not stop the others from loading.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Iterable, NamedTuple

from wrapyfi_like.utils.core_utils import PluginRegistrar

PLUGIN_PATHS_ENV = "WRAPYFI_PLUGIN_PATHS"
BUILTIN_PACKAGE = "wrapyfi_like.plugins"
ENTRY_POINT_GROUP = "wrapyfi_like.plugins"

logger = logging.getLogger("wrapyfi_like.plugins")


class BuiltinPlugin(NamedTuple):
    """One entry of the built-in plugin index."""

    module: str
    libraries: tuple[str, ...]
    codec_ids: tuple[str, ...]
    kwargs: tuple[str, ...] = ()


class LoadFailure(NamedTuple):
    path: str
    error: str


class LoadedPlugin(NamedTuple):
    """A registered plugin class, where it came from and the types it encodes (for listings)."""

    codec_id: str
    name: str
    source: str
    types: tuple[str, ...]


_lock = threading.RLock()
_attempted_modules: set[str] = set()
_scanned_paths: set[str] = set()
_entry_points_loaded = False
_failures: list[LoadFailure] = []


def builtin_index() -> tuple[BuiltinPlugin, ...]:
    from wrapyfi_like.plugins import BUILTIN_PLUGINS

    return BUILTIN_PLUGINS


def load_failures() -> list[LoadFailure]:
    """Every plugin module that failed to import in this process, with its error."""
    with _lock:
        return list(_failures)


def loaded_plugins() -> list[LoadedPlugin]:
    """Every plugin registered in this process, sorted by codec id."""
    found = []
    for codec_id, cls in sorted(PluginRegistrar.decoder_registry.items()):
        module = sys.modules.get(cls.__module__)
        types = tuple(sorted(f"{t.__module__}.{t.__qualname__}"
                             for t, owner in PluginRegistrar.encoder_registry.items() if owner is cls))
        found.append(LoadedPlugin(codec_id, cls.__qualname__, getattr(module, "__file__", None) or cls.__module__, types))
    return found


def load_external_plugins() -> None:
    """Import plugins from any ``WRAPYFI_PLUGIN_PATHS`` entry not scanned yet in this process."""
    for entry in os.environ.get(PLUGIN_PATHS_ENV, "").split(os.pathsep):
        if not entry:
            continue
        folder = (Path(entry).expanduser().resolve() / "plugins")
        with _lock:
            if str(folder) in _scanned_paths:
                continue
            _scanned_paths.add(str(folder))
        if not folder.is_dir():
            logger.warning("%s names %s, which has no plugins/ folder", PLUGIN_PATHS_ENV, entry)
            continue
        for path in sorted(folder.glob("*.py")):
            _import_file(path)


def load_entry_point_plugins() -> bool:
    """Import the plugins of every entry point in :data:`ENTRY_POINT_GROUP`, the first time only;
    True if this call imported any. Codecs call it only when no loaded plugin handles a type or a
    codec id, because reading installed packages' metadata costs ~60 ms at start-up."""
    global _entry_points_loaded
    with _lock:
        if _entry_points_loaded:
            return False
        _entry_points_loaded = True
    import importlib.metadata

    entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    for entry_point in entry_points:
        try:
            entry_point.load()
        except Exception as error:  # a broken plugin must not break the others
            _record_failure(f"entry point {entry_point.name} = {entry_point.value}", error)
    return bool(entry_points)


def _import_file(path: Path) -> None:
    import hashlib  # only when a plugin folder is named: it costs start-up time

    digest = hashlib.sha1(str(path.parent).encode()).hexdigest()[:12]
    name = f"wrapyfi_like.external_plugins.p{digest}.{path.stem}"
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except Exception as error:  # a broken plugin must not break the others
        sys.modules.pop(name, None)
        _record_failure(str(path), error)


def _import_builtin(entry: BuiltinPlugin) -> None:
    module = f"{BUILTIN_PACKAGE}.{entry.module}"
    # imported under the lock: a second thread needing the same plugin waits until it has
    # registered, instead of finding it "attempted" and its codec id still unknown
    with _lock:
        if module in _attempted_modules:
            return
        try:
            importlib.import_module(module)
        except Exception as error:
            _record_failure(module, error)
        finally:
            _attempted_modules.add(module)


def _record_failure(where: str, error: BaseException) -> None:
    message = f"{type(error).__name__}: {error}"
    logger.error("plugin %s failed to load: %s", where, message)
    with _lock:
        _failures.append(LoadFailure(where, message))


def load_builtin_for_type(obj_type: type) -> bool:
    """Load the built-in plugin for ``obj_type``'s library; True if one was found to load."""
    libraries = {cls.__module__.split(".")[0] for cls in obj_type.__mro__[:-1]}
    return _load_matching(entry for entry in builtin_index() if libraries & set(entry.libraries))


def builtin_for_id(codec_id: str) -> BuiltinPlugin | None:
    """The built-in plugin index entry that decodes ``codec_id``, if any (imports nothing)."""
    return next((entry for entry in builtin_index() if codec_id in entry.codec_ids), None)


def load_builtin_for_id(codec_id: str) -> bool:
    """Load the built-in plugin that decodes ``codec_id``; True if one was found to load."""
    return _load_matching(entry for entry in builtin_index() if codec_id in entry.codec_ids)


def load_builtins_for_kwargs(kwargs: Iterable[str]) -> None:
    """Load the built-in plugins that take any of ``kwargs``, so their settings are checked now."""
    names = set(kwargs)
    _load_matching(entry for entry in builtin_index() if names & set(entry.kwargs))


def load_all_builtins() -> list[BuiltinPlugin]:
    """Load every built-in plugin whose libraries are installed (for listings; the data path loads
    them lazily); return the others. A library that is not installed is an optional extra left
    out, not a failure: most users install a few of them."""
    installed, missing = [], []
    for entry in builtin_index():
        has_libraries = all(importlib.util.find_spec(library) is not None for library in entry.libraries)
        (installed if has_libraries else missing).append(entry)
    _load_matching(installed)
    return missing


def _load_matching(entries: Iterable[BuiltinPlugin]) -> bool:
    found = False
    for entry in entries:
        _import_builtin(entry)
        found = True
    return found
