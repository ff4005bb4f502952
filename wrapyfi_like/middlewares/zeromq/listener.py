"""ZeroMQ listener transport: binds a PULL socket per topic, announces it, receives frames."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Optional

import zmq

from wrapyfi_like.exceptions import ClosedError, DecodeError
from wrapyfi_like.limits import DEFAULT_MAX_MESSAGE_SIZE
from wrapyfi_like.middlewares.zeromq import lifecycle
from wrapyfi_like.middlewares.deadlines import deadline_after, remaining_ms
from wrapyfi_like.middlewares.zeromq.curve import Key, consumer_keys
from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent
from wrapyfi_like.middlewares.zeromq.framing import limit_frame_size, receive_bounded
from wrapyfi_like.middlewares.zeromq.keys import listener_key, topic_frame
from wrapyfi_like.middlewares.zeromq.settings import ZeroMQSettings

logger = logging.getLogger("wrapyfi_like.zeromq")

WAKE_FRAME = b""
"""The one-frame message ``close()`` sends to its own listener socket to end a blocking receive:
no publisher sends it, because a topic is never empty."""
_wake_endpoints = itertools.count()


class ZeroMQListenerTransport:
    """Binds a socket for one topic and announces it, so publishers of that topic connect to it.

    ``max_message_size`` bounds what one message may make this process hold (see
    :mod:`~wrapyfi_like.middlewares.zeromq.framing`); ``queue_depth`` is how many messages may
    wait here unread (None: libzmq's default, 1000).

    Waiting without a timeout is a plain blocking receive, the cheapest wait libzmq has (no poll
    set to build per message). To end it, :meth:`close` sends :data:`WAKE_FRAME` to the socket
    itself over an inproc connection that only this object holds.
    """

    def __init__(self, topic: str, carrier: str = "tcp", info: Optional[dict] = None,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE, queue_depth: Optional[int] = None,
                 curve_server_key: Optional[Key] = None) -> None:
        self.topic = topic
        self._topic_frame = topic_frame(topic)
        self._max_message_size = max_message_size
        self._lock = threading.Lock()  # held while receiving; close() takes it to close the socket
        self._close_lock = threading.Lock()
        context = zmq.Context.instance()
        self._socket = context.socket(zmq.PULL)
        self._socket.setsockopt(zmq.LINGER, 0)
        limit_frame_size(self._socket, max_message_size)
        if queue_depth is not None:
            self._socket.setsockopt(zmq.RCVHWM, queue_depth)
        keys = consumer_keys(curve_server_key)
        if keys is not None:
            keys.apply(self._socket)
        self._socket.bind(ZeroMQSettings.from_environment().bind_address(carrier))
        self.endpoint = self._socket.getsockopt(zmq.LAST_ENDPOINT).decode()
        wake_endpoint = f"inproc://wrapyfi_like-listener-wake-{next(_wake_endpoints)}"
        self._socket.bind(wake_endpoint)
        self._wake = context.socket(zmq.PUSH)
        self._wake.connect(wake_endpoint)
        self._poller = zmq.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        self._closing = False
        self._agent = NodeAgent.get()
        self._announcement = self._agent.announce(listener_key(topic), self.endpoint, info or {})
        lifecycle.track(self)

    def recv(self, timeout: Optional[float]) -> Optional[list[memoryview]]:
        """The next message's ``[header, *buffers]``, or None if ``timeout`` seconds pass first.

        ``timeout=None`` waits as long as it takes; :meth:`close` from another thread ends the wait
        with :class:`ClosedError`. The buffers are the received frames themselves (zero-copy,
        writable).
        """
        with self._lock:
            if self._closing:
                raise ClosedError(f"listener on {self.topic} is closed")
            if timeout is None:
                return self._receive(0)
            deadline = deadline_after(timeout)
            while True:
                try:
                    return self._receive(zmq.NOBLOCK)
                except zmq.Again:
                    if not self._poller.poll(remaining_ms(deadline)) and time.monotonic() >= deadline:
                        return None

    def _receive(self, flags: int) -> list[memoryview]:
        (topic,), body, problem = receive_bounded(self._socket, 1, self._max_message_size, flags)
        if len(topic) != len(self._topic_frame) or topic.bytes != self._topic_frame:
            if not len(topic) and self._closing:
                raise ClosedError(f"listener on {self.topic} was closed while receiving")
            raise DecodeError(f"frame for topic {bytes(topic.buffer[:80])!r} arrived on {self.topic}")
        if problem:
            raise DecodeError(problem)
        return [frame.buffer for frame in body]

    def close(self) -> None:
        """Close, also while another thread waits in :meth:`recv` (it gets :class:`ClosedError`)."""
        with self._close_lock:
            if self._closing:
                return
            self._closing = True
            self._wake.send(WAKE_FRAME)
        with self._lock:
            self._agent.withdraw(self._announcement)
            self._socket.close()
            self._wake.close()
