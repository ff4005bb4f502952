"""The state of a connecting socket's connections, per endpoint, from a ZeroMQ socket monitor.

libzmq hides connections: a PUSH or DEALER that connects queues messages for its peer whether or
not the peer is there, reconnects on its own, and never says when a handshake fails (a CURVE key
mismatch, say). Senders need to know, so that a dead or rejecting peer never holds them up:

- ``UP``: a handshake succeeded and the connection has not dropped since;
- ``CONNECTING``: never connected yet (libzmq keeps trying);
- ``DOWN``: was up, then dropped (the peer died, or the network did); libzmq keeps reconnecting;
- ``REJECTED``: a handshake failed (wrong key, CURVE on one side only, not a ZeroMQ peer);
  retrying cannot help, so the sender should close the connection.

:func:`prepare` also sets ZMTP heartbeats on the socket, so a peer that vanishes without closing
its TCP connection (a cut cable, a powered-off host) is noticed within ``HEARTBEAT_TIMEOUT_MS``
instead of when TCP gives up, minutes later.
"""

from __future__ import annotations

import enum
import logging
import uuid

import zmq
from zmq.utils.monitor import recv_monitor_message

logger = logging.getLogger("wrapyfi_like.zeromq.peers")

HEARTBEAT_IVL_MS = 1000
"""How often a connecting socket pings its peer."""
HEARTBEAT_TIMEOUT_MS = 3000
"""A peer silent for this long counts as gone: the connection drops (``DOWN``) and libzmq reconnects."""
HANDSHAKE_IVL_MS = 5000
"""A peer that does not complete its handshake within this time is disconnected."""

_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
           | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
_WATCHED = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | _FAILED
_REASONS = {
    zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: "CURVE keys do not match (wrong server key?)",
    zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: "CURVE is on at one end only",
}


class PeerState(enum.Enum):
    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"
    REJECTED = "rejected"


def prepare(socket: zmq.Socket) -> None:
    """Heartbeats and a handshake bound for a socket that connects; call before it connects."""
    socket.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    socket.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_IVL_MS)


class ConnectionMonitor:
    """Follows the connections of ``socket``; create it before the socket connects.

    :meth:`fileno`-free: poll :attr:`events` (a PAIR socket) with a ``zmq.Poller`` to wake on a
    change, then call :meth:`update`.
    """

    def __init__(self, socket: zmq.Socket, what: str) -> None:
        self._what = what
        self.events = socket.get_monitor_socket(_WATCHED, addr=f"inproc://wrapyfi_like-monitor-{uuid.uuid4().hex}")
        self.states: dict[str, PeerState] = {}

    def connecting(self, endpoint: str) -> None:
        self.states[endpoint] = PeerState.CONNECTING

    def forget(self, endpoint: str) -> None:
        self.states.pop(endpoint, None)

    def state(self, endpoint: str) -> PeerState:
        return self.states.get(endpoint, PeerState.CONNECTING)

    def update(self) -> dict[str, PeerState]:
        """Apply the events that arrived since the last call (never blocks); returns :attr:`states`."""
        while True:
            try:
                event = recv_monitor_message(self.events, zmq.NOBLOCK)
            except zmq.Again:
                return self.states
            except zmq.ZMQError:
                return self.states  # closed
            endpoint = event["endpoint"].decode(errors="replace")
            if endpoint not in self.states:
                continue  # forgotten, or an accepted connection: nothing to track
            self._apply(endpoint, event["event"], event["value"])

    def _apply(self, endpoint: str, kind: int, value: int) -> None:
        previous = self.states[endpoint]
        if previous is PeerState.REJECTED:
            return
        if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.states[endpoint] = PeerState.UP
            if previous is PeerState.DOWN:
                logger.info("%s: reconnected to %s", self._what, endpoint)
        elif kind == zmq.EVENT_DISCONNECTED:
            if previous is PeerState.UP:
                self.states[endpoint] = PeerState.DOWN
                logger.info("%s: lost the connection to %s; reconnecting", self._what, endpoint)
        elif kind & _FAILED:
            self.states[endpoint] = PeerState.REJECTED
            reason = _REASONS.get(value, f"handshake failed (event {kind:#x}, code {value:#x})")
            logger.warning("%s: %s refused the connection: %s", self._what, endpoint, reason)

    def close(self) -> None:
        self.events.close(linger=0)
