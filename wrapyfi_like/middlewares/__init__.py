"""The registry of middlewares: name → module with ``PublisherTransport``, ``ListenerTransport``,
``ServerTransport`` and ``ClientTransport``.

Modules are imported on first use, so naming a middleware costs nothing until it is used.
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

_redirects: dict[str, str] = {}
_redirects_lock = threading.Lock()


def middleware_module(name: str) -> ModuleType:
    module = MIDDLEWARES.get(_redirects.get(name, name))
    if module is None:
        raise ConfigurationError(
            f"unknown middleware {name!r}; available: {', '.join(sorted(MIDDLEWARES))}"
        )
    return importlib.import_module(module)


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
