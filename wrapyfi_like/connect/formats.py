"""A value format: one returned value's data type and codec, built once and reused per message.

Publishers and listeners pair a format with a pub/sub socket; servers and clients pair several
(one per value a method returns) with one request/reply socket.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional, Sequence

from wrapyfi_like import annotations
from wrapyfi_like.data_types import NativeObject, data_type_class
from wrapyfi_like.encoding import Codec
from wrapyfi_like.encoding.typed_fast import fast_path
from wrapyfi_like.exceptions import ConfigurationError, DecodeError, ValidationError
from wrapyfi_like.connect.wire import wire_codec
from wrapyfi_like.utils.plugin_set import PluginSet


SERIALIZER_ENV = "WRAPYFI_LIKE_SERIALIZER"
"""Sets the serializer (``binary`` or ``json``) of every sender in the process that names none."""


def serializer_setting(serializer: Optional[str]) -> str:
    """The serializer a sender uses: its own ``serializer=``, else the process's
    :data:`SERIALIZER_ENV`, else ``"binary"``. Receivers need none: they read both."""
    return serializer or os.environ.get(SERIALIZER_ENV) or "binary"


TYPED_KWARGS = ("message_type", "on_invalid", "serializers")
"""The decorator kwargs of typed messages and inline serializers: a value format's, not a codec's."""
ON_INVALID = ("skip", "raise")


def codec_kwargs(kwargs: dict) -> dict:
    """A request codec's kwargs from a decorator's: the sender's serializer, no typed kwargs."""
    kept = {key: value for key, value in kwargs.items() if key not in TYPED_KWARGS}
    kept["serializer"] = serializer_setting(kwargs.get("serializer"))
    return kept


def typed_kwargs(kwargs: dict, func: Callable, index: int, decorators: int) -> dict:
    """``kwargs`` with the ``message_type`` the method's return annotation gives decorator
    ``index`` (see :func:`wrapyfi_like.annotations.return_hint`), unless ``message_type`` is set."""
    if "message_type" in kwargs:
        return kwargs
    hint = annotations.return_hint(func, index, decorators)
    return kwargs if hint is None else {**kwargs, "message_type": hint}


