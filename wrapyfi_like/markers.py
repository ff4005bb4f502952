"""``Serializer`` and ``Deserializer``: the inline-serializer markers of ``Annotated`` hints.

A user writes ``Annotated[Rotation, Serializer(to_quat), Deserializer(from_quat)]`` in a method's
return annotation (at any depth, or in a model's fields) and values of that type travel through
those functions on that topic, with no plugin file (tierkreis's idea; see
:mod:`wrapyfi_like.annotations`). Plain classes, not dataclasses: ``import wrapyfi_like`` loads
this module, and ``dataclasses`` would double the package's import time.
"""

from __future__ import annotations

from collections.abc import Callable  # not typing: it would add 3 ms to import wrapyfi_like


class _Marker:
    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[object], object]) -> None:
        if not callable(fn):
            raise TypeError(f"{type(self).__name__} takes a function, got {fn!r:.100}")
        object.__setattr__(self, "fn", fn)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.fn == self.fn

    def __hash__(self) -> int:
        return hash((type(self), self.fn))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.fn!r})"


class Serializer(_Marker):
    """``fn(value)`` turns a value of the annotated type into what travels (anything the codec
    carries: arrays it returns stay buffers in binary mode, ``data_b64`` in JSON mode)."""


class Deserializer(_Marker):
    """``fn(payload)`` rebuilds the annotated type from what :class:`Serializer` sent."""
