"""A value format: one returned value's data type and codec, built once and reused per message.

Publishers and listeners pair a format with a pub/sub socket; servers and clients pair several
(one per value a method returns) with one request/reply socket.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

from wrapyfi_like.data_types import NativeObject, data_type_class
from wrapyfi_like.encoding import Codec


SERIALIZER_ENV = "WRAPYFI_LIKE_SERIALIZER"
"""Sets the serializer (``binary`` or ``json``) of every sender in the process that names none."""


def serializer_setting(serializer: Optional[str]) -> str:
    """The serializer a sender uses: its own ``serializer=``, else the process's
    :data:`SERIALIZER_ENV`, else ``"binary"``. Receivers need none: they read both."""
    return serializer or os.environ.get(SERIALIZER_ENV) or "binary"


class ValueFormat:
    """Checks and encodes one value on the way out, decodes and checks it on the way in.

    ``kwargs`` are the decorator's kwargs; the data type and the plugins each take what they need.
    ``serializer`` (``"binary"``, ``"json"``, None: see :func:`serializer_setting`) applies to
    what this format encodes; it decodes both.
    """

    def __init__(self, data_type: str = "NativeObject", serializer: Optional[str] = None, **kwargs: Any) -> None:
        self.data_type = data_type
        self._data_type = data_type_class(data_type)(**kwargs)
        self._codec = Codec(serializer=serializer_setting(serializer), **kwargs)
        if type(self._data_type) is NativeObject:  # values go out unchanged: the codec is the whole format
            self.encode = self._codec.encode
            self.decode = self._codec.decode

    def encode(self, value: Any) -> list:
        return self._codec.encode(self._data_type.to_wire(value))

    def decode(self, frames: Sequence[Any]) -> Any:
        return self._data_type.from_wire(self._codec.decode(frames))

    def empty(self) -> Any:
        """What a non-waiting receive returns when nothing arrived (None, or e.g. ``(None, rate)``)."""
        return self._data_type.from_wire(None)