class ValueFormat:
    """Checks and encodes one value on the way out, decodes and checks it on the way in.

    ``kwargs`` are the decorator's kwargs; the data type and the plugins each take what they need.
    ``serializer`` (``"binary"``, ``"json"``, None: see :func:`serializer_setting`) applies to
    what this format encodes; it decodes both. ``message_type`` makes values typed messages
    (:mod:`wrapyfi_like.validation`): checked before sending (:class:`ValidationError` at the
    call site) and validated into the type on receipt, where an invalid one is a
    :class:`DecodeError` (skipped and counted as malformed by listeners) or, with
    ``on_invalid="raise"``, a :class:`ValidationError` for the caller. ``serializers``
    (``{type: (serializer, deserializer)}``) and the ``Annotated`` serializers inside
    ``message_type`` send values of those types through those functions.

    The codec follows the middleware (:func:`wrapyfi_like.connect.wire.wire_codec`): on
    Wrapyfi's wire (``wire``) its codec frames every data type itself.
    """

    def __init__(self, data_type: str = "NativeObject", serializer: Optional[str] = None,
                 message_type: Any = None, on_invalid: str = "skip",
                 serializers: Optional[annotations.InlineTable] = None, middleware: str = "zeromq",
                 wire: Optional[str] = None, wrapyfi_allow_pickle: bool = False, **kwargs: Any) -> None:
        if on_invalid not in ON_INVALID:
            raise ConfigurationError(f"on_invalid must be one of {ON_INVALID}, got {on_invalid!r:.200}")
        self.data_type = data_type
        self.on_invalid = on_invalid
        self._data_type = data_type_class(data_type)(**kwargs)
        self.wire_codec = wire_codec(middleware, wire, data_type, wrapyfi_allow_pickle, message_type or serializers,
                                     kwargs)
        if self.wire_codec is not None:  # that wire's own codec; the data type shapes values as usual
            self._codec, self._type = self.wire_codec, None
            if type(self._data_type) is NativeObject:
                self.encode, self.decode = self._codec.encode, self._codec.decode
            return
        inline = annotations.inline_serializers(message_type) if message_type is not None else {}
        inline.update(_checked_table(serializers))
        # the topic's plugins, found and built once here: the codec never discovers plugins itself
        self._codec = Codec(serializer=serializer_setting(serializer), inline=inline, plugins=PluginSet(**kwargs))
        self._type = None
        if message_type is not None:
            from wrapyfi_like.validation import MessageType  # only typed topics pay for the engine
            self._type = MessageType(message_type)
        if type(self._data_type) is not NativeObject:
            return
        if self._type is None:  # values go out unchanged: the codec is the whole format
            self.encode = self._codec.encode
            self.decode = self._codec.decode
            return
        self.encode = self._encode_native
        self.decode = self._decode_native
        fast = fast_path(message_type) if self._codec.serializer == "binary" and not inline else None
        if fast is not None:  # a model of plain fields: the codec's bytes without its walk, msgspec's decoder
            self._fast = fast
            self.encode = self._encode_model_fast if fast.shadow_decides else self._encode_fast
            self.decode = self._decode_fast

    def _encode_fast(self, value: Any) -> list:
        tree = self._type.to_wire(value)  # the check, as on every typed topic
        return self._fast.encode(value, tree) or self._codec.encode(tree)

    def _encode_model_fast(self, value: Any) -> list:
        """A pydantic model whose fields' shadow alone may check it (``PydanticFast.encode_model``)."""
        return self._fast.encode_model(value) or self._encode_fast(value)

    def _decode_fast(self, frames: Sequence[Any]) -> Any:
        value = self._fast.decode(frames)  # a model instance (a TypedDict's: a dict), never None
        return self._decode_native(frames) if value is None else value

    def _encode_native(self, value: Any) -> list:
        """:meth:`encode` of a typed NativeObject: the data type has nothing to add."""
        return self._codec.encode(self._type.to_wire(value))

    def _decode_native(self, frames: Sequence[Any]) -> Any:
        try:
            return self._type.from_wire(self._codec.decode(frames))
        except ValidationError as error:
            if self.on_invalid == "raise":
                raise
            raise DecodeError(str(error)) from None

    def encode(self, value: Any) -> list:
        if self._type is not None:
            value = self._type.to_wire(value)
        return self._codec.encode(self._data_type.to_wire(value))

    def decode(self, frames: Sequence[Any]) -> Any:
        value = self._data_type.from_wire(self._codec.decode(frames))
        if self._type is None:
            return value
        try:
            return self._type.from_wire(value)
        except ValidationError as error:
            if self.on_invalid == "raise":
                raise
            raise DecodeError(str(error)) from None

    def encode_reply(self, value: Any) -> bytes:
        """On Wrapyfi's wire: ``value`` as one reply frame (Wrapyfi frames replies differently)."""
        return self.wire_codec.encode_reply(self._data_type.to_wire(value), self.data_type)

    def decode_reply(self, frame: Any) -> Any:
        """On Wrapyfi's wire: the value of one reply frame."""
        return self._data_type.from_wire(self.wire_codec.decode_reply(frame, self.data_type))

    def empty(self) -> Any:
        """What a non-waiting receive returns when nothing arrived (None, or e.g. ``(None, rate)``)."""
        return self._data_type.from_wire(None)


def _checked_table(serializers: Any) -> annotations.InlineTable:
    if serializers is None:
        return {}
    if not isinstance(serializers, dict) or not all(
            isinstance(key, type) and isinstance(pair, tuple) and len(pair) == 2 for key, pair in serializers.items()):
        raise ConfigurationError(
            f"serializers must map types to (serializer, deserializer) pairs, got {serializers!r:.200}")
    return dict(serializers)
