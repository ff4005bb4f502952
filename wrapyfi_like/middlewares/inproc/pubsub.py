"""In-memory publish/listen: the ZeroMQ transport's behaviour without sockets.

Each listener has an inbox on the bus under its exact topic; a publisher puts a copy of every
message into the inbox of each listener of its topic (fan-out, nothing dropped: a full inbox makes
the publisher wait). Frames are copied, never shared, so receivers get what the wire would give.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Optional

from wrapyfi_like.exceptions import ClosedError, DecodeError, WaitTimeout
from wrapyfi_like.limits import DEFAULT_MAX_MESSAGE_SIZE
from wrapyfi_like.middlewares.inproc.bus import (
    LISTENERS, QUEUE_CAPACITY, Inbox, Member, copy_frames, current_bus, oversize,
)
from wrapyfi_like.middlewares.deadlines import deadline_after
from wrapyfi_like.limits import check_topic

logger = logging.getLogger("wrapyfi_like.inproc")


class InprocPublisherTransport:
    """Sends each message to every listener of its topic on the current bus.

    ``backpressure`` applies when ``queue_depth`` messages already wait in a listener's inbox:
    ``"block"`` waits for room, ``"drop"`` drops the new message, ``"latest"`` drops the oldest
    waiting one; each message lost so is counted in :attr:`dropped`. ``carrier`` and other
    socket settings are accepted so a communicator written for ZeroMQ runs unchanged.
    """

    def __init__(self, topic: str, carrier: str = "tcp", should_wait: bool = True,
                 wait_timeout: Optional[float] = None, backpressure: str = "block",
                 queue_depth: Optional[int] = None, **_: Any) -> None:
        check_topic(topic)  # the same topic rules as on the wire
        self.topic = topic
        self._should_wait = should_wait
        self._wait_timeout = wait_timeout
        self._backpressure = backpressure
        self._queue_depth = queue_depth or QUEUE_CAPACITY
        self.dropped = 0
        self._lock = threading.Lock()
        self._bus = current_bus()
        self._bus.check_open(f"publisher on {topic}")
        self._closed = False

    def send(self, frames: list) -> None:
        """Send one message to every listener; with ``should_wait``, first wait for one to exist."""
        with self._lock:
            self._check_open()
            inboxes = self._bus.members(LISTENERS, self.topic)
            if self._should_wait and not inboxes:
                inboxes = self._wait_for_listener()
            for inbox in inboxes:
                self._deliver(inbox, copy_frames(frames))
            self._check_open()

    def _deliver(self, inbox: Inbox, message: list) -> None:
        if self._backpressure == "block":
            inbox.put(message, abandoned=self._abandoned, depth=self._queue_depth)  # False: it left
        elif inbox.put_or_drop(message, self._queue_depth, drop_oldest=self._backpressure == "latest"):
            self.dropped += 1

    def _wait_for_listener(self) -> list[Inbox]:
        logger.info("waiting for a listener on %s", self.topic)
        inboxes = self._bus.wait_for_members(LISTENERS, self.topic, deadline_after(self._wait_timeout),
                                             self._abandoned)
        self._check_open()
        if not inboxes:
            raise WaitTimeout(
                f"no listener for {self.topic} appeared within {self._wait_timeout} s "
                "(wait_timeout); start one, or publish with should_wait=False"
            )
        return inboxes

    def _abandoned(self) -> bool:
        return self._closed or self._bus.closed

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"publisher on {self.topic} is closed")
        self._bus.check_open(f"publisher on {self.topic}")

    def close(self) -> None:
        """Close, also while another thread waits in :meth:`send` (it gets :class:`ClosedError`)."""
        if self._closed:
            return
        self._closed = True
        self._bus.wake()


class InprocListenerTransport(Member):
    """An inbox on the current bus for one topic; publishers of that topic fill it."""

    def __init__(self, topic: str, carrier: str = "tcp", info: Optional[dict] = None,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE, **_: Any) -> None:
        super().__init__(LISTENERS, "listener", topic, carrier, info, max_message_size)

    def recv(self, timeout: Optional[float]) -> Optional[list[memoryview]]:
        """The next message's ``[header, *buffers]``, or None if ``timeout`` seconds pass first.

        ``timeout=None`` waits as long as it takes; :meth:`close` from another thread ends the wait
        with :class:`ClosedError`. The buffers are writable copies owned by this listener. A
        message larger than ``max_message_size`` raises :class:`DecodeError`, as on the wire.
        """
        frames = self._inbox.get(timeout)
        problem = None if frames is None else oversize(frames, self._max_message_size)
        if problem:
            raise DecodeError(problem)
        return frames
