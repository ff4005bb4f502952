"""The ZeroMQ request client: a DEALER socket that sends to live servers and waits for its reply.

Every wait (for a server, for room to send, for the reply) also waits on a :class:`~.wakeup.Wakeup`,
so :meth:`ZeroMQClientTransport.close` from any thread ends a request in flight at once with
:class:`ClosedError`; nothing waits on the lock a request holds. That is also what lets interpreter
exit close a client whose request is still waiting in a daemon thread.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Optional

import zmq

from wrapyfi_like.exceptions import ClosedError, DecodeError, RemoteError
from wrapyfi_like.limits import DEFAULT_MAX_MESSAGE_SIZE
from wrapyfi_like.logs import truncate
from wrapyfi_like.middlewares.base import ClientTransport, check_carrier
from wrapyfi_like.middlewares.deadlines import deadline_after, slice_ms
from wrapyfi_like.middlewares.zeromq import lifecycle
from wrapyfi_like.middlewares.zeromq.connections import connected, keep_alive, only_completed_connections
from wrapyfi_like.middlewares.zeromq.curve import Key, consumer_keys
from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent
from wrapyfi_like.middlewares.zeromq.errors import MapsZMQErrors
from wrapyfi_like.middlewares.zeromq.discovery.waiting import expect_peer
from wrapyfi_like.middlewares.zeromq.framing import limit_frame_size, receive_bounded, try_send
from wrapyfi_like.middlewares.services import MAX_ERROR_TEXT, ClientCounts
from wrapyfi_like.middlewares.zeromq.reqrep import ERROR, OK, REQUEST_ID, service_key
from wrapyfi_like.middlewares.zeromq.wakeup import WakeOnClose, Wakeup

logger = logging.getLogger("wrapyfi_like.zeromq.reqrep")
_POLLIN = int(zmq.POLLIN)


class ZeroMQClientTransport(MapsZMQErrors, ClientCounts, WakeOnClose, ClientTransport, role="client"):
    """Sends requests to the servers of one service topic, found through ``session`` (this
    process's discovery agent), and waits for the matching reply.

    Thread-safe: calls from several threads take turns on the one socket.

    Requests go only to servers that are there: discovery lists a killed server until its entry
    expires, and a DEALER hands requests to every peer it was told to connect to, so without care
    a request could wait in the queue of a dead server. Each server gets a *probe*, a DEALER with
    ``ZMQ_IMMEDIATE`` that never sends: it is writable exactly while its connection to the server
    is complete (see :mod:`~.connections`). Before each request the request socket connects to
    the servers whose probe is writable and disconnects from the others. The request socket
    itself cannot use ``ZMQ_IMMEDIATE``: with it, libzmq discards replies not yet read when their
    server disconnects, so a server that exits right after its last reply would lose that reply.
    """

    def __init__(self, topic: str, carrier: str = "tcp", max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
                 curve_server_key: Optional[Key] = None, *, session: NodeAgent) -> None:
        check_carrier(carrier)  # servers bind, so theirs decides how a request travels
        self.topic = topic
        self._key = service_key(topic)
        self._max_message_size = max_message_size
        self._lock = threading.Lock()
        self._socket = zmq.Context.instance().socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        limit_frame_size(self._socket, max_message_size)
        self._keys = consumer_keys(curve_server_key)
        if self._keys is not None:
            self._keys.apply(self._socket)
        keep_alive(self._socket)
        self._agent = session
        self._watch = self._agent.watch(self._key)
        self._peer_check = expect_peer("client", topic)  # a WARNING if no server ever shows up
        self._followed: Optional[frozenset[str]] = None  # the server list _follow last acted on in full
        self._probes: dict[str, zmq.Socket] = {}  # per listed server: writable while it is there
        self._connected: set[str] = set()  # servers the request socket is connected to
        self._wakeup = Wakeup()  # close() from another thread wakes a request waiting here
        self._watch_fd = self._watch.fileno()
        # what a reply wait polls, built once: zmq.Poller.poll costs more than the poll itself
        self._reply_items = [(self._socket, _POLLIN), (self._watch_fd, _POLLIN), (self._wakeup.fileno(), _POLLIN)]
        lifecycle.track(self)
        self._request_ids = itertools.count(1)
        ClientCounts.__init__(self)
        self._closed = False

    def request(self, frames: list, timeout: Optional[float]) -> list[memoryview]:
        """Send ``frames`` to a server of the topic and return its reply's frames.

        Waits for a server to exist, for room to send and for the reply, all within ``timeout``
        seconds (None: as long as it takes). Raises :class:`WaitTimeout` when it expires (the
        next request works as usual), :class:`RemoteError` when the server reports an error and
        :class:`ClosedError` when the client is closed, also while it waits.
        """
        with self._lock:
            self._check_open()
            deadline = deadline_after(timeout)
            request_id = REQUEST_ID.pack(next(self._request_ids))
            if self._watch.endpoints is not self._followed:  # an unchanged list (the common case) costs no system call
                self._follow(self._watch.consume())
            return self._exchange([request_id, *frames], request_id, deadline, timeout)

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"client of {self.topic} is closed")

    def _send(self, message: list, deadline: Optional[float], timeout: Optional[float]) -> None:
        while True:
            self._route()
            if try_send(self._socket, message):
                return
            # no live server yet, or every live server's queue is full
            poller = zmq.Poller()
            poller.register(self._socket, zmq.POLLOUT)
            poller.register(self._watch.fileno(), zmq.POLLIN)
            poller.register(self._wakeup.fileno(), zmq.POLLIN)
            for endpoint in self._probes.keys() - self._connected:
                poller.register(self._probes[endpoint], zmq.POLLOUT)  # wakes when that server is up
            events = dict(poller.poll(slice_ms(deadline)))
            self._check_open()
            if self._watch.fileno() in events:
                self._follow(self._watch.consume())
            if not events and deadline is not None and time.monotonic() >= deadline:
                raise self._no_server(timeout)

    def _await_reply(self, request_id: bytes, deadline: Optional[float],
                     timeout: Optional[float]) -> list[memoryview]:
        while True:
            ready = [item for item, _ in zmq.zmq_poll(self._reply_items, slice_ms(deadline))]
            self._check_open()
            if self._watch_fd in ready:
                self._follow(self._watch.consume(), drop_gone=False)
            if self._socket in ready:
                head, body, problem = receive_bounded(self._socket, 2, self._max_message_size)
                if len(head) == 2 and len(head[0]) == len(request_id) and head[0].bytes == request_id:
                    if problem:
                        self.malformed += 1
                        raise DecodeError(f"reply from service {self.topic} refused: {problem}")
                    return self._unpack([head[1], *body])
                self.stale += 1
                logger.debug("dropped a late or foreign reply on service %s", self.topic)
            if deadline is not None and time.monotonic() >= deadline:  # also while foreign replies keep coming
                raise self._no_reply(timeout)

    def _unpack(self, frames: list) -> list[memoryview]:
        status = frames[0].bytes
        if status == OK:
            self.received += 1
            return [frame.buffer for frame in frames[1:]]
        if status == ERROR and len(frames) == 2:
            self.remote_errors += 1
            text = truncate(bytes(frames[1].buffer[:4 * MAX_ERROR_TEXT]).decode("utf-8", "replace"), MAX_ERROR_TEXT)
            raise RemoteError(f"service {self.topic} failed: {text}")
        self.malformed += 1
        raise DecodeError(f"malformed reply on service {self.topic} (status {status[:16]!r})")

    def _follow(self, endpoints: frozenset[str], drop_gone: bool = True) -> None:
        """Probe new servers; with ``drop_gone``, forget withdrawn ones.

        Never drop while a reply is awaited: disconnecting discards what already arrived from
        that server, and a server that exits right after replying withdraws at that moment.
        """
        for endpoint in endpoints - self._probes.keys():
            probe = self._socket.context.socket(zmq.DEALER)
            probe.setsockopt(zmq.LINGER, 0)
            only_completed_connections(probe)
            if self._keys is not None:
                self._keys.apply(probe)  # a server that refuses our key never counts as there
            probe.connect(endpoint)
            self._probes[endpoint] = probe
        if drop_gone:
            self._followed = endpoints
            for endpoint in self._probes.keys() - endpoints:
                self._probes.pop(endpoint).close()
                self._disconnect(endpoint)

    def _route(self) -> None:
        """Connect the request socket to the servers that are there, and only to them."""
        for endpoint, probe in self._probes.items():
            if connected(probe):
                if endpoint not in self._connected:
                    self._socket.connect(endpoint)
                    self._connected.add(endpoint)
            elif endpoint in self._connected:
                self._disconnect(endpoint)

    def _disconnect(self, endpoint: str) -> None:
        if endpoint in self._connected:
            self._connected.discard(endpoint)
            try:
                self._socket.disconnect(endpoint)
            except zmq.ZMQError:
                pass  # already gone

    def _release(self) -> None:
        self._peer_check.cancel()
        self._agent.unwatch(self._watch)
        for probe in self._probes.values():
            probe.close()
        self._probes.clear()
        self._socket.close()
