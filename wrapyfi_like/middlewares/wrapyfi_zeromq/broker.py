"""Wrapyfi's pub/sub broker and request/reply device, started by this process when none runs.

Wrapyfi 0.5.0 routes every message through an XPUB/XSUB broker (publishers connect to the XSUB,
listeners to the XPUB) and every request through a ROUTER/DEALER device. Whoever binds the ports
first runs them for everyone; a later bind fails with EADDRINUSE, which means "one runs: use it".
Both run in a daemon thread and die with this process, as Wrapyfi's do.

The broker also does the job of Wrapyfi's subscription monitor, wire-compatibly
(``[b"ZEROMQ/CONNECTIONS", b'{"/topic": n, ...}']``) but better:

- counts go +1 per subscription and -1 per unsubscription, never below 0 (Wrapyfi resets a topic to
  0 when any one of its listeners leaves);
- counts go out at once on every change (Wrapyfi sleeps 1 s per event);
- counts are re-broadcast every :data:`REBROADCAST_S` seconds, so a Wrapyfi ``should_wait``
  publisher started after its listener subscribed does not wait forever (Wrapyfi's monitor only
  speaks on a subscription event).
"""

from __future__ import annotations

import errno
import json
import logging
import threading
import time
from typing import Optional

import zmq

from wrapyfi_like.background import start_thread
from wrapyfi_like.middlewares.wrapyfi_zeromq.settings import BrokerAddress, DeviceAddress, monitor_topic

logger = logging.getLogger("wrapyfi_like.wrapyfi_zeromq")

REBROADCAST_S = 0.5
"""How often the broker repeats the subscriber counts."""
_POLL_MS = 100
"""How often the loops look at their stop flag."""
_BURST = 256
"""Messages forwarded per socket per loop turn, so one busy direction cannot starve the other."""


def _bind_pair(context: zmq.Context, kinds: tuple[int, int], addresses: tuple[str, str],
               options: tuple[dict, dict]) -> Optional[tuple[zmq.Socket, zmq.Socket]]:
    """Both sockets bound, or None if either address is taken (another broker or device runs)."""
    sockets = []
    try:
        for kind, address, opts in zip(kinds, addresses, options):
            socket = context.socket(kind)
            sockets.append(socket)
            socket.setsockopt(zmq.LINGER, 500)
            for option, value in opts.items():
                socket.setsockopt(option, value)
            socket.bind(address)
    except zmq.ZMQError as error:
        for socket in sockets:
            socket.close(linger=0)
        if error.errno == errno.EADDRINUSE:
            return None
        raise
    return sockets[0], sockets[1]


