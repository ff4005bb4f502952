"""What the Wrapyfi-wire transports of one process share: a ZeroMQ context, the broker and device
this process started, and the announcer of listeners still waiting for their first message."""

from __future__ import annotations

import atexit
import json
import threading
import weakref
from typing import Any, Optional

import zmq

from wrapyfi_like.background import start_thread
from wrapyfi_like.middlewares.wrapyfi_zeromq.broker import REBROADCAST_S, Broker, Device
from wrapyfi_like.middlewares.wrapyfi_zeromq.settings import BrokerAddress, DeviceAddress, monitor_topic

EXIT_LINGER_MS = 500
"""How long messages still queued at interpreter exit may hold it up."""


class WireSession:
    """One per process by default (:meth:`get`); a test may build its own and close it."""

    _instance: Optional["WireSession"] = None
    _instance_lock = threading.Lock()

    @classmethod
    def get(cls) -> "WireSession":
        with cls._instance_lock:
            if cls._instance is None or cls._instance.closed:
                cls._instance = cls()
                atexit.register(cls._instance.close)
            return cls._instance

    def __init__(self) -> None:
        self.context = zmq.Context()
        self.closed = False
        self._lock = threading.Lock()
        self._brokers: dict[BrokerAddress, Optional[Broker]] = {}
        self._devices: dict[DeviceAddress, Optional[Device]] = {}
        self._transports: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self._announcer: Optional[_Announcer] = None

    def ensure_broker(self, address: BrokerAddress) -> None:
        """Start a broker on ``address`` unless one runs (here or elsewhere)."""
        with self._lock:
            if address not in self._brokers:
                self._brokers[address] = Broker.start(self.context, address)

    def ensure_device(self, address: DeviceAddress) -> None:
        """Start a request/reply device on ``address`` unless one runs (here or elsewhere)."""
        with self._lock:
            if address not in self._devices:
                self._devices[address] = Device.start(self.context, address)

    def socket(self, kind: int, owner: Any) -> zmq.Socket:
        """A new socket; ``owner`` (a transport) is closed with the session."""
        self._transports.add(owner)
        socket = self.context.socket(kind)
        socket.setsockopt(zmq.LINGER, EXIT_LINGER_MS)
        return socket

    def announce(self, address: BrokerAddress, topic: str) -> None:
        """Send ``{topic: 1}`` on the monitor topic every :data:`REBROADCAST_S` s until
        :meth:`stop_announcing`, so Wrapyfi publishers waiting for a listener see this one."""
        with self._lock:
            if self._announcer is None:
                self._announcer = _Announcer(self.context)
            self._announcer.add(address.xsub, topic)

    def stop_announcing(self, address: BrokerAddress, topic: str) -> None:
        with self._lock:
            if self._announcer is not None:
                self._announcer.remove(address.xsub, topic)

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        for transport in list(self._transports):
            transport.close()
        if self._announcer is not None:
            self._announcer.stop()
        for loop in [*self._brokers.values(), *self._devices.values()]:
            if loop is not None:
                loop.stop()
        self.context.term()


class _Announcer:
    """One thread and one PUB per broker announcing every waiting listener's topic."""

    def __init__(self, context: zmq.Context) -> None:
        self._context = context
        self._topics: dict[str, set[str]] = {}
        self._lock = threading.RLock()  # entered as itself: a Ctrl-C inside Condition.__enter__ (Python code) leaks the lock
        self._changed = threading.Condition(self._lock)
        self._stopping = False
        self._thread = start_thread(self._run, "wrapyfi_like-announcer")

    def add(self, xsub: str, topic: str) -> None:
        with self._lock:
            self._topics.setdefault(xsub, set()).add(topic)
            self._changed.notify()

    def remove(self, xsub: str, topic: str) -> None:
        with self._lock:
            self._topics.get(xsub, set()).discard(topic)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._changed.notify()
        self._thread.join(1.0)

    def _run(self) -> None:
        sockets: dict[str, zmq.Socket] = {}
        monitor = monitor_topic().encode()
        try:
            with self._lock:
                while not self._stopping:
                    for xsub, topics in self._topics.items():
                        if xsub not in sockets:
                            sockets[xsub] = self._context.socket(zmq.PUB)
                            sockets[xsub].setsockopt(zmq.LINGER, 0)
                            sockets[xsub].connect(xsub)
                        for topic in topics:
                            sockets[xsub].send_multipart([monitor, json.dumps({topic: 1}).encode()])
                    self._changed.wait(REBROADCAST_S)
        finally:
            for socket in sockets.values():
                socket.close()
