"""Socket options that keep dead and refusing peers from holding a connecting socket's messages.

libzmq hides connections: by default a PUSH or DEALER that connects queues messages for its
peer from the moment ``connect()`` returns, whether or not the peer is there, and keeps them
across reconnects. So a message could wait forever for a listener that refused the CURVE
handshake, or that was closed or killed while discovery still listed it, and could even reach a
different socket that later binds the same port. Two options fix that without socket monitors:

- ``ZMQ_IMMEDIATE``: messages queue only on *completed* connections (handshake done). A peer
  that is not there or refuses us is simply not a destination: a send to it finds no room
  (``zmq.Again``), and a connection that drops takes its queued messages with it.
- ZMTP heartbeats: a peer that goes silent without closing its TCP connection (a cut cable, a
  stopped process) is disconnected after ``HEARTBEAT_TIMEOUT_MS`` instead of when TCP gives up,
  minutes later.

``ZMQ_IMMEDIATE`` also throws away messages *received* on a connection that drops before they
were read, so a request client (which reads replies) must not set it; see
:class:`~.client.ZeroMQClientTransport` for how it tells live servers from dead ones.

Data connections (publisher → listener) must tell a *slow* listener from a *dead* one, and ZMTP
heartbeats cannot: a listener whose queue is full stops reading its socket, so it never reads the
pings either, and a stopped process answers nothing. So :func:`data_connection` uses the kernel's
TCP liveness instead, which a busy or SIGSTOPped listener's kernel keeps answering:

- a killed listener's kernel closes its sockets: the publisher sees the disconnect at once;
- a listener host that vanished stops acknowledging: with data unacknowledged, the connection
  drops after :data:`TCP_MAXRT_MS` (``TCP_USER_TIMEOUT``); with nothing to send, TCP keepalive
  drops it after ``IDLE + INTVL * CNT`` = :data:`DEAD_AFTER_IDLE_S` seconds;
- a stopped or busy listener's kernel keeps acknowledging keepalives, so it is waited for, up to
  :data:`TCP_MAXRT_MS` once its receive buffer is full (see there).

A publisher's own outlet (:mod:`.zmtp_outlet`, no libzmq) sets the same on its socket itself
(``SO_KEEPALIVE``, ``TCP_KEEPIDLE``/``INTVL``/``CNT``, ``TCP_USER_TIMEOUT`` = :data:`TCP_MAXRT_MS`).
"""

from __future__ import annotations

import zmq

HEARTBEAT_IVL_MS = 1000
"""How often a connecting socket pings its peer."""
HEARTBEAT_TIMEOUT_MS = 3000
"""A peer silent for this long counts as gone: the connection drops and libzmq reconnects."""
HANDSHAKE_IVL_MS = 3000
"""A peer that does not complete its handshake within this time is disconnected (and retried)."""


def keep_alive(socket: zmq.Socket) -> None:
    """Heartbeats and a handshake bound; call before the socket connects."""
    socket.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    socket.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_IVL_MS)


def only_completed_connections(socket: zmq.Socket) -> None:
    """``ZMQ_IMMEDIATE`` plus :func:`keep_alive`: queue messages only for peers that completed a
    handshake and are still there; call before the socket connects."""
    socket.setsockopt(zmq.IMMEDIATE, 1)
    keep_alive(socket)


TCP_KEEPALIVE_IDLE_S = 2
"""Seconds of silence on a data connection before the kernel probes the peer."""
TCP_KEEPALIVE_INTVL_S = 1
"""Seconds between unanswered keepalive probes."""
TCP_KEEPALIVE_CNT = 3
"""Unanswered keepalive probes after which the connection is dropped."""
DEAD_AFTER_IDLE_S = TCP_KEEPALIVE_IDLE_S + TCP_KEEPALIVE_INTVL_S * TCP_KEEPALIVE_CNT
"""Seconds after which an idle data connection to a vanished host is dropped."""
TCP_MAXRT_MS = 30000
"""Milliseconds sent data may stay unacknowledged before a data connection is dropped. Also the
longest a *stopped* listener (SIGSTOP) with data queued toward it is waited for: measured on
Linux 6.18 over loopback, its kernel stops acknowledging once the receive buffer is full, so a
5 s value dropped a listener stopped for 10 s. Past this, the connection drops, the publisher
counts what it could not send, and a listener that comes back counts the gap as ``missed``."""


def data_connection(socket: zmq.Socket) -> None:
    """``ZMQ_IMMEDIATE``, a handshake bound and TCP liveness, but no ZMTP heartbeat timeout, so a
    busy or stopped listener is waited for and a dead one is let go (module docstring); call
    before the socket connects."""
    socket.setsockopt(zmq.IMMEDIATE, 1)
    socket.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_IVL_MS)
    socket.setsockopt(zmq.TCP_KEEPALIVE, 1)
    socket.setsockopt(zmq.TCP_KEEPALIVE_IDLE, TCP_KEEPALIVE_IDLE_S)
    socket.setsockopt(zmq.TCP_KEEPALIVE_INTVL, TCP_KEEPALIVE_INTVL_S)
    socket.setsockopt(zmq.TCP_KEEPALIVE_CNT, TCP_KEEPALIVE_CNT)
    socket.setsockopt(zmq.TCP_MAXRT, TCP_MAXRT_MS)


_EVENTS = int(zmq.EVENTS)
_POLLOUT = int(zmq.POLLOUT)


def connected(socket: zmq.Socket) -> bool:
    """Whether a socket with :func:`only_completed_connections` has a live peer with room.

    Asked before every request, so with plain ints: pyzmq's enum option and flag cost more
    (about 2 µs) than the query itself."""
    return bool(socket.getsockopt(_EVENTS) & _POLLOUT)
