"""Who may speak for a publisher id at a ZeroMQ listener (:class:`~..envelope.Binding`).

Without CURVE an id belongs to the connection that first used it, as long as that connection is
open (:class:`ConnectionBinding`). With CURVE nothing is bound: a listener takes data only from
holders of the producers' secret key (the CURVE server key it was given), which every publisher
of the topic shares, so a sender able to forge an id is one of the publishers already; libzmq's
``ROUTER`` would not say when a connection is gone either.
"""

from __future__ import annotations

import socket
from typing import Any


class ConnectionBinding:
    """Binds a publisher id to the socket of the :class:`~.intake.ZmtpIntake` connection that first
    used it (small, and closed when the intake drops the connection).

    A publisher that reconnects closes its old connection before it opens the new one, but the
    intake may read the new connection's first message before it reads the old one's end. So an
    old connection the intake still holds open counts as gone too once its peer has closed or
    reset it and nothing of it is left unread in the kernel, which a peek tells at once.
    """

    def token(self, source: Any) -> socket.socket:
        return source.sock

    def may_take(self, owner: socket.socket) -> bool:
        if owner.fileno() < 0:  # the intake dropped it
            return True
        try:
            return not owner.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)  # b"": its peer closed it
        except (BlockingIOError, InterruptedError):
            return False  # open, nothing to read: the id's sender is still there
        except OSError:
            return True  # reset, or closed by the intake meanwhile
