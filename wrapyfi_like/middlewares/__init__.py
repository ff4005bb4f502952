"""The registry of middlewares: name → module with ``PublisherTransport``, ``ListenerTransport``,
``ServerTransport`` and ``ClientTransport``.

Modules are imported on first use, so naming a middleware costs nothing until it is used.

Names Wrapyfi knows but this package does not have (:data:`WRAPYFI_MIDDLEWARES` less
:data:`MIDDLEWARES`), and ``"none"``, are *absent*, not unknown: :func:`is_available` says False and
the connect layer gives such a communicator a no-op stand-in, as Wrapyfi does when a middleware
is not installed. Any other name is a mistake and raises ``ConfigurationError`` with the closest
names.

The *wire* of ``"zeromq"``: ``"native"`` (this package's) or ``"wrapyfi"`` (Wrapyfi 0.5.0's, served
by the ``wrapyfi_zeromq`` module), per communicator (``register(..., wire="wrapyfi")``) or per
process (:data:`WIRE_ENV`); see :func:`middleware_module`.
"""

from __future__ import annotations

import importlib
import os
import threading
from contextlib import contextmanager
from types import ModuleType
from typing import Iterator, Optional

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


WIRES = ("native", "wrapyfi")
WIRE_ENV = "WRAPYFI_LIKE_WIRE"
"""Sets the wire of every ``"zeromq"`` communicator in the process that names none."""
_WIRE_MODULES = {("zeromq", "wrapyfi"): "wrapyfi_like.middlewares.wrapyfi_zeromq"}
"""Which module serves a middleware on a wire other than its native one (not a middleware name of
its own: it is chosen with ``wire``)."""


def wire_setting(wire: Optional[str] = None) -> str:
    """The wire a communicator uses: its own ``wire=``, else :data:`WIRE_ENV`, else ``"native"``;
    a value not in :data:`WIRES` is a ``ConfigurationError`` naming where it came from."""
    source = "wire="
    if wire is None:
        wire, source = os.environ.get(WIRE_ENV, "").strip() or "native", WIRE_ENV
    if wire not in WIRES:
        raise ConfigurationError(f"{source} must be one of {', '.join(WIRES)}, got {wire!r:.40}")
    return wire


def middleware_module(name: str, wire: Optional[str] = None, *, from_environment: bool = False) -> ModuleType:
    """The module serving middleware ``name`` on ``wire``: None is the native wire, unless
    ``from_environment`` (communicators built by the connect layer) lets :data:`WIRE_ENV` decide
    (see :func:`wire_setting`). So tools that build transports themselves (the CLI) stay on the
    native wire whatever the process's setting.

    A redirect (:func:`redirected`) wins over the wire: a class decorated for Wrapyfi's wire is
    still tested in memory. ``wire="wrapyfi"`` given to a middleware that has no such wire is a
    ``ConfigurationError``; the process-wide setting applies only to ``"zeromq"``.
    """
    target = _redirects.get(name, name)
    chosen = wire_setting(wire) if wire is not None or from_environment else "native"
    module = MIDDLEWARES.get(target)
    if chosen != "native" and target == name:
        served = _WIRE_MODULES.get((name, chosen))
        if served is not None:
            module = served
        elif wire is not None:
            raise ConfigurationError(f"wire={wire!r} is a wire of 'zeromq' only, not of {name!r}")
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
