"""Request/reply on Wrapyfi 0.5.0's wire: REQ → ROUTER/DEALER device → REP, one frame each way.

Wrapyfi's device ignores topics: every server connected to it takes a share of every request
(the DEALER deals them round-robin). So one device (one pair of ports) serves one service; give
other services other ports (``socket_rep_port``/``socket_req_port``).

An error reply (a malformed request, a method that raised) is one JSON frame
``{"__wrapyfi__": ["wrapyfi_like.error", "<message>"]}``: this package's client raises it as
:class:`RemoteError`; a Wrapyfi client, which knows no such marker, returns it as a dict, where
otherwise it would wait forever for a reply that never comes.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Optional

import zmq

from wrapyfi_like.exceptions import DecodeError, RemoteError, WaitTimeout
from wrapyfi_like.limits import DEFAULT_MAX_MESSAGE_SIZE, check_topic
from wrapyfi_like.logs import truncate
from wrapyfi_like.middlewares.base import ClientTransport, ServerTransport, Ticket
from wrapyfi_like.middlewares.wrapyfi_zeromq.checks import check_wire_settings
from wrapyfi_like.middlewares.wrapyfi_zeromq.owned import Owned, deadline
from wrapyfi_like.middlewares.wrapyfi_zeromq.session import WireSession
from wrapyfi_like.middlewares.wrapyfi_zeromq.settings import DeviceAddress

logger = logging.getLogger("wrapyfi_like.wrapyfi_zeromq")

ERROR_MARKER = "wrapyfi_like.error"
_ERROR_PREFIX = b'{"__wrapyfi__": ["' + ERROR_MARKER.encode() + b'", '


def error_frame(message: str) -> bytes:
    return json.dumps({"__wrapyfi__": [ERROR_MARKER, message]}).encode()


class WrapyfiServerTransport(ServerTransport):
    """A REP connected to the device's DEALER (the device is started here if none runs)."""

    def __init__(self, topic: str, carrier: str = "tcp", info: Optional[dict] = None,
                 max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE, curve_secret_key: Any = None,
                 *, bind_port: Optional[int] = None, session: WireSession, **sockets: Any) -> None:
        check_topic(topic)
        check_wire_settings(topic, carrier, curve_secret_key, bind_port=bind_port)
        self.topic = topic
        self._max_message_size = max_message_size
        self._session = session
        self._address = DeviceAddress.for_server(**sockets)
        session.ensure_device(self._address)
        self._socket = Owned(self._new_socket(), f"server on {topic}")
        self._ticket: Optional[object] = None
        self._counts = {"received": 0, "sent": 0, "errors": 0, "dropped": 0, "malformed": 0}

    def _new_socket(self) -> zmq.Socket:
        socket = self._session.socket(zmq.REP, self)
        socket.connect(self._address.dealer)
        return socket

    def recv(self, timeout: Optional[float]) -> Optional[tuple[Ticket, list[memoryview]]]:
        until = deadline(timeout)
        with self._socket.use() as socket:
            if not self._socket.wait(zmq.POLLIN, until):
                return None
            frames = socket.recv_multipart(copy=False)
            self._ticket = ticket = object()
            size = sum(len(frame) for frame in frames)
            if size > self._max_message_size:
                self._counts["malformed"] += 1
                self._reply(socket, ticket, [error_frame(f"a request of {size} bytes; the server's "
                                                         f"max_message_size is {self._max_message_size}")])
                self._counts["errors"] += 1
                raise DecodeError(f"a request of {size} bytes on {self.topic} (max_message_size "
                                  f"{self._max_message_size})")
            self._counts["received"] += 1
            return ticket, [frame.buffer for frame in frames]

    def send(self, ticket: Ticket, frames: list) -> None:
        with self._socket.use() as socket:
            self._reply(socket, ticket, frames)

    def send_error(self, ticket: Ticket, message: str) -> None:
        with self._socket.use() as socket:
            if self._reply(socket, ticket, [error_frame(message)]):
                self._counts["errors"] += 1

    def _reply(self, socket: zmq.Socket, ticket: Ticket, frames: list) -> bool:
        if ticket is not self._ticket:  # REP answers only the request it holds
            self._counts["dropped"] += 1
            return False
        self._ticket = None
        try:
            socket.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:  # the device does not take it: drop, and start over with a fresh REP
            self._counts["dropped"] += 1
            self._socket.replace(self._new_socket())
            return False
        self._counts["sent"] += 1
        return True

    def statistics(self) -> dict[str, int]:
        return dict(self._counts)

    def close(self) -> None:
        self._socket.close()


class WrapyfiClientTransport(ClientTransport):
    """A REQ connected to the device's ROUTER, recreated after a timeout (a REQ that got no reply
    cannot send again; Wrapyfi's clients have no timeout and wait forever)."""

    def __init__(self, topic: str, carrier: str = "tcp", max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
                 curve_server_key: Any = None, *, session: WireSession, **sockets: Any) -> None:
        check_topic(topic)
        check_wire_settings(topic, carrier, curve_server_key)
        self.topic = topic
        self._max_message_size = max_message_size
        self._session = session
        self._router = DeviceAddress.router_for_client(**sockets)
        self._socket = Owned(self._new_socket(), f"client of {topic}")
        self._counts = {"sent": 0, "received": 0, "remote_errors": 0, "timeouts": 0, "stale": 0, "malformed": 0}

    def _new_socket(self) -> zmq.Socket:
        socket = self._session.socket(zmq.REQ, self)
        socket.connect(self._router)
        return socket

    def request(self, frames: list, timeout: Optional[float]) -> list[memoryview]:
        until = deadline(timeout)
        with self._socket.use() as socket:
            if not self._socket.wait(zmq.POLLOUT, until):  # no device reachable yet
                return self._timed_out(timeout)
            socket.send_multipart(frames, zmq.NOBLOCK)
            self._counts["sent"] += 1
            if not self._socket.wait(zmq.POLLIN, until):
                return self._timed_out(timeout)
            reply = self._socket.socket.recv_multipart(copy=False)
        size = sum(len(frame) for frame in reply)
        if size > self._max_message_size:
            self._counts["malformed"] += 1
            raise DecodeError(f"a reply of {size} bytes from {self.topic} (max_message_size {self._max_message_size})")
        if len(reply) == 1 and reply[0].bytes.startswith(_ERROR_PREFIX):
            self._counts["remote_errors"] += 1
            raise RemoteError(_error_message(reply[0].bytes))
        self._counts["received"] += 1
        return [frame.buffer for frame in reply]

    def _timed_out(self, timeout: Optional[float]) -> list:
        self._counts["timeouts"] += 1
        self._socket.replace(self._new_socket())
        raise WaitTimeout(f"no reply from service {self.topic} within {timeout} s")

    def statistics(self) -> dict[str, int]:
        return dict(self._counts)

    def close(self) -> None:
        self._socket.close()


def _error_message(frame: bytes) -> str:
    try:
        message = json.loads(frame)["__wrapyfi__"][1]
    except (ValueError, KeyError, IndexError, TypeError):
        message = frame
    return truncate(message)
