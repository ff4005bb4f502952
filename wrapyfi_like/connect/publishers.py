"""A publisher: data type → codec → transport, built once per topic and reused per message."""

from __future__ import annotations

from typing import Any, Optional

from wrapyfi_like.connect.formats import ValueFormat
from wrapyfi_like.middlewares import middleware_module


class Publisher:
    """Publishes a method's return value on ``out_topic``.

    ``wait_timeout`` bounds how long ``should_wait=True`` waits for a first listener (None: as long
    as it takes, as in Wrapyfi). Every other kwarg goes to the data type and the plugins.
    """

    def __init__(self, name: str, out_topic: str, carrier: str = "tcp", should_wait: bool = True,
                 *, data_type: str = "NativeObject", middleware: str = "zeromq",
                 wait_timeout: Optional[float] = None, **kwargs: Any) -> None:
        self.name = name
        self.out_topic = out_topic
        self._format = ValueFormat(data_type, **kwargs)
        self._transport = middleware_module(middleware).PublisherTransport(
            out_topic, carrier=carrier, should_wait=should_wait, wait_timeout=wait_timeout)
        self.sent = 0

    def publish(self, value: Any) -> None:
        self._transport.send(self._format.encode(value))
        self.sent += 1

    def close(self) -> None:
        self._transport.close()
