"""The ZeroMQ request/reply protocol shared by :mod:`.server` and :mod:`.client`.

A server binds a ROUTER socket on a port of its own and announces it to discovery under the
service's key; a client connects a DEALER socket to every server discovery reports. ROUTER/DEALER
rather than REQ/REP because REQ is a state machine: a request whose reply never comes leaves a REQ
socket unable to send again. A DEALER can always send, so a timed-out request costs nothing, and
a ROUTER serves any number of clients, each reply routed back by the client's identity.

Messages (after the identity frame ROUTER adds and removes):

- request: ``[request_id, *frames]``
- reply:   ``[request_id, b"ok", *frames]`` or ``[request_id, b"error", message]``

``request_id`` is 8 bytes (little-endian counter). The client numbers its requests and drops
replies whose id is not the one it waits for, so a late reply to a request that already timed out
can never be taken for the answer to the next one. An error message is UTF-8 text of at most
:data:`~wrapyfi_like.middlewares.services.MAX_ERROR_TEXT` characters; either side shortens peer
text before it goes further.

Services are announced under :func:`service_key` of their topic:
listeners' keys have a prefix of their own, so a service and a pub/sub topic of the same name
never meet (a publisher is never pointed at a ROUTER).
"""

from __future__ import annotations

import struct
from typing import Any

from wrapyfi_like.middlewares.zeromq.keys import topic_frame

OK, ERROR = b"ok", b"error"
REQUEST_ID = struct.Struct("<Q")


def service_key(topic: str) -> str:
    """The discovery key of the service on ``topic``; never equal to a pub/sub topic."""
    topic_frame(topic)  # validates the topic
    return "\0service " + topic


class Ticket:
    """Where one received request came from: the reply goes back with it."""

    __slots__ = ("identity", "request_id")

    def __init__(self, identity: Any, request_id: bytes) -> None:
        self.identity = identity  # the client's connection: a router's Outlet, or a CURVE peer
        self.request_id = request_id
