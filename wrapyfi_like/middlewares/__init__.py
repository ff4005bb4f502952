"""The registry of middlewares: name → module with ``PublisherTransport``, ``ListenerTransport``,
``ServerTransport`` and ``ClientTransport``.

Modules are imported on first use, so naming a middleware costs nothing until it is used.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from wrapyfi_like.exceptions import ConfigurationError

MIDDLEWARES = {"zeromq": "wrapyfi_like.middlewares.zeromq"}


def middleware_module(name: str) -> ModuleType:
    module = MIDDLEWARES.get(name)
    if module is None:
        raise ConfigurationError(
            f"unknown middleware {name!r}; available: {', '.join(sorted(MIDDLEWARES))}"
        )
    return importlib.import_module(module)
