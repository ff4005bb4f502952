"""Who may speak for a publisher id at a ZeroMQ listener (:class:`~..envelope.Binding`).

Without CURVE an id belongs to the connection that first used it, as long as its peer keeps it
open (:class:`ConnectionBinding`). With CURVE nothing is bound: a listener takes data only from
holders of the producers' secret key (the CURVE server key it was given), which every publisher
of the topic shares, so a sender able to forge an id is one of the publishers already; libzmq's
``ROUTER`` would not say when a connection is gone either.
"""

from __future__ import annotations

import select
import socket
from typing import Any

_LEFT = select.POLLRDHUP | select.POLLHUP | select.POLLERR  # its peer shut it down, or it was reset


class ConnectionBinding:
    """Binds a publisher id to the :class:`~.intake.ZmtpIntake` connection that first used it (the
    intake lets go of a connection's read buffer when it drops it, so what a listener keeps of a
    closed one is a few hundred bytes).

    A publisher that reconnects closes its old connection before it opens the new one, but the
    intake may read the new connection's messages before the old one's last ones: a listener
    behind leaves them unread in the kernel, and the old connection's end (FIN) comes after them.
    So while the old connection has data unread (:meth:`pending`), the new one's messages wait;
    the new connection takes the id as soon as the old one's peer has shut it down (the kernel's
    ``POLLRDHUP``, reported with data still unread); the old connection still delivers what it
    holds (:meth:`drained` tells when it has nothing left: neither in the kernel nor in the
    intake's queue), so neither side's messages are refused.
    """

    def token(self, source: Any) -> Any:
        return source

    def may_take(self, owner: Any) -> bool:
        sock = owner.sock
        if sock.fileno() < 0:  # the intake dropped it
            return True
        poller = select.poll()
        try:
            poller.register(sock, _LEFT)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True  # closed by the intake meanwhile

    def pending(self, owner: Any) -> bool:
        """Data of ``owner`` not delivered yet: a message the intake has begun (the rest of it is
        on the way, its sender's kernel may hold it with the connection's end behind it; seen
        under load), or bytes unread in the kernel."""
        if owner.end > owner.start or owner.frames or owner.big is not None:
            return True
        try:
            return bool(owner.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:  # reset, or closed by the intake
            return False

    def drained(self, owner: Any) -> bool:
        """Whether the connection ``owner`` has nothing more to deliver: the intake dropped it and
        none of its messages wait in the intake's queue."""
        return owner.sock.fileno() < 0 and not owner.queued
