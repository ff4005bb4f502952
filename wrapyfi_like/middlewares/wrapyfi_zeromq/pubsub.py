"""Publish/listen on Wrapyfi 0.5.0's wire: ``[topic, *codec frames]`` through its XPUB/XSUB broker.

**Publisher.** Ensures a broker (:mod:`.broker`), then connects to its XSUB. The socket is an XPUB,
not Wrapyfi's PUB: it behaves the same on the wire, and it also receives the subscriptions the
broker forwards upstream. ``should_wait`` waits until a subscription to exactly this topic has
reached this very socket, which is the condition for the next message not to be filtered away
(Wrapyfi waits for the broker's ``ZEROMQ/CONNECTIONS`` count, then sleeps 0.2 s hoping the
subscription was forwarded meanwhile; here no sleep is needed). With ``XPUB_NODROP`` a full queue
to the broker makes ``send`` wait (``"block"``) instead of dropping silently.

**Envelope.** Our publishers add this package's 36-byte envelope
(:mod:`wrapyfi_like.middlewares.envelope`: publisher id, sequence number, call group) as the
*last* frame. Wrapyfi's listeners read their frames by position (frame 1, or 2 for Image and
AudioChunk) and never look at a later one, so they are not affected; our listeners use it to count
messages lost on the way (``missed``: the broker drops for a listener that cannot keep up), skip
repeats and keep the parts of a stacked call together. A Wrapyfi publisher's messages have none
and are taken as they come.

**Listener.** A SUB to the broker's XPUB subscribed to the topic. ZeroMQ matches prefixes, so a
message whose frame 0 is not exactly the topic (``/cam`` hears ``/camera``) is skipped and counted
as malformed, as is one larger than ``max_message_size`` (on this wire the broker is the listener's
only link, so the size is checked after receipt rather than by cutting that link). Until its first
message the listener announces ``{topic: 1}`` on the monitor topic, so a Wrapyfi publisher waiting
for a listener through a broker that does not re-broadcast counts (Wrapyfi's own) sees it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Optional

import zmq

from wrapyfi_like.exceptions import DecodeError, WaitTimeout
from wrapyfi_like.limits import DEFAULT_MAX_MESSAGE_SIZE, check_topic
from wrapyfi_like.logs import RateLimitedLog, truncate
from wrapyfi_like.middlewares.base import ListenerTransport, PublisherTransport
from wrapyfi_like.middlewares import envelope
from wrapyfi_like.middlewares.envelope import Group, ListenerCounts
from wrapyfi_like.middlewares.wrapyfi_zeromq.checks import check_wire_settings
from wrapyfi_like.middlewares.wrapyfi_zeromq.owned import Owned, deadline
from wrapyfi_like.middlewares.wrapyfi_zeromq.session import WireSession
from wrapyfi_like.middlewares.wrapyfi_zeromq.settings import BrokerAddress

logger = logging.getLogger("wrapyfi_like.wrapyfi_zeromq")
_bad_input = RateLimitedLog(logger)

DEFAULT_QUEUE_DEPTH = 1000
"""Messages a listener queues unread when its ``queue_depth`` is not given (Wrapyfi's ZeroMQ default)."""


class WrapyfiPublisherTransport(PublisherTransport):
    """See the module docstring; ``socket_*`` kwargs as in :mod:`.settings`."""

    def __init__(self, topic: str, carrier: str = "tcp", should_wait: bool = True,
                 wait_timeout: Optional[float] = None, info: Optional[dict] = None,
                 backpressure: str = "block", queue_depth: int = 1000, curve_secret_key: Any = None,
                 zero_copy: str = "safe", *, session: WireSession, **sockets: Any) -> None:
        self._topic = check_topic(topic)
        check_wire_settings(topic, carrier, curve_secret_key, backpressure)
        self.topic = topic
        self._should_wait = should_wait
        self._wait_timeout = wait_timeout
        self._copy = zero_copy != "unsafe"
        self._id = envelope.new_publisher_id()
        self.sent = 0
        self.dropped = 0  # a publisher here never discards: "block" is the only policy
        address = BrokerAddress.resolve(**sockets)
        session.ensure_broker(address)
        socket = session.socket(zmq.XPUB, self)
        socket.setsockopt(zmq.XPUB_NODROP, 1)
        socket.setsockopt(zmq.SNDHWM, queue_depth)
        socket.connect(address.xsub)
        self._socket = Owned(socket, f"publisher on {topic}")
        self._subscribed = False
        self._lock = threading.Lock()

    def send(self, frames: list, group: Optional[Group] = None) -> None:
        with self._lock, self._socket.use() as socket:
            self._read_subscriptions(socket)
            if self._should_wait and not self._subscribed:
                self._wait_for_listener(socket)
            message = [self._topic, *frames, envelope.pack(self._id, self.sent + 1, 0, group)]
            while True:
                try:
                    socket.send_multipart(message, zmq.NOBLOCK, copy=self._copy)
                    break
                except zmq.Again:  # the queue to the broker is full: wait for room ("block")
                    self._socket.wait(zmq.POLLOUT, None)
            self.sent += 1

    def _read_subscriptions(self, socket: zmq.Socket) -> None:
        while True:
            try:
                event = socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if event[1:] == self._topic and event[:1] in (b"\x00", b"\x01"):
                self._subscribed = event[0] == 1

    def _wait_for_listener(self, socket: zmq.Socket) -> None:
        until = deadline(self._wait_timeout)
        while not self._subscribed:
            if not self._socket.wait(zmq.POLLIN, until):
                raise WaitTimeout(f"no listener subscribed to {self.topic} within {self._wait_timeout} s")
            self._read_subscriptions(socket)

    def statistics(self) -> dict[str, int]:
        return {"sent": self.sent, "dropped": 0}

    def close(self) -> None:
        self._socket.close()


class WrapyfiListenerTransport(ListenerCounts, ListenerTransport):
    """See the module docstring; ``socket_*`` kwargs as in :mod:`.settings`."""

    def __init__(self, topic: str, carrier: str = "tcp", info: Optional[dict] = None,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE, queue_depth: Optional[int] = None,
                 curve_server_key: Any = None, *, bind_port: Optional[int] = None, session: WireSession,
                 **sockets: Any) -> None:
        self._topic = check_topic(topic)
        check_wire_settings(topic, carrier, curve_server_key, bind_port=bind_port)
        self._start_counting()
        self.topic = topic
        self._max_message_size = max_message_size
        self._session = session
        self._address = BrokerAddress.resolve(**sockets)
        socket = session.socket(zmq.SUB, self)
        socket.setsockopt(zmq.RCVHWM, queue_depth or DEFAULT_QUEUE_DEPTH)
        socket.setsockopt(zmq.SUBSCRIBE, self._topic)
        socket.connect(self._address.xpub)
        self._socket = Owned(socket, f"listener on {topic}")
        self._announcing = True
        session.announce(self._address, topic)

    def recv(self, timeout: Optional[float]) -> Optional[list[memoryview]]:
        until = deadline(timeout)
        with self._socket.use() as socket:
            while True:
                try:
                    frames = socket.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    if not self._socket.wait(zmq.POLLIN, until):
                        return None
                    continue
                try:
                    payload = self._check(frames)
                    if payload is None:
                        continue  # a repeat
                except DecodeError as error:
                    self.malformed += 1
                    _bad_input.warning(self.topic, "malformed", "skipped a message on %s: %s", self.topic,
                                       truncate(error))
                    continue
                self.received += 1
                if self._announcing:
                    self._announcing = False
                    self._session.stop_announcing(self._address, self.topic)
                return payload

    def _check(self, frames: list) -> Optional[list[memoryview]]:
        """The data frames; None for a repeat of a message already returned."""
        if frames[0].bytes != self._topic:
            raise DecodeError(f"topic {truncate(bytes(frames[0].buffer[:200]))} is not exactly {self.topic} "
                              "(the broker matches prefixes)")
        if len(frames) < 2:
            raise DecodeError("a message without data frames")
        size = sum(len(frame) for frame in frames)
        if size > self._max_message_size:
            raise DecodeError(f"a message of {size} bytes; max_message_size is {self._max_message_size}")
        stamp = _envelope(frames)
        if stamp is not None:
            frames = frames[:-1]
            if self._sequence.accept(stamp) < 0:
                return None
        self.last_envelope = stamp
        return [frame.buffer for frame in frames[1:]]

    def close(self) -> None:
        if self._announcing:
            self._announcing = False
            self._session.stop_announcing(self._address, self.topic)
        self._socket.close()


_STAMP = envelope.MAGIC + bytes([envelope.VERSION])


def _envelope(frames: list) -> Optional[envelope.Envelope]:
    """The trailing envelope of one of our publishers' messages, or None (a Wrapyfi publisher's:
    its last frame is JSON or JPEG, which never starts with the envelope's magic bytes)."""
    last = frames[-1]
    if len(frames) < 3 or len(last) != envelope.ENVELOPE.size or not last.bytes.startswith(_STAMP):
        return None
    return envelope.unpack(last.buffer)
