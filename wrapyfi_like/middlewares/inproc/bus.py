"""The in-memory bus: who listens to or serves which topic, and a bounded inbox for each of them.

A bus stands in for the network and for discovery at once: it is the session of the in-memory
transports (:class:`wrapyfi_like.middlewares.base.Session`), passed to each at construction.
Transports on one bus find each other by exact topic, as ZeroMQ transports do through discovery.
Every inbox is bounded, so a slow listener makes its publisher wait as a full ZeroMQ queue does,
and nothing is dropped.

:func:`current_bus` is the bus new transports join: the process-wide default, or the bus of the
innermost :func:`wrapyfi_like.testing.inproc_middleware` block, which closes its bus on exit so
one test's communicators can never reach into the next test.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable, Optional

from wrapyfi_like.exceptions import ClosedError
from wrapyfi_like.middlewares.base import check_carrier
from wrapyfi_like.middlewares.deadlines import deadline_after, remaining_seconds
from wrapyfi_like.limits import check_topic

QUEUE_CAPACITY = 1000
"""Messages an inbox holds before a sender waits for room (ZeroMQ's default high-water mark)."""

LISTENERS, SERVICES = "listener", "service"


def oversize(frames: list, max_message_size: int) -> Optional[str]:
    """Why ``frames`` may not be received (larger than ``max_message_size``, as the socket would
    refuse it), or None."""
    size = sum(frame.nbytes for frame in frames)
    return f"a message of {size} bytes arrived; max_message_size is {max_message_size}" \
        if size > max_message_size else None


def copy_frames(frames: list) -> list[memoryview]:
    """Writable copies of ``frames``, as a receiver gets them from a socket.

    The copy is what makes the in-memory path behave like the wire: a sender that changes its
    array after sending does not change what was received, and each receiver owns its buffers.
    """
    return [memoryview(bytearray(frame)) for frame in frames]


def share_frames(frames: list) -> list[memoryview]:
    """Views of ``frames`` themselves, not copies: what ``zero_copy="unsafe"`` delivers.

    Why: with that opt-out the ZeroMQ transport hands the sender's buffers to libzmq and returns
    before they are sent, so a sender that reuses its array changes what is delivered. Sharing the
    buffers here lets a unit test see that hazard instead of a copy that hides it. (The listeners
    of one message share its buffers too, which over ZeroMQ they would not.)
    """
    return [memoryview(frame) for frame in frames]


class Inbox:
    """A bounded FIFO for one receiver. ``put`` waits for room; ``get`` waits for a message."""

    def __init__(self, owner: str, capacity: Optional[int] = QUEUE_CAPACITY) -> None:
        self.owner = owner
        self._capacity = capacity
        self._items: deque = deque()
        self._lock = threading.RLock()  # entered as itself: a Ctrl-C inside Condition.__enter__ (Python code) leaks the lock
        self._changed = threading.Condition(self._lock)
        self.closed = False

    def put(self, item: Any, deadline: Optional[float] = None,
            abandoned: Callable[[], bool] = lambda: False, depth: Optional[int] = None) -> bool:
        """Queue ``item``, waiting while ``depth`` (default: the capacity) messages wait already;
        False (not queued) if the inbox closes, ``deadline`` passes or the sender is
        ``abandoned`` (closed) while waiting for room."""
        depth = self._capacity if depth is None else depth
        with self._lock:
            while depth is not None and len(self._items) >= depth:
                if self.closed or abandoned() or not self._wait(deadline):
                    return False
            if self.closed:
                return False
            self._items.append(item)
            self._changed.notify_all()
            return True

    def put_or_drop(self, item: Any, depth: int, drop_oldest: bool) -> bool:
        """Queue ``item`` without waiting; True if a message was lost because ``depth`` messages
        were already waiting: ``item`` itself, or with ``drop_oldest`` the oldest waiting one."""
        with self._lock:
            if self.closed:
                return False
            lost = len(self._items) >= depth
            if lost and not drop_oldest:
                return True
            if lost:
                self._items.popleft()
            self._items.append(item)
            self._changed.notify_all()
            return lost

    def take_matching(self, matches: Callable[[Any], bool]) -> list:
        """Remove and return, oldest first, every waiting item for which ``matches`` is true."""
        with self._lock:
            taken, kept = [], deque()
            for item in self._items:
                (taken if matches(item) else kept).append(item)
            if taken:
                self._items = kept
                self._changed.notify_all()
            return taken

    def get(self, timeout: Optional[float]) -> Any:
        """The oldest item, or None if ``timeout`` seconds pass first (None: wait as long as it
        takes). Raises :class:`ClosedError` once the inbox is closed, also while waiting."""
        deadline = deadline_after(timeout)
        with self._lock:
            while True:
                if self.closed:
                    raise ClosedError(f"{self.owner} is closed")
                if self._items:
                    item = self._items.popleft()
                    self._changed.notify_all()
                    return item
                if not self._wait(deadline):
                    return None

    def _wait(self, deadline: Optional[float]) -> bool:
        """Wait for a change; False once ``deadline`` has passed."""
        if deadline is not None and time.monotonic() >= deadline:
            return False
        self._changed.wait(remaining_seconds(deadline))
        return True

    def wake(self) -> None:
        """Let waiting senders re-check whether they were abandoned."""
        with self._lock:
            self._changed.notify_all()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._items.clear()
            self._changed.notify_all()


class Bus:
    """Topic → inboxes of its listeners, and service topic → inboxes of its servers."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.RLock()  # entered as itself: a Ctrl-C inside Condition.__enter__ (Python code) leaks the lock
        self._changed = threading.Condition(self._lock)
        self._members: dict[tuple[str, str], list[Inbox]] = {}
        self.closed = False

    def check_open(self, what: str) -> None:
        if self.closed:
            raise ClosedError(f"{what}: {self.name} is closed (its inproc_middleware block has ended)")

    def join(self, kind: str, topic: str, inbox: Inbox) -> None:
        with self._lock:
            self.check_open(inbox.owner)
            self._members.setdefault((kind, topic), []).append(inbox)
            self._changed.notify_all()

    def leave(self, kind: str, topic: str, inbox: Inbox) -> None:
        with self._lock:
            members = self._members.get((kind, topic), [])
            if inbox in members:
                members.remove(inbox)
            if not members:
                self._members.pop((kind, topic), None)
            self._changed.notify_all()

    def members(self, kind: str, topic: str) -> list[Inbox]:
        with self._lock:
            return list(self._members.get((kind, topic), ()))

    def wait_for_members(self, kind: str, topic: str, deadline: Optional[float],
                         abandoned: Callable[[], bool]) -> list[Inbox]:
        """The inboxes of ``topic`` once there is one; empty if ``deadline`` passes or the
        waiter is ``abandoned`` first."""
        with self._lock:
            while not self._members.get((kind, topic)):
                if self.closed or abandoned():
                    return []
                if deadline is not None and time.monotonic() >= deadline:
                    return []
                self._changed.wait(remaining_seconds(deadline))
            return list(self._members[(kind, topic)])

    def topics(self, kind: str = LISTENERS) -> list[str]:
        """Topics with at least one listener (or server, for ``kind=SERVICES``), sorted."""
        with self._lock:
            return sorted(topic for member_kind, topic in self._members if member_kind == kind)

    def wake(self) -> None:
        """Let every waiter re-check whether it was abandoned."""
        with self._lock:
            self._changed.notify_all()
            inboxes = [inbox for members in self._members.values() for inbox in members]
        for inbox in inboxes:
            inbox.wake()

    def close(self) -> None:
        """Close every inbox; transports on this bus raise :class:`ClosedError` from now on."""
        with self._lock:
            self.closed = True
            inboxes = [inbox for members in self._members.values() for inbox in members]
            self._members.clear()
            self._changed.notify_all()
        for inbox in inboxes:
            inbox.close()


class Member:
    """What an in-memory listener and server share: an inbox on ``bus`` under their exact
    topic, joined on creation and left on :meth:`close`. Topic and carrier are checked as ZeroMQ
    checks them when it binds, so a typo fails in the unit test, not in production."""

    def __init__(self, kind: str, role: str, topic: str, carrier: str, info: Optional[dict],
                 max_message_size: int, bus: Bus) -> None:
        check_topic(topic)
        check_carrier(carrier)
        self.topic = topic
        self.info = dict(info or {})
        self._max_message_size = max_message_size
        self._kind = kind
        self._bus = bus
        self._inbox = Inbox(f"{role} on {topic}")
        self._bus.join(kind, topic, self._inbox)

    def close(self) -> None:
        self._bus.leave(self._kind, self.topic, self._inbox)
        self._inbox.close()


_default_bus = Bus("the process-wide in-memory bus")
_active_buses: list[Bus] = []
_buses_lock = threading.Lock()


def current_bus() -> Bus:
    """The bus new in-memory transports join unless given one (``session=``)."""
    with _buses_lock:
        return _active_buses[-1] if _active_buses else _default_bus


def push_bus(bus: Bus) -> None:
    with _buses_lock:
        _active_buses.append(bus)


def pop_bus(bus: Bus) -> None:
    with _buses_lock:
        _active_buses.remove(bus)
