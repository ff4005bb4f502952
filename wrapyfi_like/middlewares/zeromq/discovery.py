"""Discovery: which endpoints serve which key, so peers connect to each other directly.

Data never passes through discovery: a listener (or a service) binds its own socket and
publishers (or clients) connect to it directly (one hop, no broker). Discovery only tells them
where to connect. Keys are namespaced per kind (:func:`~.keys.listener_key`,
:func:`~.reqrep.service_key`), so kinds never mix.

Every process runs one :class:`NodeAgent` thread. The first agent to bind the directory address
(``WRAPYFI_ZEROMQ_DISCOVERY``) hosts the :class:`Directory` in its thread; every agent, the host's
included, syncs with it over a DEALER socket: it sends its announcements and the keys it
watches, and receives the endpoints of those keys. Entries that are not refreshed expire, so a
killed listener or server disappears by itself. When the directory stops answering (its host exited),
agents try to bind the address; one succeeds and hosts a new directory, the others sync with it,
and the directory is rebuilt from their next syncs. Connections already made are not touched, so
data keeps flowing while the directory moves. Start order therefore never matters.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import socket
import threading
import time
import uuid
from typing import NamedTuple, Optional

import msgpack
import zmq

from wrapyfi_like.exceptions import WaitTimeout
from wrapyfi_like.middlewares.zeromq.settings import ZeroMQSettings
from wrapyfi_like.middlewares.zeromq.wakeup import Wakeup

logger = logging.getLogger("wrapyfi_like.zeromq.discovery")

SYNC_INTERVAL = 0.5
"""Seconds between syncs once every watched topic has at least one publisher."""
FAST_SYNC_INTERVAL = 0.05
"""Seconds between syncs while a watched topic has no publisher yet."""
REPLY_TIMEOUT = 1.5
"""A directory that has not answered a sync for this long is presumed gone."""
ENTRY_TTL = 4.0
"""Seconds an announcement lives in the directory without being refreshed."""


class Watch:
    """The endpoints announced under one key, as last reported; :meth:`fileno` becomes readable
    on a change.

    A publisher (or client) polls :meth:`fileno` together with its sockets, so it wakes as soon as
    a listener (or server) appears or goes, without polling in slices.
    """

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.endpoints: frozenset[str] = frozenset()
        self._changed = Wakeup()

    def fileno(self) -> int:
        return self._changed.fileno()

    def update(self, endpoints: frozenset[str]) -> None:
        if endpoints != self.endpoints:
            self.endpoints = endpoints
            self._changed.set()

    def consume(self) -> frozenset[str]:
        """Acknowledge the notice and return the current endpoints."""
        self._changed.clear()
        return self.endpoints

    def close(self) -> None:
        self._changed.close()


class DirectoryEntry(NamedTuple):
    """One live announcement: its key (e.g. a :func:`~.keys.listener_key`), endpoint and info."""

    key: str
    endpoint: str
    info: dict
    node: str


class Directory:
    """The topic → endpoints table, hosted by one agent; pure state, fed requests by that agent.

    Besides the agents' ``sync`` and ``bye``, it answers ``list`` with every live announcement, so
    tools (``wrapyfi-like topics``, ``record --all``) can see the whole table without joining it.
    """

    def __init__(self) -> None:
        self._nodes: dict[str, tuple[float, list]] = {}

    def handle(self, request: list) -> Optional[list]:
        kind = request[0]
        if kind == "sync":
            _, seq, node_id, announcements, watched = request
            self._nodes[node_id] = (time.monotonic() + ENTRY_TTL, announcements)
            return ["synced", seq, {topic: self.endpoints(topic) for topic in watched}]
        if kind == "bye":
            self._nodes.pop(request[1], None)
            return None
        if kind == "list":
            return ["listing", request[1], [[*entry, node_id] for node_id, announced in self._live()
                                            for entry in announced]]
        raise ValueError(f"unknown request {kind!r}")

    def endpoints(self, topic: str) -> list[str]:
        return sorted({endpoint for _, announced in self._live()
                       for t, endpoint, _info in announced if t == topic})

    def _live(self) -> list[tuple[str, list]]:
        """(node id, its announcements) of every node, once expired nodes are dropped."""
        now = time.monotonic()
        for node_id in [n for n, (expiry, _) in self._nodes.items() if expiry < now]:
            del self._nodes[node_id]
        return [(node_id, announced) for node_id, (_, announced) in self._nodes.items()]


def list_directory(address: Optional[str] = None, timeout: float = REPLY_TIMEOUT) -> list[DirectoryEntry]:
    """Every live announcement in the directory at ``address`` (default: from the environment).

    Read-only: it asks once over a socket of its own and never announces or hosts anything.
    Raises :class:`WaitTimeout` if no directory answers within ``timeout`` seconds, which means no
    wrapyfi_like process is running against that address.
    """
    address = address or ZeroMQSettings.from_environment().discovery
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    try:
        dealer.connect(address)
        dealer.send(msgpack.packb(["list", 0]))
        if not dealer.poll(timeout * 1000):
            raise WaitTimeout(f"no discovery directory answered at {address} within {timeout} s "
                              "(no wrapyfi_like process is running with this WRAPYFI_ZEROMQ_DISCOVERY)")
        kind, _seq, rows = msgpack.unpackb(dealer.recv())
    finally:
        dealer.close()
    return [DirectoryEntry(key, endpoint, info, node) for key, endpoint, info, node in rows]


class NodeAgent:
    """This process's discovery thread. Use :meth:`get`; all methods are thread-safe."""

    _instance: Optional["NodeAgent"] = None
    _instance_lock = threading.Lock()

    @classmethod
    def get(cls) -> "NodeAgent":
        with cls._instance_lock:
            if cls._instance is None or cls._instance._pid != os.getpid():
                cls._instance = cls(zmq.Context.instance(), ZeroMQSettings.from_environment())
            return cls._instance

    def __init__(self, context: zmq.Context, settings: ZeroMQSettings) -> None:
        self._pid = os.getpid()
        self._context = context
        self._address = settings.discovery
        self._node_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._identity = {"pid": os.getpid(), "host": socket.gethostname()}
        self._lock = threading.Lock()
        self._announcements: dict[int, list] = {}
        self._watches: dict[str, list[Watch]] = {}
        self._keys = itertools.count()
        self._wakeup = Wakeup()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="wrapyfi_like-discovery", daemon=True)
        self._thread.start()
        atexit.register(self.stop)

    def announce(self, topic: str, endpoint: str, info: dict) -> int:
        """Tell the directory that ``endpoint`` publishes ``topic``; returns a key for :meth:`withdraw`.

        The process id and host name are added to ``info``, so listings can say who announced.
        """
        with self._lock:
            key = next(self._keys)
            self._announcements[key] = [topic, endpoint, {**info, **self._identity}]
        self._wakeup.set()
        return key

    def withdraw(self, key: int) -> None:
        with self._lock:
            self._announcements.pop(key, None)
        self._wakeup.set()

    def watch(self, topic: str) -> Watch:
        """Follow the publishers of ``topic``."""
        watch = Watch(topic)
        with self._lock:
            self._watches.setdefault(topic, []).append(watch)
        self._wakeup.set()
        return watch

    def unwatch(self, watch: Watch) -> None:
        with self._lock:
            watches = self._watches.get(watch.topic, [])
            if watch in watches:
                watches.remove(watch)
            if not watches:
                self._watches.pop(watch.topic, None)
        watch.close()

    def stop(self) -> None:
        """Say goodbye to the directory and end the thread (also run at interpreter exit)."""
        if self._stopping:
            return
        self._stopping = True
        self._wakeup.set()
        self._thread.join(timeout=2.0)

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        directory: Optional[Directory] = None
        router = self._try_host()
        if router is not None:
            directory = Directory()
        dealer = self._connect_dealer()
        seq = itertools.count()
        awaiting: Optional[tuple[int, float]] = None
        next_sync = 0.0
        try:
            while not self._stopping:
                poller = zmq.Poller()
                poller.register(self._wakeup.fileno(), zmq.POLLIN)
                poller.register(dealer, zmq.POLLIN)
                if router is not None:
                    poller.register(router, zmq.POLLIN)
                now = time.monotonic()
                deadline = awaiting[1] + REPLY_TIMEOUT if awaiting else next_sync
                events = dict(poller.poll(max(0.0, deadline - now) * 1000))
                if self._wakeup.fileno() in events:
                    self._wakeup.clear()
                    next_sync = 0.0
                if router is not None and router in events:
                    self._serve(router, directory)
                if dealer in events:
                    awaiting = self._receive_reply(dealer, awaiting)
                now = time.monotonic()
                if awaiting and now - awaiting[1] > REPLY_TIMEOUT:
                    logger.info("discovery directory at %s did not answer; taking over or reconnecting",
                                self._address)
                    dealer.close(linger=0)
                    if router is None:
                        router = self._try_host()
                        directory = Directory() if router is not None else None
                    dealer = self._connect_dealer()
                    awaiting, next_sync = None, 0.0
                if awaiting is None and now >= next_sync:
                    number = next(seq)
                    dealer.send(msgpack.packb(["sync", number, self._node_id, *self._state()]))
                    awaiting = (number, now)
                    next_sync = now + self._interval()
            dealer.send(msgpack.packb(["bye", self._node_id]))
        finally:
            dealer.close(linger=200)
            if router is not None:
                router.close(linger=0)

    def _state(self) -> tuple[list, list]:
        with self._lock:
            return list(self._announcements.values()), list(self._watches)

    def _interval(self) -> float:
        with self._lock:
            waiting = any(not w.endpoints for ws in self._watches.values() for w in ws)
        return FAST_SYNC_INTERVAL if waiting else SYNC_INTERVAL

    def _try_host(self) -> Optional[zmq.Socket]:
        router = self._context.socket(zmq.ROUTER)
        try:
            router.bind(self._address)
        except zmq.ZMQError:
            router.close(linger=0)
            return None
        logger.debug("hosting the discovery directory at %s", self._address)
        return router

    def _connect_dealer(self) -> zmq.Socket:
        dealer = self._context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(self._address)
        return dealer

    def _serve(self, router: zmq.Socket, directory: Directory) -> None:
        while True:
            try:
                frames = router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                reply = directory.handle(msgpack.unpackb(frames[-1]))
            except Exception as error:  # a bad request must not take the directory down
                logger.warning("ignored a malformed discovery request: %s", error)
                continue
            if reply is not None:
                router.send_multipart([frames[0], msgpack.packb(reply)])

    def _receive_reply(self, dealer: zmq.Socket, awaiting: Optional[tuple[int, float]]):
        while True:
            try:
                reply = msgpack.unpackb(dealer.recv(zmq.NOBLOCK))
            except zmq.Again:
                return awaiting
            except Exception as error:
                logger.warning("ignored a malformed discovery reply: %s", error)
                continue
            if awaiting is None or reply[:2] != ["synced", awaiting[0]]:
                continue  # a late answer to a sync we already gave up on
            with self._lock:
                for topic, endpoints in reply[2].items():
                    for watch in self._watches.get(topic, []):
                        watch.update(frozenset(endpoints))
            awaiting = None
