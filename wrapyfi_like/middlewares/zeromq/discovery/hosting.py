"""The directory's socket: where the hosting agent reads requests and writes their replies.

Without CURVE, :class:`ZmtpHost` reads with our own ZMTP reader (:class:`~..router.ZmtpRouter`),
so no peer can make the host hold more than the limits below, whatever it sends: each request is
bounded (:data:`~.protocol.MAX_REQUEST_BYTES`, checked at each frame's header before the frame is
read, so an unfinished message of huge frames is refused, never held), one connection holds at
most that many bytes of waiting requests, all connections together at most :data:`REQUEST_QUEUE`
requests, and a peer that never reads its replies costs only its own replies
(:data:`REQUEST_QUEUE` of them and :data:`~.protocol.MAX_REQUEST_BYTES` besides the one being
written; one more is dropped and counted as ``unsent``). Each connection has one request at a
time (the router's ``serial``: our agents keep one sync in flight): its next request is not read
until the previous one is answered and the reply written, so the shared queue holds one request
per connection and serves them in turn, and a peer that sends without reading is answered only
as fast as it reads, then not read at all (with the directory's cached replies, a 256-key
watch sync costs well under a millisecond). A node's identity is its DEALER's
routing id (our agents set one): a new connection with the identity of a live one takes over,
as libzmq's ``ZMQ_ROUTER_HANDOVER``, so a reconnecting agent keeps its node id; a request the
old connection had sent and the reader had read (a bye behind a sync) is still handled.

With CURVE, :class:`CurveHost` keeps libzmq's ROUTER: its peers are authenticated by ZAP (the
directory binds a node to the key too), and libzmq bounds each frame but holds a request whole.

Both also write the directory's ``changed`` hints (:meth:`ZmtpHost.send_hints`) on the watcher's
own connection, found by its routing id, and never wait to: a hint goes in the same bounded outbox
as the replies (with CURVE, libzmq's queue), and one that does not fit, or whose connection is
gone, is dropped (by our reader counted as ``hints_unsent``); the watcher's periodic sync still comes.
"""

from __future__ import annotations

import logging
import time
from typing import Optional

import zmq

from wrapyfi_like.logs import RateLimitedLog
from wrapyfi_like.middlewares.zeromq.discovery import protocol
from wrapyfi_like.middlewares.zeromq.discovery.directory import Directory, Peer
from wrapyfi_like.middlewares.zeromq.router import Outlet, ZmtpRouter
from wrapyfi_like.middlewares.zeromq.wakeup import Wakeup

logger = logging.getLogger("wrapyfi_like.zeromq.discovery")
_log = RateLimitedLog(logger)

REQUEST_QUEUE = 8
"""Replies held per directory connection for a peer that does not read them; with CURVE (libzmq),
also requests held per connection."""
QUEUED_REQUESTS = 64
"""Requests waiting for the host from all connections together (ZMTP reader): beyond them no
connection is read until the host takes some, and TCP holds the rest at the senders."""
MAX_CONNECTIONS = protocol.MAX_NODES + 64
"""Connections the directory accepts at once (ZMTP reader): one per node, room for tools
listing the directory. Each costs a 64 KiB read buffer at most while it is read, 70 MiB in all."""


