"""ZeroMQ publish/listen transport: frames in, frames out; it never sees Python objects.

Each listener binds a PULL socket of its own and announces it to discovery under
:func:`listener_key` of its topic. Each publisher watches that key and connects one PUSH socket
to every listener of its topic, and sends each message to each of them (fan-out in the publisher,
one hop, no broker). Why not PUB/SUB: a SUB socket only sends its subscription when the thread
that owns it next touches it, so a publisher waiting for a subscription could wait forever on a
listener whose thread is blocked elsewhere (for instance listening to another topic first). A
PUSH socket queues messages for its listener as soon as its connection completes (libzmq's I/O
threads do the handshake), so nothing depends on the listener's thread and the first message is
never lost. Outlets send only over completed connections (:mod:`~.connections`): a listener that
discovery still lists after it went away, or that refuses our CURVE key, is no destination.

A message is the multipart ``[topic, header, *buffers]``. Topics match exactly: discovery keys are
compared whole, and a listener also checks the topic frame of every message it receives.

When a listener's queue (``queue_depth`` messages on the publisher's side of each connection) is
full, the publisher's ``backpressure`` policy applies: ``"block"`` waits for room (nothing is
lost), ``"drop"`` drops the new message for that listener, ``"latest"`` holds the new message as
the one pending message for that listener, replacing (dropping) any older pending one, and sends
it on the next publish or at close. Every message not delivered this way is counted in
``dropped``. (ZMQ_CONFLATE would do "latest" inside libzmq, but it does not support multipart
messages.)
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Optional

import zmq

from wrapyfi_like.exceptions import ClosedError, WaitTimeout
from wrapyfi_like.middlewares.zeromq import lifecycle
from wrapyfi_like.middlewares.deadlines import deadline_after, remaining_ms
from wrapyfi_like.middlewares.zeromq.connections import connected, only_completed_connections
from wrapyfi_like.middlewares.zeromq.curve import Key, producer_keys
from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent
from wrapyfi_like.middlewares.zeromq.framing import try_send
from wrapyfi_like.middlewares.zeromq.keys import listener_key, publisher_key, topic_frame
from wrapyfi_like.middlewares.zeromq.wakeup import Wakeup

logger = logging.getLogger("wrapyfi_like.zeromq")

PUBLISHER_LINGER_MS = 1000
"""How long unsent messages may hold up closing a publisher (and interpreter exit)."""
CONNECT_GRACE = 0.5
"""Seconds a ``should_wait`` publisher with ``"block"`` waits for a newly found listener's
connection to complete, so a listener found just before a publish gets it; a listener whose
connection is still not complete (refused, dead, or slow) is passed over until it is."""


class ZeroMQPublisherTransport:
    """Connects to every listener of its topic that discovery reports and sends frames to each.

    Listeners bind, so the listener's ``carrier`` decides how a publisher reaches it; the
    publisher's ``carrier`` is accepted for Wrapyfi compatibility.
    """

    def __init__(self, topic: str, carrier: str = "tcp", should_wait: bool = True,
                 wait_timeout: Optional[float] = None, info: Optional[dict] = None,
                 backpressure: str = "block", queue_depth: int = 1000,
                 curve_secret_key: Optional[Key] = None) -> None:
        self.topic = topic
        self._keys = producer_keys(curve_secret_key)
        self._send_to = {"block": self._send_when_room, "drop": self._send_or_drop,
                         "latest": self._send_latest}[backpressure]
        self._queue_depth = queue_depth
        self._pending: dict[str, list] = {}  # "latest": the one message held per listener
        self.dropped = 0
        self._wakeup = Wakeup()  # close() wakes a send blocked in a wait
        self._topic_frame = topic_frame(topic)
        self._should_wait = should_wait
        self._wait_timeout = wait_timeout
        self._lock = threading.Lock()
        self._context = zmq.Context.instance()
        self._outlets: dict[str, zmq.Socket] = {}
        self._found_at: dict[str, float] = {}  # when each outlet was created (for CONNECT_GRACE)
        self._connected: set[str] = set()  # outlets that have taken a message: their listener is there
        self._followed: frozenset[str] = frozenset()
        self._agent = NodeAgent.get()
        self._watch = self._agent.watch(listener_key(topic))
        # Announced only so tools can list who publishes; it binds nothing, so there is no endpoint.
        self._announcement = self._agent.announce(publisher_key(topic), "", info or {})
        self._closed = False
        lifecycle.track(self)

    def send(self, frames: list) -> None:
        """Send one message to every listener; with ``should_wait``, first wait for one to exist."""
        with self._lock:
            if self._closed:
                raise ClosedError(f"publisher on {self.topic} is closed")
            self._follow()
            if self._should_wait and not self._connected:
                self._wait_for_listener()
            message = [self._topic_frame, *frames]
            for endpoint in list(self._outlets):
                self._send_to(endpoint, message)

    def _follow(self) -> None:
        if self._watch.endpoints is self._followed:
            return  # nothing changed: the common case costs no system call
        endpoints = self._followed = self._watch.consume()
        for endpoint in endpoints - self._outlets.keys():
            outlet = self._context.socket(zmq.PUSH)
            outlet.setsockopt(zmq.LINGER, PUBLISHER_LINGER_MS)
            outlet.setsockopt(zmq.SNDHWM, self._queue_depth)
            only_completed_connections(outlet)  # a refusing or dead listener is no destination
            if self._keys is not None:
                self._keys.apply(outlet)
            outlet.connect(endpoint)
            self._outlets[endpoint] = outlet
            self._found_at[endpoint] = time.monotonic()
        for endpoint in self._outlets.keys() - endpoints:
            self._outlets.pop(endpoint).close(linger=0)  # that listener is gone
            del self._found_at[endpoint]
            if endpoint in self._connected:
                logger.warning("publisher on %s: listener %s left discovery; messages still queued for it "
                               "are discarded", self.topic, endpoint)
            self._connected.discard(endpoint)
            if self._pending.pop(endpoint, None) is not None:
                self.dropped += 1

    def _wait_for_listener(self) -> None:
        """Wait until a connection to a listener is *complete*: one discovery still lists after
        it closed, or one that refuses our CURVE key, never completes, so it never counts."""
        logger.info("waiting for a listener on %s", self.topic)
        deadline = deadline_after(self._wait_timeout)
        while True:
            self._connected.update(endpoint for endpoint, outlet in self._outlets.items() if connected(outlet))
            if self._connected:
                return
            poller = zmq.Poller()
            for outlet in self._outlets.values():
                poller.register(outlet, zmq.POLLOUT)
            poller.register(self._watch.fileno(), zmq.POLLIN)
            poller.register(self._wakeup.fileno(), zmq.POLLIN)
            events = dict(poller.poll(remaining_ms(deadline)))
            self._check_open()
            if not events and deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"no listener for {self.topic} connected within {self._wait_timeout} s "
                    "(wait_timeout); start one, or publish with should_wait=False"
                )
            if self._watch.fileno() in events:
                self._watch.consume()
                self._follow()

    def _send_when_room(self, endpoint: str, message: list) -> None:
        """Send, or wait until the listener's queue has room; give up only if the listener leaves.

        A listener whose connection has not completed is waited for only up to ``CONNECT_GRACE``
        after it was found (and only with ``should_wait``), then passed over until it connects.
        """
        was_connected = endpoint in self._connected
        while endpoint in self._outlets:
            outlet = self._outlets[endpoint]
            if try_send(outlet, message):
                self._connected.add(endpoint)
                return
            until = None
            if endpoint not in self._connected:
                until = self._found_at[endpoint] + (CONNECT_GRACE if self._should_wait else 0.0)
                if time.monotonic() >= until:
                    return  # not connected: not a destination (yet)
            poller = zmq.Poller()
            poller.register(outlet, zmq.POLLOUT)
            poller.register(self._watch.fileno(), zmq.POLLIN)
            poller.register(self._wakeup.fileno(), zmq.POLLIN)
            events = dict(poller.poll(remaining_ms(until)))
            self._check_open()
            if self._watch.fileno() in events:
                self._follow()
        if was_connected:
            self.dropped += 1  # the listener left while this message waited for room: counted, not lost silently

    def _send_or_drop(self, endpoint: str, message: list) -> None:
        if try_send(self._outlets[endpoint], message):
            self._connected.add(endpoint)
        elif endpoint in self._connected:
            self.dropped += 1  # (a listener not connected yet is no destination, see connections.py)

    def _send_latest(self, endpoint: str, message: list) -> None:
        """Send what is pending for this listener, then ``message``; hold whatever finds no room."""
        outlet = self._outlets[endpoint]
        if endpoint not in self._connected:
            if try_send(outlet, message):
                self._connected.add(endpoint)
            return  # not connected yet: no destination, nothing to hold for it
        pending = self._pending.pop(endpoint, None)
        if pending is not None and not try_send(outlet, pending):
            self.dropped += 1  # still no room: the older pending message gives way to the newer
        if not try_send(outlet, message):
            self._pending[endpoint] = message

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"publisher on {self.topic} was closed while sending")

    def close(self) -> None:
        """Close, also while another thread waits in :meth:`send` (it gets :class:`ClosedError`).

        A message still held by the ``"latest"`` policy gets one more chance to go out, else it
        counts as dropped; queued messages get ``PUBLISHER_LINGER_MS`` to leave.
        """
        if self._closed:
            return
        self._closed = True
        self._wakeup.set()
        with self._lock:
            for endpoint, pending in self._pending.items():
                outlet = self._outlets[endpoint]
                connected(outlet)  # reading ZMQ_EVENTS takes in libzmq's news of room freed since the last send
                if not try_send(outlet, pending):
                    self.dropped += 1
            self._pending.clear()
            self._wakeup.close()
            self._agent.withdraw(self._announcement)
            self._agent.unwatch(self._watch)
            for outlet in self._outlets.values():
                outlet.close()
            self._outlets.clear()
