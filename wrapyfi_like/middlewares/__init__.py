"""The registry of middlewares: name → module with ``PublisherTransport``, ``ListenerTransport``,
``ServerTransport`` and ``ClientTransport``.

Modules are imported on first use, so naming a middleware costs nothing until it is used.

Names Wrapyfi knows but this package does not have (:data:`WRAPYFI_MIDDLEWARES` less
:data:`MIDDLEWARES`), and ``"none"``, are *absent*, not unknown: :func:`is_available` says False and
the connect layer gives such a communicator a no-op stand-in, as Wrapyfi does when a middleware
is not installed. Any other name is a mistake and raises ``ConfigurationError`` with the closest
names.
"""

from __future__ import annotations

import importlib
import threading
from contextlib import contextmanager
from types import ModuleType
from typing import Iterator

from wrapyfi_like.exceptions import ConfigurationError

MIDDLEWARES = {
    "zeromq": "wrapyfi_like.middlewares.zeromq",
    "inproc": "wrapyfi_like.middlewares.inproc",
    "zenoh": "wrapyfi_like.middlewares.zenoh",
}

WRAPYFI_MIDDLEWARES = ("yarp", "ros", "ros2", "zeromq", "zenoh", "websocket", "mqtt")
"""Every middleware name Wrapyfi 0.5.0 registers: a script written for Wrapyfi may name any of them."""
NO_MIDDLEWARE = "none"
"""Wrapyfi's explicit "do not communicate" (its fallback): the method runs, nothing is sent."""

_redirects: dict[str, str] = {}
_redirects_lock = threading.Lock()


def middleware_module(name: str) -> ModuleType:
    module = MIDDLEWARES.get(_redirects.get(name, name))
    if module is None:
        raise _unknown(name)
    return importlib.import_module(module)


def is_available(name: str) -> bool:
    """True if ``name`` is a middleware of this package (after redirects); False if it is
    ``"none"`` or a Wrapyfi middleware this package does not have; otherwise
    ``ConfigurationError``, naming the closest middlewares (a misspelt name is never a no-op)."""
    name = _redirects.get(name, name)
    if name in MIDDLEWARES:
        return True
    if name == NO_MIDDLEWARE or name in WRAPYFI_MIDDLEWARES:
        return False
    raise _unknown(name)


def _unknown(name: object) -> ConfigurationError:
    import difflib

    known = sorted({*MIDDLEWARES, *WRAPYFI_MIDDLEWARES, NO_MIDDLEWARE})
    close = difflib.get_close_matches(str(name), known, n=3) if isinstance(name, str) else []
    hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
    return ConfigurationError(f"unknown middleware {name!r}; {hint}available: {', '.join(sorted(MIDDLEWARES))}")


@contextmanager
def redirected(name: str, to: str) -> Iterator[None]:
    """Serve communicators created for middleware ``name`` with middleware ``to`` inside the block.

    Why: a class decorated for ``"zeromq"`` can then be unit-tested in memory without editing it
    (:func:`wrapyfi_like.testing.inproc_middleware`). Blocks nest; each restores what it found.
    """
    if to not in MIDDLEWARES:
        raise ConfigurationError(f"unknown middleware {to!r}; available: {', '.join(sorted(MIDDLEWARES))}")
    with _redirects_lock:
        previous = _redirects.get(name)
        _redirects[name] = to
    try:
        yield
    finally:
        with _redirects_lock:
            if previous is None:
                _redirects.pop(name, None)
            else:
                _redirects[name] = previous
