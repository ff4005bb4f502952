"""A listener: transport → codec → data type. Bad messages are logged, counted and skipped."""

from __future__ import annotations

import logging
from typing import Any

from wrapyfi_like.connect.formats import ValueFormat
from wrapyfi_like.exceptions import DecodeError
from wrapyfi_like.middlewares import middleware_module

logger = logging.getLogger("wrapyfi_like.listeners")


class Listener:
    """Returns what arrives on ``in_topic``.

    ``should_wait=True`` blocks until a valid message arrives; ``False`` returns None when none is
    waiting. A malformed message never reaches the caller: it is logged with the topic and the
    reason, counted in :attr:`malformed`, and the listener goes on to the next one.
    """

    def __init__(self, name: str, in_topic: str, carrier: str = "tcp", should_wait: bool = True,
                 *, data_type: str = "NativeObject", middleware: str = "zeromq", **kwargs: Any) -> None:
        self.name = name
        self.in_topic = in_topic
        self.should_wait = should_wait
        self._format = ValueFormat(data_type, **kwargs)
        self._transport = middleware_module(middleware).ListenerTransport(
            in_topic, carrier=carrier, info={"class_name": name, "data_type": data_type},
        )
        self.received = 0
        self.malformed = 0

    def listen(self) -> Any:
        timeout = None if self.should_wait else 0.0
        while True:
            try:
                frames = self._transport.recv(timeout)
                if frames is None:
                    return self._format.empty()  # e.g. AudioChunk's (None, rate)
                value = self._format.decode(frames)
            except DecodeError as error:
                self.malformed += 1
                logger.warning("skipped a malformed message on %s: %s", self.in_topic, error)
                continue
            self.received += 1
            return value

    def close(self) -> None:
        self._transport.close()
