"""Joining a topic as one more listener, for the tools that watch topics (echo, hz, bw, record).

Every publisher sends each of its listeners a copy, so watching a topic takes nothing away from
the program's own listeners. The tool keeps the raw frames (``[header, *buffers]``) and when they
arrived; decoding is left to the command.
"""

from __future__ import annotations

import time
from typing import NamedTuple, Optional

from wrapyfi_like.cli.command import CommandError
from wrapyfi_like.middlewares import middleware_module


class Received(NamedTuple):
    time_ns: int
    """Wall-clock receive time, nanoseconds since the Unix epoch."""
    frames: list[memoryview]

    @property
    def size(self) -> int:
        """Bytes of the message as the codec produced it (header and buffers, no topic frame)."""
        return sum(frame.nbytes for frame in self.frames)


class Subscription:
    """One topic joined as a listener; announced as ``wrapyfi-like <tool>`` so ``topics`` can tell."""

    def __init__(self, topic: str, tool: str, mware: str = "zeromq") -> None:
        self.topic = topic
        self._transport = middleware_module(mware).ListenerTransport(
            topic, info={"class_name": f"wrapyfi-like {tool}"})

    def poll(self, timeout: Optional[float]) -> Optional[Received]:
        """The next message, or None if none arrives within ``timeout`` seconds (None: wait on)."""
        frames = self._transport.recv(timeout)
        return None if frames is None else Received(time.time_ns(), frames)

    def receive(self, timeout: Optional[float]) -> Received:
        """The next message; raises :class:`CommandError` if none arrives within ``timeout`` seconds."""
        message = self.poll(timeout)
        if message is None:
            raise CommandError(f"no message on {self.topic} within {timeout:g} s")
        return message

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
