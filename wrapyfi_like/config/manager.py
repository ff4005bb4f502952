"""``ConfigManager``: Wrapyfi's YAML mode files, ``{ClassName: {method_name: mode or [modes]}}``.

Load one before creating instances::

    ConfigManager("modes.yml")          # or ConfigManager({"Notifier": {"exchange": "publish"}})

Every :class:`~wrapyfi_like.connect.wrapper.MiddlewareCommunicator` instance of a named class then
gets the listed modes, as if ``activate_communication(method, mode)`` had been called: in its
``__init__``, or at its first ``activate_communication`` or decorated call when a subclass does not
call ``super().__init__()``. Explicit ``activate_communication`` calls made afterwards win. A list
of modes gives the n-th instance the n-th mode.

As in Wrapyfi, the manager is a singleton: ``ConfigManager(None)`` (or no argument) returns the
configuration in effect. Unlike Wrapyfi, constructing it again with a new file or dict replaces
the configuration (and says so in the log) instead of silently keeping the first one.

Mistakes are reported, never ignored: a mode that does not exist or a malformed file raises
:class:`~wrapyfi_like.exceptions.ConfigurationError` at load; a method name the class does not have
(or has without a ``register`` decorator) raises it when the first instance of that class is
configured; a class name that matches no communicator class is warned about, with the closest
names, when the first instance of any communicator class is configured (classes may be defined
after the file is loaded, so this cannot be an error at load time).
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from typing import Any, Iterable, Optional, Union

from wrapyfi_like.config.modes import MODES
from wrapyfi_like.exceptions import ConfigurationError

logger = logging.getLogger("wrapyfi_like.config")


class ConfigManager:
    """The mode configuration in effect for this process."""

    _current: Optional["ConfigManager"] = None
    _lock = threading.Lock()

    def __new__(cls, config: Union[str, os.PathLike, dict, None] = None, **_: Any) -> "ConfigManager":
        with cls._lock:
            if config is None:
                if cls._current is None:
                    cls._current = cls._create({}, "no configuration")
                return cls._current
            if isinstance(config, dict):
                manager = cls._create(config, "a dict")
            elif isinstance(config, (str, os.PathLike)):
                manager = cls._create(_load_file(config), os.fspath(config))
            else:
                raise ConfigurationError(
                    f"ConfigManager takes a YAML file path or a dict, got {type(config).__name__}"
                )
            if cls._current is not None and cls._current.config:
                logger.info("replacing the mode configuration from %s with %s",
                            cls._current.source, manager.source)
            cls._current = manager
            logger.info("loaded mode configuration from %s: %s", manager.source, manager.config)
            return manager

    def __init__(self, config: Union[str, os.PathLike, dict, None] = None, **_: Any) -> None:
        pass  # all set up in __new__, which may return the existing instance

    @classmethod
    def _create(cls, config: Any, source: str) -> "ConfigManager":
        manager = object.__new__(cls)
        manager.config = _validated(config, source)
        manager.source = source
        manager._classes_checked = False
        return manager

    @classmethod
    def active(cls) -> Optional["ConfigManager"]:
        """The configuration in effect, or None if none was loaded (never creates one)."""
        return cls._current

    @classmethod
    def reset(cls) -> None:
        """Forget the configuration in effect (for tests and long-lived processes)."""
        with cls._lock:
            cls._current = None

    def modes_for(self, class_name: str) -> dict:
        """``{method_name: mode or [modes]}`` for instances of ``class_name``."""
        return self.config.get(class_name, {})

    def check_class_names(self, known: Iterable[str]) -> None:
        """Warn, once, about configured class names that are not among ``known``."""
        if self._classes_checked:
            return
        self._classes_checked = True
        known = sorted(set(known))
        for name in self.config:
            if name not in known:
                close = _close_matches(name, known)
                message = (f"the mode configuration from {self.source} names class {name!r}, which is "
                           "not a MiddlewareCommunicator class defined so far"
                           + (f"; did you mean {', '.join(map(repr, close))}?" if close else ""))
                logger.warning(message)
                warnings.warn(message, UserWarning, stacklevel=4)

    def method_typo_error(self, class_name: str, method: str, decorated: Iterable[str]) -> ConfigurationError:
        decorated = sorted(decorated)
        close = _close_matches(method, decorated)
        hint = f"did you mean {', '.join(map(repr, close))}?" if close else (
            f"its decorated methods are {', '.join(decorated) or 'none'}")
        return ConfigurationError(
            f"the mode configuration from {self.source} names method {method!r} of class {class_name!r}, "
            f"which has no such method decorated with register; {hint}"
        )


def _close_matches(name: str, known: Iterable[str]) -> list[str]:
    import difflib

    return difflib.get_close_matches(name, known, n=3)


def _load_file(path: Union[str, os.PathLike]) -> Any:
    import yaml  # here, not at the top: importing PyYAML is a quarter of our import time

    try:
        with open(path, encoding="utf-8") as stream:
            return yaml.safe_load(stream) or {}
    except OSError as error:
        raise ConfigurationError(f"cannot read the mode configuration {os.fspath(path)!r}: {error}") from None
    except yaml.YAMLError as error:
        raise ConfigurationError(f"{os.fspath(path)!r} is not valid YAML: {error}") from None


def _validated(config: Any, source: str) -> dict:
    if not isinstance(config, dict):
        raise ConfigurationError(f"the mode configuration from {source} must map class names to methods")
    for class_name, methods in config.items():
        if not isinstance(class_name, str) or not isinstance(methods, dict):
            raise ConfigurationError(
                f"the mode configuration from {source}: {class_name!r} must map method names to modes"
            )
        for method, mode in methods.items():
            for each in (mode if isinstance(mode, list) else [mode]):
                if each not in MODES:
                    raise ConfigurationError(
                        f"the mode configuration from {source}: {class_name}.{method} has unknown mode "
                        f"{each!r}; available: {', '.join(map(str, MODES))}"
                    )
    return config
