"""Wrapyfi's ``wrapyfi.utils.serialization_encoders``, for scripts that write or read Wrapyfi's JSON
themselves: ``json.dumps(value, cls=JsonEncoder)`` and
``json.loads(text, object_hook=JsonDecodeHook().object_hook)``.

Both are the codec of ``wire="wrapyfi"``
(:class:`~wrapyfi_like.middlewares.wrapyfi_zeromq.json_codec.WrapyfiJsonCodec`), so they write
Wrapyfi 0.5.0's markers exactly, raise :class:`~wrapyfi_like.exceptions.EncodeError` for values
that marker set cannot carry exactly, and never unpickle unless given ``wrapyfi_allow_pickle=True``.
"""

from __future__ import annotations

import json
from typing import Any

from wrapyfi_like.middlewares.wrapyfi_zeromq.json_codec import WrapyfiJsonCodec


def _codec(kwargs: dict) -> WrapyfiJsonCodec:
    return WrapyfiJsonCodec(allow_pickle=kwargs.pop("wrapyfi_allow_pickle", False), **kwargs)


class JsonEncoder(json.JSONEncoder):
    """``json.dumps(value, cls=JsonEncoder)``: tuples, sets, datetimes, numpy arrays and the
    plugin types of :mod:`.markers` as Wrapyfi's ``__wrapyfi__`` markers. Like Wrapyfi's,
    ``serializer_kwargs`` go to :class:`json.JSONEncoder`; the other keyword arguments are the
    codec's (``wrapyfi_allow_pickle``, ``allowed_plugins``, torch device mapping)."""

    def __init__(self, serializer_kwargs: dict | None = None, **kwargs: Any) -> None:
        encoder_kwargs = {key: kwargs.pop(key) for key in list(kwargs) if key in _JSON_ENCODER_KWARGS}
        super().__init__(**{**encoder_kwargs, **(serializer_kwargs or {})})
        self._codec = _codec(kwargs)

    def iterencode(self, o: Any, _one_shot: bool = False) -> Any:
        return super().iterencode(self._codec.tree(o), _one_shot)


class JsonDecodeHook:
    """``json.loads(text, object_hook=JsonDecodeHook().object_hook)``: markers become their values;
    an unknown or (without ``wrapyfi_allow_pickle=True``) pickle-based marker raises
    :class:`~wrapyfi_like.exceptions.DecodeError`."""

    def __init__(self, **kwargs: Any) -> None:
        self.object_hook = _codec(kwargs).object_hook


_JSON_ENCODER_KWARGS = frozenset({"skipkeys", "ensure_ascii", "check_circular", "allow_nan", "sort_keys",
                                  "indent", "separators", "default"})
"""What ``json.dumps(..., cls=JsonEncoder, **kw)`` passes on to the encoder."""