class _Loop:
    """A daemon thread running ``_turn`` until :meth:`stop`."""

    name = "loop"

    def _start(self) -> None:
        self._stopping = threading.Event()
        self._thread = start_thread(self._run, f"wrapyfi_like-{self.name}")

    def stop(self, timeout: float = 1.0) -> None:
        self._stopping.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._turn()
            self._turn()  # forward what arrived while stopping (a publisher's last messages)
        except zmq.ZMQError as error:
            logger.error("the Wrapyfi-wire %s stopped: %s", self.name, error)
        finally:
            self._close()

    def _turn(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


def _forward(source: zmq.Socket, target: zmq.Socket) -> int:
    """Move up to :data:`_BURST` messages while ``target`` can take them (a message waits in
    ``source`` while it cannot: a DEALER with no server connected keeps requests queued)."""
    moved = 0
    while moved < _BURST and target.getsockopt(zmq.EVENTS) & zmq.POLLOUT:
        try:
            frames = source.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            break
        target.send_multipart(frames, copy=False)
        moved += 1
    return moved


class Broker(_Loop):
    """The XPUB/XSUB broker with its subscription counts; see the module docstring."""

    name = "broker"

    @classmethod
    def start(cls, context: zmq.Context, address: BrokerAddress) -> Optional["Broker"]:
        """A running broker on ``address``, or None if another process (or thread) has one there."""
        verbose = getattr(zmq, "XPUB_VERBOSER", zmq.XPUB_VERBOSE)  # VERBOSER: every unsubscription too
        sockets = _bind_pair(context, (zmq.XPUB, zmq.XSUB), (address.xpub, address.xsub), ({verbose: 1}, {}))
        if sockets is None:
            logger.debug("a broker runs on %s / %s already: using it", address.xpub, address.xsub)
            return None
        logger.info("started a Wrapyfi-wire broker on %s / %s", address.xpub, address.xsub)
        return cls(*sockets)

    def __init__(self, xpub: zmq.Socket, xsub: zmq.Socket) -> None:
        self._xpub = xpub
        self._xsub = xsub
        self._topic = monitor_topic()
        self._counts: dict[str, int] = {}
        self._last_broadcast = 0.0
        self._poller = zmq.Poller()
        self._poller.register(xpub, zmq.POLLIN)
        self._poller.register(xsub, zmq.POLLIN)
        self._start()

    def _turn(self) -> None:
        wait = max(0.0, self._last_broadcast + REBROADCAST_S - time.monotonic())
        ready = dict(self._poller.poll(min(_POLL_MS, int(wait * 1000) + 1)))
        if self._xsub in ready:
            _forward(self._xsub, self._xpub)
        if self._xpub in ready and self._subscriptions():
            self._broadcast()
        elif time.monotonic() >= self._last_broadcast + REBROADCAST_S:
            self._broadcast()

    def _subscriptions(self) -> bool:
        """Forward (un)subscriptions upstream and count them; True if a count changed."""
        changed = False
        for _ in range(_BURST):
            try:
                event = self._xpub.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            self._xsub.send(event)
            if len(event) < 2 or event[0] not in (0, 1):
                continue  # a subscription to everything ("") is not a listener of any topic, as in Wrapyfi
            topic = event[1:].decode("utf-8", "replace")
            if topic == self._topic:
                continue
            before = self._counts.get(topic, 0)
            self._counts[topic] = before + 1 if event[0] == 1 else max(0, before - 1)
            changed |= self._counts[topic] != before
        return changed

    def _broadcast(self) -> None:
        self._last_broadcast = time.monotonic()
        if self._counts:
            self._xpub.send_multipart([self._topic.encode(), json.dumps(self._counts).encode()])

    def _close(self) -> None:
        self._xpub.close()
        self._xsub.close()


class Device(_Loop):
    """The ROUTER/DEALER request/reply device: clients' REQ → ROUTER → DEALER → servers' REP."""

    name = "device"

    @classmethod
    def start(cls, context: zmq.Context, address: DeviceAddress) -> Optional["Device"]:
        """A running device on ``address``, or None if another process (or thread) has one there."""
        sockets = _bind_pair(context, (zmq.ROUTER, zmq.DEALER), (address.router, address.dealer), ({}, {}))
        if sockets is None:
            logger.debug("a request/reply device runs on %s / %s already: using it", address.router, address.dealer)
            return None
        logger.info("started a Wrapyfi-wire request/reply device on %s / %s", address.router, address.dealer)
        return cls(*sockets)

    def __init__(self, router: zmq.Socket, dealer: zmq.Socket) -> None:
        self._router = router
        self._dealer = dealer
        self._start()

    def _turn(self) -> None:
        # requests are taken from the ROUTER only while a server can take them; until then wait
        # for the DEALER to become writable (a server connecting) instead of spinning
        poller = zmq.Poller()
        if self._dealer.getsockopt(zmq.EVENTS) & zmq.POLLOUT:
            poller.register(self._router, zmq.POLLIN)
            poller.register(self._dealer, zmq.POLLIN)
        else:
            poller.register(self._dealer, zmq.POLLIN | zmq.POLLOUT)
        ready = dict(poller.poll(_POLL_MS))
        if self._router in ready:
            _forward(self._router, self._dealer)
        if self._dealer in ready:
            _forward(self._dealer, self._router)

    def _close(self) -> None:
        self._router.close()
        self._dealer.close()
