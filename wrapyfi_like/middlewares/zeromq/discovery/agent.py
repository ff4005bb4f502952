"""The agent: this process's discovery thread, which syncs with the directory and may host it.

Every process runs one :class:`NodeAgent` thread. The first agent to bind the directory address
(``WRAPYFI_ZEROMQ_DISCOVERY``) hosts the :class:`~.directory.Directory` in its thread; every agent,
the host's included, syncs with it over a DEALER socket: it sends its announcements and the keys
it watches, and receives the endpoints of those keys. When the directory stops answering (its
host exited), agents try to bind the address; one succeeds and hosts a new directory, the others
sync with it. The new directory says it is *warming* until every live node has had time to sync,
and watches only add endpoints meanwhile, so connections already made are never told their peer
is gone: data keeps flowing while the directory moves. Start order therefore never matters.

The agent's DEALER keeps one random routing id for the agent's life (the directory binds the node
id to it, and lets a reconnect with that id take over the old connection), never shown to others.
The directory also sends a ``changed`` hint when the endpoints of a key this agent watches change;
the agent then syncs at once (at most one sync in flight, and :data:`HINT_GAP` after the last) instead
of at its next poll, which stays as the safety net for a hint that never comes. Replies are checked
(:func:`~.protocol.decode_reply`) before they touch a watch; a bad one is
counted and logged, and the thread outlives any reply and any error of its own (it restarts its
loop), so :meth:`NodeAgent.get` never hands out a dead agent.
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
from collections import Counter
from typing import Optional

import zmq

from wrapyfi_like.background import start_thread
from wrapyfi_like.exceptions import DecodeError
from wrapyfi_like.logs import RateLimitedLog, truncate
from wrapyfi_like.middlewares.zeromq import curve
from wrapyfi_like.middlewares.zeromq.discovery import protocol
from wrapyfi_like.middlewares.zeromq.discovery.directory import Directory
from wrapyfi_like.middlewares.zeromq.discovery.hosting import CurveHost, ZmtpHost
from wrapyfi_like.middlewares.zeromq.discovery.protocol import Changed, Refused, Synced
from wrapyfi_like.middlewares.zeromq.discovery.watch import Watch
from wrapyfi_like.middlewares.zeromq.settings import ZeroMQSettings
from wrapyfi_like.middlewares.zeromq.wakeup import Wakeup

logger = logging.getLogger("wrapyfi_like.zeromq.discovery")
_log = RateLimitedLog(logger)

SYNC_INTERVAL = 0.5
"""Seconds between syncs once every watched topic has at least one publisher."""
FAST_SYNC_INTERVAL = 0.05
"""Seconds between syncs while a watched topic has no publisher yet."""
REPLY_TIMEOUT = 1.5
"""Seconds without an answer after which the agent tries to host the directory itself (its host
may be stopped, or gone without closing its connections); if the address is still held, the
directory is alive and behind, and the sync keeps its place in line (:data:`STALL_TIMEOUT`)."""
STALL_TIMEOUT = 8.0
"""Seconds without an answer after which the agent gives up on its connection and opens a new one
(a directory that accepts and never answers, a host vanished without closing it). Until then a
sync waits its turn: reconnecting sooner, as agents did after :data:`REPLY_TIMEOUT` before,
threw away a sync that was in line at a directory behind a start-up burst (200 processes: 650-920
reconnects, their syncs served into the void or lost, and live nodes expired)."""
RECONNECT_PAUSE = 0.5
"""Seconds at least between opening a socket to the directory and opening the next after its
connection dropped. It paces this agent's own new sockets only: libzmq reconnects a socket whose
connection the directory closed by itself, after its ``RECONNECT_IVL`` (0.1 s and up), except
after a protocol error."""
EXPIRY_INTERVAL = 0.25
"""Seconds between two expiry runs of a hosted directory."""
SERVE_SLICE = 0.05
"""Seconds the host spends on requests before it looks at its own sync again (a flood cannot starve it)."""
HINT_GAP = 0.01
"""Seconds at least between the last sync and one a hint asks for (a directory that hints without
pause cannot make this agent sync without pause either)."""
RESTART_PAUSE = 0.2
MAX_REFUSED_INTERVAL = 5.0
"""Seconds between syncs at most while the directory keeps refusing this node (the interval
doubles from :data:`SYNC_INTERVAL` with each refusal in a row): a node the directory has no room
for must not ask twenty times a second, which is what made a full directory's host busy."""


