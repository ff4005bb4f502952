"""ZeroMQ publish/subscribe transport: frames in, frames out; it never sees Python objects.

A message is the multipart ``[topic + b"\\0", header, *buffers]``. libzmq filters subscriptions by
prefix; ending the topic frame with a NUL byte (which a topic may not contain) makes the prefix
match exact, so a listener on ``/demo/a`` never receives ``/demo/ab``.

The publisher is an XPUB socket, so it sees every subscription arrive and leave: with
``should_wait=True`` it sends only when at least one listener is subscribed, and the first message
is not lost. ``XPUB_NODROP`` makes a full send queue push back instead of dropping silently; the
publisher then waits for room (a slow listener slows the publisher; nothing is lost).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Optional

import zmq

from wrapyfi_like.exceptions import ClosedError, ConfigurationError, DecodeError, WaitTimeout
from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent
from wrapyfi_like.middlewares.zeromq.settings import ZeroMQSettings

logger = logging.getLogger("wrapyfi_like.zeromq")

MAX_TOPIC_LENGTH = 1024
PUBLISHER_LINGER_MS = 1000
"""How long unsent messages may hold up closing a publisher (and interpreter exit)."""
_SUBSCRIBE, _UNSUBSCRIBE = 1, 0


def topic_frame(topic: str) -> bytes:
    if not isinstance(topic, str) or not topic or "\0" in topic:
        raise ConfigurationError(f"a topic must be a non-empty string without NUL bytes, got {topic!r}")
    encoded = topic.encode()
    if len(encoded) > MAX_TOPIC_LENGTH:
        raise ConfigurationError(f"topic is {len(encoded)} bytes long; the limit is {MAX_TOPIC_LENGTH}")
    return encoded + b"\0"


def _remaining_ms(deadline: Optional[float]) -> Optional[int]:
    if deadline is None:
        return None
    return max(0, int((deadline - time.monotonic()) * 1000))


class ZeroMQPublisherTransport:
    """Binds a socket of its own, announces it to discovery and sends frames to its listeners."""

    def __init__(self, topic: str, carrier: str = "tcp", should_wait: bool = True,
                 wait_timeout: Optional[float] = None, info: Optional[dict] = None) -> None:
        self.topic = topic
        self._topic_frame = topic_frame(topic)
        self._should_wait = should_wait
        self._wait_timeout = wait_timeout
        self._lock = threading.Lock()
        self._listeners = 0
        self._socket = zmq.Context.instance().socket(zmq.XPUB)
        self._socket.setsockopt(zmq.XPUB_VERBOSER, 1)
        self._socket.setsockopt(zmq.XPUB_NODROP, 1)
        self._socket.setsockopt(zmq.LINGER, PUBLISHER_LINGER_MS)
        self._socket.bind(ZeroMQSettings.from_environment().bind_address(carrier))
        self.endpoint = self._socket.getsockopt(zmq.LAST_ENDPOINT).decode()
        self._agent = NodeAgent.get()
        self._announcement = self._agent.announce(topic, self.endpoint, info or {})
        self._closed = False

    @property
    def listener_count(self) -> int:
        with self._lock:
            self._track_subscriptions()
            return self._listeners

    def send(self, frames: list) -> None:
        """Send one message; with ``should_wait``, first wait until a listener is subscribed."""
        with self._lock:
            if self._closed:
                raise ClosedError(f"publisher on {self.topic} is closed")
            self._track_subscriptions()
            if self._should_wait and self._listeners == 0:
                self._wait_for_listener()
            self._send_when_room([self._topic_frame, *frames])

    def _track_subscriptions(self) -> None:
        while self._socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            message = self._socket.recv()
            if message[1:] == self._topic_frame:
                self._listeners += 1 if message[0] == _SUBSCRIBE else -1

    def _wait_for_listener(self) -> None:
        logger.info("waiting for a listener on %s", self.topic)
        deadline = None if self._wait_timeout is None else time.monotonic() + self._wait_timeout
        while self._listeners == 0:
            if not self._socket.poll(_remaining_ms(deadline), zmq.POLLIN):
                raise WaitTimeout(
                    f"no listener subscribed to {self.topic} within {self._wait_timeout} s "
                    "(wait_timeout); start one, or publish with should_wait=False"
                )
            self._track_subscriptions()

    def _send_when_room(self, frames: list) -> None:
        while True:
            try:
                self._socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
                return
            except zmq.Again:
                self._socket.poll(None, zmq.POLLOUT)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._agent.withdraw(self._announcement)
            self._socket.close()


class ZeroMQListenerTransport:
    """Subscribes to one topic and connects to every publisher discovery reports for it."""

    def __init__(self, topic: str, carrier: str = "tcp", **_: object) -> None:
        self.topic = topic
        self._topic_frame = topic_frame(topic)
        self._lock = threading.Lock()
        self._socket = zmq.Context.instance().socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.SUBSCRIBE, self._topic_frame)
        self._agent = NodeAgent.get()
        self._watch = self._agent.watch(topic)
        self._connected: set[str] = set()
        self._poller = zmq.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        self._poller.register(self._watch.fileno(), zmq.POLLIN)
        self._closed = False

    def recv(self, timeout: Optional[float]) -> Optional[list[memoryview]]:
        """The next message's ``[header, *buffers]``, or None if ``timeout`` seconds pass first.

        ``timeout=None`` waits as long as it takes. The buffers are the received frames
        themselves (zero-copy, writable).
        """
        with self._lock:
            if self._closed:
                raise ClosedError(f"listener on {self.topic} is closed")
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                events = dict(self._poller.poll(_remaining_ms(deadline)))
                if self._watch.fileno() in events:
                    self._follow(self._watch.consume())
                if self._socket in events:
                    return self._receive()
                if deadline is not None and time.monotonic() >= deadline:
                    return None

    def _receive(self) -> list[memoryview]:
        frames = self._socket.recv_multipart(copy=False)
        if frames[0].bytes != self._topic_frame:
            raise DecodeError(f"frame for topic {frames[0].bytes[:80]!r} arrived on {self.topic}")
        return [frame.buffer for frame in frames[1:]]

    def _follow(self, endpoints: frozenset[str]) -> None:
        for endpoint in endpoints - self._connected:
            self._socket.connect(endpoint)
        for endpoint in self._connected - endpoints:
            try:
                self._socket.disconnect(endpoint)
            except zmq.ZMQError:
                pass  # already gone
        self._connected = set(endpoints)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._agent.unwatch(self._watch)
            self._socket.close()
