"""Data types: what a register decorator's first argument names.

A data type adapts a method's return value to the object the codec sends, and back, and checks
it against the decorator's kwargs. ``NativeObject`` sends the value as it is; ``Image`` and
``AudioChunk`` check frames and audio chunks against their declared shape (see their modules).
A data type's ``from_wire(None)`` is also what a listener returns when nothing arrived.
"""

from __future__ import annotations

from typing import Any

from wrapyfi_like.data_types.audio import AudioChunk
from wrapyfi_like.data_types.image import Image
from wrapyfi_like.exceptions import ConfigurationError


class NativeObject:
    """Any value the codec or a plugin can encode, sent unchanged."""

    def __init__(self, **_: Any) -> None:
        pass

    def to_wire(self, value: Any) -> Any:
        return value

    def from_wire(self, value: Any) -> Any:
        return value


DATA_TYPES: dict[str, type] = {"NativeObject": NativeObject, "Image": Image, "AudioChunk": AudioChunk}


def data_type_class(name: str) -> type:
    cls = DATA_TYPES.get(name)
    if cls is None:
        raise ConfigurationError(f"unknown data type {name!r}; available: {', '.join(sorted(DATA_TYPES))}")
    return cls