class ZmtpHost:
    """The directory at ``address`` read by our own reader; raises ``OSError`` if the address is
    taken (another process hosts)."""

    def __init__(self, address: str, directory: Directory) -> None:
        self.directory = directory
        self._ready = Wakeup()
        try:
            self._router = ZmtpRouter(address, protocol.MAX_REQUEST_BYTES, QUEUED_REQUESTS, REQUEST_QUEUE,
                                      self._refused, head_frames=0, handover=True, notify=self._ready,
                                      max_connections=MAX_CONNECTIONS, serial=True)
        except BaseException:
            self._ready.close()
            raise

    def fileno(self) -> int:
        """Readable while requests wait (poll it with the agent's other sockets)."""
        return self._ready.fileno()

    def serve(self, until: float) -> None:
        """Answer waiting requests until none is left or the clock passes ``until``."""
        self._ready.clear()
        while True:
            if time.monotonic() >= until:
                self._ready.set()  # more may wait: the next poll comes back here at once
                return
            received = self._router.take(0)
            if received is None:
                return
            outlet, frames = received
            try:
                reply = self._answer(outlet, frames)
            finally:
                # before the reply goes out: an agent sends its next sync as soon as it has the
                # reply, and must not find its connection still held (a wake-up per sync)
                self._router.done(outlet)
            if reply is not None and not self._router.send(outlet, [reply]):
                self.directory.counters["unsent"] += 1

    def _answer(self, outlet: Outlet, frames: list) -> Optional[bytes]:
        peer = Peer(outlet.identity, None, outlet.address)
        if len(frames) != 1:
            self.directory.counters["malformed"] += 1
            _log.warning(peer.source, "malformed", "discovery: ignored a request of %d frames from peer %s",
                         len(frames), peer.source)
            return None
        return self.directory.handle(peer, bytes(frames[0]))

    def expire(self) -> int:
        """Expire the directory's nodes (:meth:`~.directory.Directory.expire`), allowing for every
        connection open now (those whose handshake is not read yet too: an agent that reconnected)."""
        return self.directory.expire(self._router.connections())

    def send_hints(self) -> None:
        """Send the hints the directory owes now (:meth:`~.directory.Directory.due_hints`)."""
        for peer in self.directory.due_hints():
            outlet = self._router.outlet(peer.routing_id)
            if outlet is None or not self._router.send(outlet, [protocol.CHANGED]):
                self.directory.counters["hints_unsent"] += 1

    def close(self) -> None:
        self._router.release()
        self._ready.close()

    def _refused(self, outlet: Outlet, heads: list, problem: str) -> None:
        """A request over the limits: counted as malformed, never held (told from the reading thread,
        so under a key of its own: the agent's thread updates the other counts meanwhile)."""
        self.directory.counters["refused_size"] += 1
        source = outlet.identity.hex()
        _log.warning(source, "malformed", "discovery: refused a request from peer %s: %s", source, problem)


class CurveHost:
    """The directory at ``address`` on a libzmq ROUTER with the CURVE ``keys``; raises
    ``zmq.ZMQError`` if the address is taken."""

    def __init__(self, context: zmq.Context, address: str, directory: Directory, keys) -> None:
        self.directory = directory
        self._socket = context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self._socket.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_REQUEST_BYTES)
        self._socket.setsockopt(zmq.RCVHWM, REQUEST_QUEUE)
        self._socket.setsockopt(zmq.SNDHWM, REQUEST_QUEUE)
        keys.apply(self._socket)
        try:
            self._socket.bind(address)
        except zmq.ZMQError:
            self._socket.close(linger=0)
            raise

    def fileno(self) -> zmq.Socket:
        """What to poll (a ZeroMQ poller takes the socket itself)."""
        return self._socket

    def serve(self, until: float) -> None:
        """Answer waiting requests until none is left or the clock passes ``until``."""
        while time.monotonic() < until:
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            peer = Peer(frames[0].bytes, _property(frames[-1], "User-Id"), _property(frames[-1], "Peer-Address") or "")
            if len(frames) != 2:
                self.directory.counters["malformed"] += 1
                _log.warning(peer.source, "malformed", "discovery: ignored a request of %d frames from peer %s",
                             len(frames) - 1, peer.source)
                continue
            reply = self.directory.handle(peer, frames[1].bytes)
            if reply is not None:
                try:  # a ROUTER drops (never blocks) what a peer that does not read has no room for
                    self._socket.send(frames[0].bytes, zmq.SNDMORE | zmq.NOBLOCK)
                    self._socket.send(reply, zmq.NOBLOCK, copy=len(reply) < zmq.COPY_THRESHOLD)
                except zmq.ZMQError:
                    self.directory.counters["unsent"] += 1

    def expire(self) -> int:
        """Expire the directory's nodes on its timer alone: libzmq's ROUTER does not say how many
        connections it has, so a CURVE directory that is behind gives no grace."""
        return self.directory.expire()

    def send_hints(self) -> None:
        """Send the hints the directory owes now. libzmq's ROUTER never waits either: it drops, without
        telling (so uncounted), a hint to a peer that is gone or whose queue is full."""
        for peer in self.directory.due_hints():
            try:
                self._socket.send(peer.routing_id, zmq.SNDMORE | zmq.NOBLOCK)
                self._socket.send(protocol.CHANGED, zmq.NOBLOCK)
            except zmq.ZMQError:
                self.directory.counters["hints_unsent"] += 1

    def close(self) -> None:
        self._socket.close(linger=0)


def _property(frame: zmq.Frame, name: str) -> Optional[str]:
    """A metadata property of the connection ``frame`` came over, or None if it has none."""
    try:
        return frame.get(name)
    except zmq.ZMQError:
        return None