class NodeAgent:
    """This process's discovery thread. Use :meth:`get`; all methods are thread-safe."""

    _instance: Optional["NodeAgent"] = None
    _instance_lock = threading.Lock()

    @classmethod
    def get(cls) -> "NodeAgent":
        """The process's running agent, started if there is none (or it was stopped, or forked)."""
        with cls._instance_lock:
            agent = cls._instance
            if agent is None or agent._pid != os.getpid() or agent._stopping:
                agent = cls._instance = cls(zmq.Context.instance(), ZeroMQSettings.from_environment())
            agent._ensure_running()
            return agent

    def __init__(self, context: zmq.Context, settings: ZeroMQSettings) -> None:
        self._pid = os.getpid()
        self._context = context
        self._address = settings.discovery
        self.realm = settings.realm
        self._server_keys, self._client_keys = curve.discovery_keys()
        self.node_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._routing_id = protocol.agent_routing_id(os.urandom(14))  # says it takes hints
        self._identity = {"pid": os.getpid(), "host": socket.gethostname()[:protocol.MAX_INFO_TEXT_LENGTH]}
        self._lock = threading.Lock()
        self._announcements: dict[int, list] = {}
        self._watches: dict[str, list[Watch]] = {}
        self._keys = itertools.count()
        self._seq = itertools.count()
        self._wakeup = Wakeup()
        self._stopping = False
        self.counters: Counter[str] = Counter()
        self._refusals = 0
        """Syncs the directory refused in a row (see :data:`MAX_REFUSED_INTERVAL`)."""
        self.directory: Optional[Directory] = None
        """The directory this agent hosts, if it does (for statistics and tests)."""
        self._thread: Optional[threading.Thread] = None
        self._ensure_running()
        atexit.register(self.stop)

    def _ensure_running(self) -> None:
        if (self._thread is None or not self._thread.is_alive()) and not self._stopping:
            if self._thread is not None:
                self.counters["restarts"] += 1
            self._thread = start_thread(self._run, "wrapyfi_like-discovery")

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
        """Say goodbye to the directory and end the thread (also run at interpreter exit, which is
        why the process's agent also stops the CURVE authenticator: the context can then terminate)."""
        if self._stopping:
            return
        self._stopping = True
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if NodeAgent._instance is self:
            curve.stop_authenticators()

    def close(self) -> None:
        """:meth:`stop`: an agent is the session of the ZeroMQ transports
        (:class:`wrapyfi_like.middlewares.base.Session`), and a session ends with ``close``."""
        self.stop()

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping:
            try:
                self._serve()
            except Exception as error:  # the thread must outlive its own bugs: discovery is for everyone
                self.counters["restarts"] += 1
                _log.warning("agent", "restart", "discovery agent restarts after an error: %s: %s",
                             type(error).__name__, truncate(error))
                self._wakeup.clear()
                zmq.select([self._wakeup.fileno()], [], [], RESTART_PAUSE)

    def _serve(self) -> None:
        host = self._try_host()
        link = self._connect()
        awaiting: Optional[tuple[int, float]] = None
        checked = False  # the sync awaited passed REPLY_TIMEOUT and the directory's address was tried
        lost = False  # the connection dropped: libzmq may not open it again (after a protocol error)
        connected = time.monotonic()
        next_sync = next_expiry = last_sync = 0.0
        try:
            while not self._stopping:
                now = time.monotonic()
                deadline = awaiting[1] + (STALL_TIMEOUT if checked else REPLY_TIMEOUT) if awaiting else next_sync
                if lost:  # no sync goes out and none is answered on this connection: the reconnect is due
                    deadline = connected + RECONNECT_PAUSE
                poller = zmq.Poller()
                poller.register(self._wakeup.fileno(), zmq.POLLIN)
                poller.register(link.dealer, zmq.POLLIN)
                poller.register(link.dropped, zmq.POLLIN)
                if host is not None:
                    poller.register(host.fileno(), zmq.POLLIN)
                    next_hint = self.directory.next_hint()
                    deadline = min(deadline, next_expiry, next_hint if next_hint is not None else deadline)
                events = dict(poller.poll(max(0.0, deadline - now) * 1000))
                if self._wakeup.fileno() in events:
                    self._wakeup.clear()
                    next_sync = 0.0
                if host is not None and host.fileno() in events:
                    host.serve(time.monotonic() + SERVE_SLICE)
                if link.dealer in events:
                    awaiting, hinted = self._receive_replies(link.dealer, awaiting)
                    if hinted:
                        next_sync = min(next_sync, last_sync + HINT_GAP)
                now = time.monotonic()
                if host is not None and now >= next_expiry:
                    host.expire()
                    next_expiry = now + EXPIRY_INTERVAL
                if host is not None:
                    host.send_hints()
                if link.dropped in events and link.drained():
                    # a sync in flight went with the connection; its host may have exited: take over
                    self.counters["dropped"] += 1
                    lost = True
                    if host is None:
                        host = self._try_host()
                if awaiting and not (checked or lost) and now - awaiting[1] > REPLY_TIMEOUT:
                    self.counters["slow_replies"] += 1
                    checked = True
                    if host is None:  # a host stopped, or gone without closing our connection
                        host = self._try_host()
                        lost = host is not None  # the address was free: nobody reads this connection
                stalled = awaiting is not None and now - awaiting[1] > STALL_TIMEOUT
                if stalled or (lost and now >= connected + RECONNECT_PAUSE):
                    self.counters["reconnects"] += 1
                    if lost and host is None:  # the address was not free yet when the connection dropped
                        host = self._try_host()
                    logger.info("discovery directory at %s %s; reconnecting", self._address,
                                f"did not answer for {STALL_TIMEOUT:.0f} s" if stalled else "dropped the connection")
                    link.close(linger=0)
                    link = self._connect()
                    connected = now
                    awaiting, checked, lost, next_sync = None, False, False, 0.0
                if awaiting is None and not lost and now >= next_sync:
                    number = next(self._seq)
                    link.dealer.send(protocol.sync(number, self.node_id, *self._state(), self.realm))
                    awaiting, checked = (number, now), False
                    last_sync, next_sync = now, now + self._interval()
            try:
                link.dealer.send(protocol.bye(self.node_id, self.realm), zmq.NOBLOCK)
            except zmq.Again:
                pass  # no directory connected: our entries expire by themselves
        finally:
            link.close(linger=200)
            if host is not None:
                host.close()
                self.directory = None

    def _state(self) -> tuple[list, list]:
        with self._lock:
            return list(self._announcements.values()), list(self._watches)

    def _interval(self) -> float:
        if self._refusals:
            return min(MAX_REFUSED_INTERVAL, SYNC_INTERVAL * 2 ** (self._refusals - 1))
        with self._lock:
            waiting = any(not w.endpoints for ws in self._watches.values() for w in ws)
        return FAST_SYNC_INTERVAL if waiting else SYNC_INTERVAL

    def _try_host(self) -> Optional[ZmtpHost | CurveHost]:
        """The directory's socket, bound, with a new directory behind it (see :mod:`.hosting`), or
        None if another process hosts one (or CURVE is on and this process lacks the secret key a
        host needs)."""
        if self._client_keys is not None and self._server_keys is None:
            return None
        directory = Directory(self.realm)
        try:
            if self._server_keys is None:
                host = ZmtpHost(self._address, directory)
            else:
                host = CurveHost(self._context, self._address, directory, self._server_keys)
        except (OSError, zmq.ZMQError):
            return None
        logger.debug("hosting the discovery directory at %s", self._address)
        self.directory = directory
        return host

    def _connect(self) -> "_Link":
        dealer = self._context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.ROUTING_ID, self._routing_id)
        dealer.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_SYNCED_BYTES)
        if self._client_keys is not None:
            self._client_keys.apply(dealer)
        link = _Link(dealer)
        dealer.connect(self._address)
        return link

    def _receive_replies(self, dealer: zmq.Socket,
                         awaiting: Optional[tuple[int, float]]) -> tuple[Optional[tuple[int, float]], bool]:
        """``(awaiting, hinted)``: the sync still awaiting its reply, and whether a hint asks for a
        sync (never while one is in flight: the directory answers it after the change it hinted at)."""
        hinted = False
        while True:
            try:
                frames = dealer.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return awaiting, hinted
            try:
                if len(frames) != 1:
                    raise DecodeError(f"a reply of {len(frames)} frames")
                reply = protocol.decode_reply(frames[0])
            except DecodeError as error:
                self.counters["malformed_replies"] += 1
                _log.warning(self._address, "malformed_reply", "discovery: ignored a malformed reply from %s: %s",
                             self._address, truncate(error))
                continue
            if isinstance(reply, Changed):
                self.counters["hints"] += 1
                hinted = hinted or awaiting is None
                continue
            if awaiting is None or reply.seq != awaiting[0]:
                continue  # a late answer to a sync we already gave up on
            if isinstance(reply, Refused):
                self._refused(reply)
            elif isinstance(reply, Synced):
                self._refusals = 0
                self._apply(reply)
            awaiting = None

    def _refused(self, reply: Refused) -> None:
        self.counters["refused"] += 1
        self._refusals = min(self._refusals + 1, 16)
        _log.warning(self._address, "refused", "discovery: the directory at %s refused this node: %s",
                     self._address, truncate(reply.reason))
        if "node id" in reply.reason:
            self.node_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"  # ours was taken while we were away

    def _apply(self, reply: Synced) -> None:
        with self._lock:
            for topic, watches in self._watches.items():
                endpoints = reply.endpoints.get(topic)
                if endpoints is None:
                    continue  # not asked in that sync (watched since): the next reply says
                for watch in watches:
                    watch.update(endpoints, warming=reply.warming)



class _Link:
    """The agent's DEALER to the directory, and ``dropped``: libzmq's monitor of it, readable once
    its connection dropped (a sync in flight is then lost, not slow)."""

    def __init__(self, dealer: zmq.Socket) -> None:
        self.dealer = dealer
        self.dropped = dealer.get_monitor_socket(zmq.EVENT_DISCONNECTED)

    def drained(self) -> bool:
        """Read every event waiting on ``dropped``; whether there was one."""
        seen = False
        while True:
            try:
                self.dropped.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return seen
            seen = True

    def close(self, linger: int) -> None:
        self.dealer.disable_monitor()
        self.dropped.close(linger=0)
        self.dealer.close(linger=linger)
