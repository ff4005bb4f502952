"""A publisher: data type → codec → transport, built once per topic and reused per message."""

from __future__ import annotations

import threading
from typing import Any, Optional

from wrapyfi_like.connect.formats import ValueFormat
from wrapyfi_like.exceptions import ConfigurationError
from wrapyfi_like.limits import check_max_message_size, check_outgoing, check_queue_depth, check_topic
from wrapyfi_like.middlewares import middleware_module

BACKPRESSURE_POLICIES = ("block", "drop", "latest")
"""What a publisher does when a listener's queue is full: wait for room (nothing lost), drop the
new message, or hold only the newest message per listener and replace it (camera streams)."""
DEFAULT_QUEUE_DEPTH = {"block": 1000, "drop": 1000, "latest": 1}
"""Messages queued per listener before ``backpressure`` applies, unless ``queue_depth`` says otherwise."""


class Publisher:
    """Publishes a method's return value on ``out_topic``.

    ``wait_timeout`` bounds how long ``should_wait=True`` waits for a first listener (None: as long
    as it takes, as in Wrapyfi). ``backpressure`` (one of :data:`BACKPRESSURE_POLICIES`) and
    ``queue_depth`` decide what happens when a listener is slow; every message not delivered
    because of them is counted in :attr:`dropped`. ``max_message_size`` (bytes) bounds what one
    publish may send: a larger value raises :class:`~wrapyfi_like.exceptions.MessageTooLarge`
    before anything is sent. Every other kwarg goes to the data type and the plugins.

    Thread-safe: several threads may publish through one publisher; messages never interleave.
    """

    def __init__(self, name: str, out_topic: str, carrier: str = "tcp", should_wait: bool = True,
                 *, data_type: str = "NativeObject", middleware: str = "zeromq",
                 wait_timeout: Optional[float] = None, backpressure: str = "block",
                 queue_depth: Optional[int] = None, max_message_size: Optional[int] = None,
                 curve_secret_key: Optional[str] = None, **kwargs: Any) -> None:
        if backpressure not in BACKPRESSURE_POLICIES:
            raise ConfigurationError(f"backpressure must be one of {BACKPRESSURE_POLICIES}, got {backpressure!r}")
        if check_queue_depth(queue_depth) is None:
            queue_depth = DEFAULT_QUEUE_DEPTH[backpressure]
        check_topic(out_topic)
        self.name = name
        self.out_topic = out_topic
        self.max_message_size = check_max_message_size(max_message_size)
        self._format = ValueFormat(data_type, **kwargs)
        self._transport = middleware_module(middleware).PublisherTransport(
            out_topic, carrier=carrier, should_wait=should_wait, wait_timeout=wait_timeout,
            info={"class_name": name, "data_type": data_type},
            backpressure=backpressure, queue_depth=queue_depth, curve_secret_key=curve_secret_key)
        self._count_lock = threading.Lock()
        self.sent = 0

    @property
    def dropped(self) -> int:
        """Messages (per listener) not delivered because of the ``backpressure`` policy."""
        return getattr(self._transport, "dropped", 0)  # a transport that never drops need not count

    def publish(self, value: Any) -> None:
        frames = self._format.encode(value)
        check_outgoing(frames, self.max_message_size, self.out_topic)
        self._transport.send(frames)
        with self._count_lock:
            self.sent += 1

    def stats(self) -> dict[str, int]:
        return {"sent": self.sent, "received": 0, "dropped": self.dropped, "malformed": 0}

    def close(self) -> None:
        self._transport.close()
