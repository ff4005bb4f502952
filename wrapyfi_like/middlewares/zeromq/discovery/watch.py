"""A watch: the endpoints announced under one key, as discovery last reported them."""

from __future__ import annotations

import threading

from wrapyfi_like.middlewares.zeromq.wakeup import Wakeup


class Watch:
    """The endpoints announced under one key; :meth:`fileno` becomes readable on a change.

    A publisher (or client) polls :meth:`fileno` together with its sockets, so it wakes as soon as
    a listener (or server) appears or goes, without polling in slices.

    The notice is readable only while :attr:`endpoints` differ from what :meth:`consume` last
    returned: a publisher reads :attr:`endpoints` and consumes only when they changed, so a notice
    left over from an update it had already taken in would wake its every poll at once, and its
    wait for a listener would never time out. So an update (the agent's thread) and a consume (the
    publisher's) each happen whole, under one lock.
    """

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.endpoints: frozenset[str] = frozenset()
        self._changed = Wakeup()
        self._lock = threading.Lock()

    def fileno(self) -> int:
        return self._changed.fileno()

    def update(self, endpoints: frozenset[str], warming: bool = False) -> None:
        """Take a directory's report; while it is ``warming`` (new, not yet told of every live
        node), endpoints are only added, never removed: a failover must not make a live peer look gone."""
        with self._lock:
            if warming:
                endpoints = self.endpoints | endpoints
            if endpoints != self.endpoints:
                self.endpoints = endpoints
                self._changed.set()

    def consume(self) -> frozenset[str]:
        """Acknowledge the notice and return the current endpoints."""
        with self._lock:
            self._changed.clear()
            return self.endpoints

    def close(self) -> None:
        self._changed.close()
