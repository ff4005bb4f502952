"""Which wire a communicator speaks: its transport and codec follow its middleware's module.

``wire="wrapyfi"`` (or ``WRAPYFI_LIKE_WIRE=wrapyfi``) serves ``"zeromq"`` communicators with
:mod:`wrapyfi_like.middlewares.wrapyfi_zeromq`, whose ``CODEC`` is Wrapyfi's JSON and whose
transports take the ``socket_*`` kwargs (on the native wire those have no effect).
"""

from __future__ import annotations

from typing import Any, Optional

from wrapyfi_like.exceptions import ConfigurationError
from wrapyfi_like.middlewares import middleware_module


def wire_codec(middleware: str, wire: Optional[str], data_type: str, allow_pickle: bool, typed: Any,
               kwargs: Optional[dict] = None) -> Any:
    """The codec of ``middleware``'s module on ``wire`` for ``data_type``, or None for our own.

    ``allow_pickle`` (the ``wrapyfi_allow_pickle`` kwarg) lets that codec decode Wrapyfi's
    pickle-based markers: unsafe, an explicit opt-in. ``kwargs`` (plugin settings such as
    ``load_torch_device``) go to that codec. ``typed`` (``message_type`` or
    ``serializers``) needs our codec: Wrapyfi's JSON has no place for it.
    """
    codec = getattr(middleware_module(middleware, wire, from_environment=True), "CODEC", None)
    if codec is None:
        if allow_pickle:
            raise ConfigurationError("wrapyfi_allow_pickle applies to Wrapyfi's wire only (wire='wrapyfi')")
        return None
    if typed:
        raise ConfigurationError("message_type and serializers need the native wire; Wrapyfi's wire has no place "
                                 "for them")
    return codec(data_type, allow_pickle=bool(allow_pickle), **(kwargs or {}))


def transports(middleware: str, wire: Optional[str], sockets: Optional[dict]) -> tuple[Any, dict]:
    """The middleware's module on ``wire``, and the ``socket_*`` kwargs its transports take."""
    module = middleware_module(middleware, wire, from_environment=True)
    taken = getattr(module, "SOCKET_KWARGS", ())
    return module, {key: value for key, value in (sockets or {}).items() if key in taken}
