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
from typing import Any, Optional

_LEFT = select.POLLRDHUP | select.POLLHUP | select.POLLERR  # its peer shut it down, or it was reset


class ConnectionBinding:
    """Binds a publisher id to the socket of the :class:`~.intake.ZmtpIntake` connection that first
    used it (small, and closed when the intake drops the connection).

    A publisher that reconnects closes its old connection before it opens the new one, but the
    intake may read the new connection's messages before the old one's last ones: a listener
    behind leaves them unread in the kernel, and the old connection's end (FIN) comes after them.
    So while the old connection has data unread (:meth:`pending`), the new one's messages wait;
    the new connection takes the id as soon as the old one's peer has shut it down (the kernel's
    ``POLLRDHUP``, reported with data still unread); the old connection still delivers what it
    holds (:meth:`drained` tells when it has nothing left), so neither side's messages are
    refused.
    """

    def token(self, source: Any) -> socket.socket:
        return source.sock

    def may_take(self, owner: socket.socket) -> bool:
        if owner.fileno() < 0:  # the intake dropped it
            return True
        poller = select.poll()
        try:
            poller.register(owner, _LEFT)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True  # closed by the intake meanwhile

    def pending(self, owner: socket.socket) -> bool:
        try:
            return bool(owner.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:  # reset, or closed by the intake
            return False

    def drained(self, owner: socket.socket, source: Optional[Any]) -> bool:
        """Whether the connection ``owner`` (last heard as ``source``, if it was heard since it
        left) has nothing more to deliver: the intake dropped it and none of its messages wait."""
        return owner.fileno() < 0 and (source is None or source.queued == 0)
