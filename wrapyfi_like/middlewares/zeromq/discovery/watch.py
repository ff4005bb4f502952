"""A watch: the endpoints announced under one key, as discovery last reported them."""

from __future__ import annotations

from wrapyfi_like.middlewares.zeromq.wakeup import Wakeup


class Watch:
    """The endpoints announced under one key; :meth:`fileno` becomes readable on a change.

    A publisher (or client) polls :meth:`fileno` together with its sockets, so it wakes as soon as
    a listener (or server) appears or goes, without polling in slices.
    """

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.endpoints: frozenset[str] = frozenset()
        self._changed = Wakeup()

    def fileno(self) -> int:
        return self._changed.fileno()

    def update(self, endpoints: frozenset[str], warming: bool = False) -> None:
        """Take a directory's report; while it is ``warming`` (new, not yet told of every live
        node), endpoints are only added, never removed: a failover must not make a live peer look gone."""
        if warming:
            endpoints = self.endpoints | endpoints
        if endpoints != self.endpoints:
            self.endpoints = endpoints
            self._changed.set()

    def consume(self) -> frozenset[str]:
        """Acknowledge the notice and return the current endpoints."""
        self._changed.clear()
        return self.endpoints

    def close(self) -> None:
        self._changed.close()
