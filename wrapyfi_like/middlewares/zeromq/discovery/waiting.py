"""Telling a user that a peer never came: one WARNING per communicator, naming similar topics.

Why: a topic misspelt by one letter is otherwise silent on both sides. The publisher finds no
listener (it waits, or sends to nobody) and the listener waits forever, and neither says why; a
request client waits for a server that is not there. So :data:`WAIT_WARNING` seconds after a
publisher, listener or client is built, this module reads the directory once
(:func:`~.client.list_directory`). If no peer of that topic is announced, it logs one WARNING
that names the topics that do have such a peer and look alike (difflib).

One daemon thread per process does these checks. Checks that come due together share one
listing. A communicator closed before its check is due is never checked. The check runs once
per communicator: a peer that comes and goes later is normal operation, not a mistake.
"""

from __future__ import annotations

import difflib
import heapq
import itertools
import logging
import os
import threading
import time
from typing import Optional

from wrapyfi_like.background import start_thread
from wrapyfi_like.exceptions import WrapyfiLikeError
from wrapyfi_like.logs import truncate
from wrapyfi_like.middlewares.zeromq.discovery.client import list_directory
from wrapyfi_like.middlewares.zeromq.keys import listener_key, publisher_key
from wrapyfi_like.middlewares.zeromq.reqrep import service_key

logger = logging.getLogger("wrapyfi_like.zeromq.discovery")

WAIT_WARNING = 5.0
"""Seconds a publisher, listener or client may be without a peer before it says so."""
SUGGESTIONS = 3
"""Similar topics named at most in one warning."""
PEERS = {"publisher": ("listener", listener_key), "listener": ("publisher", publisher_key),
         "client": ("server", service_key)}
"""For each kind that waits: the kind of its peer, and the key that peer announces under."""


class PeerCheck:
    """One pending check; :meth:`cancel` it when the communicator closes."""

    __slots__ = ("kind", "topic", "cancelled")

    def __init__(self, kind: str, topic: str) -> None:
        self.kind = kind
        self.topic = topic
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _Checker:
    """The thread that runs the checks when they are due."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._due: list[tuple[float, int, PeerCheck]] = []
        self._order = itertools.count()
        self._lock = threading.RLock()  # entered as itself: a Ctrl-C inside Condition.__enter__ (Python code) leaks the lock
        self._changed = threading.Condition(self._lock)
        self._thread: Optional[threading.Thread] = None

    def add(self, check: PeerCheck) -> None:
        with self._lock:
            heapq.heappush(self._due, (time.monotonic() + WAIT_WARNING, next(self._order), check))
            if self._thread is None:
                self._thread = start_thread(self._run, "wrapyfi_like-peer-check")
            self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._changed.wait(self._due[0][0] - time.monotonic() if self._due else None)
                now = time.monotonic()
                ready = []
                while self._due and self._due[0][0] <= now:
                    ready.append(heapq.heappop(self._due)[2])
            ready = [check for check in ready if not check.cancelled]
            if ready:
                try:
                    _warn_lonely(ready)
                except Exception as error:  # a failed check must not end the thread
                    logger.debug("peer check failed: %s: %s", type(error).__name__, truncate(error))


def _warn_lonely(checks: list[PeerCheck]) -> None:
    """One WARNING for each check whose topic has no peer in the directory."""
    try:
        keys = {entry.key for entry in list_directory()}
        unreachable = ""
    except WrapyfiLikeError as error:
        keys, unreachable = set(), f"; the discovery directory did not answer either ({truncate(error)})"
    for check in checks:
        if check.cancelled:
            continue
        peer, key_of = PEERS[check.kind]
        key = key_of(check.topic)
        if key in keys:
            continue
        prefix = key[:-len(check.topic)]
        topics = sorted(key[len(prefix):] for key in keys if key.startswith(prefix))
        similar = difflib.get_close_matches(check.topic, topics, n=SUGGESTIONS)
        hint = (f"; did you mean {', '.join(map(repr, similar))}? (topics must match exactly)" if similar
                else f"; no similar topic has a {peer}" if not unreachable else "")
        logger.warning("%s of %r has found no %s in %g s%s%s", check.kind, check.topic, peer, WAIT_WARNING,
                       hint, unreachable)


_checker: Optional[_Checker] = None
_checker_lock = threading.Lock()


def expect_peer(kind: str, topic: str) -> PeerCheck:
    """Check once, :data:`WAIT_WARNING` s from now, that a ``kind`` (a key of :data:`PEERS`) of
    ``topic`` has a peer; warn if it has none."""
    global _checker
    check = PeerCheck(kind, topic)
    with _checker_lock:
        if _checker is None or _checker.pid != os.getpid():
            _checker = _Checker()
        _checker.add(check)
    return check
