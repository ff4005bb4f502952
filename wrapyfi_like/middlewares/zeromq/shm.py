"""Same-host payloads in shared memory: every iceoryx2 call of the project is in this module.

iceoryx2 (the optional extra ``wrapyfi_like[shm]``) is a 0.x library whose Python API changes
with every minor release, so it is pinned to the 0.10 series and touched only here; its contract
is tested by tests/test_shm.py.

Each ``carrier="shm"`` listener owns one iceoryx2 publish/subscribe service (its *inbox*, named
after its ZeroMQ endpoint) with one subscriber; each publisher that reaches it over the same host
opens a publisher port on that inbox (:class:`Port`). Why the listener owns it: the subscriber
exists before any publisher sends, so a sample is never sent into a service nobody reads yet, and
a listener knows at start whether shared memory works for it at all (and only then says so in
discovery).

Limits, set explicitly because iceoryx2 preallocates each publisher port's data segment for the
worst case: ``slot × (max_subscribers × (buffer + borrowed) + history + loaned)``, here
``slot × (1 × (BUFFER + BORROWED) + 0 + LOANED)`` = **12 × slot** per publisher→listener pair,
where ``slot`` is the largest message's shm payload rounded up to a power of two. The segment is
sparse on tmpfs (only touched chunks use memory), but a container's ``/dev/shm`` must hold the
touched part: Docker's default ``--shm-size=64m`` is too small for a 64 MB stream (touching
beyond it kills the process with SIGBUS); give it ``--shm-size`` ≥ 12 × slot × pairs, or
``--ipc=host``.

Publisher ports never block in iceoryx2: the service's overflow policy is ``DiscardData``
without safe overflow, so a full inbox makes ``send`` reach 0 subscribers rather than
``RetryUntilDelivered``, which waits while holding the GIL and stalls for good on a subscriber
that died holding samples. A publisher that may wait (``backpressure="block"``) waits instead on
the inbox's *room* event, which the listener notifies each time it takes a sample out, for at
most :data:`ROOM_WAIT` (the wait releases the GIL), and sends again; the caller sends frames
if there is still no room.
"""

from __future__ import annotations

import atexit
import ctypes
import gc
import hashlib
import logging
import os
import struct
import threading
import time
import weakref
from typing import Any, Optional

import numpy as np

from wrapyfi_like.logs import RateLimitedLog

logger = logging.getLogger("wrapyfi_like.zeromq.shm")
_log = RateLimitedLog(logger)

PREFIX_VARIABLE = "WRAPYFI_LIKE_SHM_PREFIX"
DEFAULT_PREFIX = "wlk_"
"""iceoryx2's file prefix for this project's shared-memory objects: keeps them apart from other
iceoryx2 users (tests use one prefix per test)."""
MAX_PUBLISHERS = 8
"""Publishers one listener's inbox takes; the next ones send it ordinary frames."""
BUFFER = 4
"""Samples waiting in an inbox per publisher; when full, the publisher sends frames instead."""
assert BUFFER >= 2, "Inbox._notify_room relies on a full queue holding two samples or more"
BORROWED = 6
"""Samples a listener may hold at once (arrays handed to the user, plus one being matched)."""
LOANED = 2
"""Samples a publisher port has loaned at once: one the user fills (``loan``), one being sent."""
ROOM_WAIT = 0.1
"""Seconds a waiting publisher gives a full inbox to make room before it sends frames instead
(one :data:`~wrapyfi_like.middlewares.deadlines.SIGNAL_CHECK` slice: a listener that is alive
takes its next sample far sooner; a dead or stalled one costs this much per message until its
connection is closed)."""
ALIGN = 64
"""Byte alignment of each buffer inside a sample (cache line; numpy and torch need far less)."""

_lock = threading.Lock()
_state: dict[str, Any] = {}
_open: "weakref.WeakSet[Any]" = weakref.WeakSet()  # inboxes and ports, closed at exit before the node


def _iceoryx2() -> Optional[Any]:
    """The iceoryx2 module, or None when it cannot be imported (logged once)."""
    with _lock:
        if "module" not in _state:
            try:
                import iceoryx2
                iceoryx2.set_log_level(iceoryx2.LogLevel.Error)  # else: "No config file was loaded…"
                _state.update(sample_calls(iceoryx2))
                _state["module"] = iceoryx2
            except Exception as error:  # ImportError, or a wheel that does not load on this system
                _state["module"] = None
                logger.warning("carrier='shm': iceoryx2 cannot be imported (%s); large payloads travel "
                               "as ordinary ZeroMQ frames (install wrapyfi_like[shm])", error)
        return _state["module"]


def sample_calls(iox: Any) -> dict[str, Any]:
    """How a publisher port loans a slice sample (``loan(publisher, n)``) and marks it written
    (``initialized(sample)``), chosen once per process.

    iceoryx2's public ``loan_slice_uninit`` and ``assume_init`` are Python wrappers that check,
    on every call, with ``typing.get_origin``, that the service's payload type is a slice and not
    a flatbuffer (about 1 µs each, more with the cold caches of a message's path); ours is always
    a slice (:func:`_service`), so the ports call the native methods the wrappers call. Should a
    release no longer have them, the public wrappers are used instead."""
    loan = getattr(iox.Publisher, "__loan_slice_uninit", None)
    initialized = getattr(iox.SampleMutUninit, "__assume_init", None)
    if loan is None or initialized is None:
        return {"loan": iox.Publisher.loan_slice_uninit, "initialized": iox.SampleMutUninit.assume_init}
    return {"loan": loan, "initialized": initialized}


def available() -> bool:
    """Whether this process can use shared memory (iceoryx2 imports)."""
    return _iceoryx2() is not None


def prefix() -> str:
    """``WRAPYFI_LIKE_SHM_PREFIX`` (or :data:`DEFAULT_PREFIX`), read once per process: the node
    and the compatibility token must agree on it."""
    with _lock:
        return _state.setdefault("prefix", os.environ.get(PREFIX_VARIABLE, DEFAULT_PREFIX))


def compatibility() -> str:
    """A token equal for two processes exactly when they can share iceoryx2 memory: same kernel
    boot (same host), same ``/dev/shm`` file system (same IPC namespace), same user (iceoryx2
    creates its files 0600) and same prefix."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as file:
            boot = file.read().strip()
    except OSError:
        boot = ""
    try:
        shm_device = os.stat("/dev/shm").st_dev
    except OSError:
        shm_device = -1
    text = f"{boot}\0{shm_device}\0{os.getuid()}\0{prefix()}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _node() -> Any:
    """This process's iceoryx2 node (made once); making it also removes what dead nodes left."""
    iox = _iceoryx2()
    with _lock:
        node = _state.get("node")
        if node is None:
            config = iox.config.default()
            config.global_cfg.prefix = iox.FileName.new(_state.setdefault(
                "prefix", os.environ.get(PREFIX_VARIABLE, DEFAULT_PREFIX)))
            node = _state["node"] = iox.NodeBuilder.new().config(config).create(iox.ServiceType.Ipc)
            node.try_cleanup_dead_nodes()
            atexit.register(_shutdown)
        return node


def _shutdown() -> None:
    """At exit, close every port and inbox and drop the node, so iceoryx2 removes what this
    process made (left to interpreter teardown, its objects are never dropped and their files
    stay behind like a crashed process's until another node of the same prefix cleans them up;
    that node still removes whatever an exit could not)."""
    for handle in list(_open):
        handle.close()
    with _lock:
        _state.pop("node", None)
    gc.collect()


def cleanup_dead_nodes() -> tuple[int, int]:
    """Remove the shared memory and files of dead processes (same user, same prefix); returns
    ``(cleaned, failed)``."""
    state = _node().try_cleanup_dead_nodes()
    return state.cleanups, state.failed_cleanups


class _Header(ctypes.Structure):
    """The user header of every sample: which message it carries the payload of."""
    _fields_ = [("publisher", ctypes.c_uint8 * 8), ("seq", ctypes.c_uint64)]


_HEADER = struct.Struct("=8sQ")
""":class:`_Header`'s bytes, read and written at ``user_header_ptr`` directly: iceoryx2's
``user_header()`` builds a ctypes pointer type per call, which cost more than the rest of a
loaned send."""
assert _HEADER.size == ctypes.sizeof(_Header)
_HEADER_BYTES = ctypes.c_char * _HEADER.size
"""The header's bytes at an address: ``from_address`` and ``pack_into`` of this type cost about
half of ``ctypes.string_at`` and ``ctypes.memmove``, which go through a foreign-function call."""


def _write_header(sample: Any, publisher: bytes, seq: int) -> None:
    _HEADER.pack_into(_HEADER_BYTES.from_address(sample.user_header_ptr), 0, publisher, seq)


def _read_header(sample: Any) -> tuple[bytes, int]:
    return _HEADER.unpack(_HEADER_BYTES.from_address(sample.user_header_ptr).raw)


def service_name(endpoint: str) -> str:
    """The inbox service of the listener bound at ``endpoint`` (unique while it is bound)."""
    return "wrapyfi_like/" + hashlib.sha256(endpoint.encode()).hexdigest()[:40]


def _service(name: str, create: bool) -> Any:
    iox = _iceoryx2()
    builder = (_node().service_builder(iox.ServiceName.new(name))
               .publish_subscribe(iox.Slice[ctypes.c_uint8]).user_header(_Header)
               .max_publishers(MAX_PUBLISHERS).max_subscribers(1)
               .subscriber_max_buffer_size(BUFFER).subscriber_max_borrowed_samples(BORROWED)
               .history_size(0).enable_safe_overflow(False))
    return builder.create() if create else builder.open()


def room_name(endpoint: str) -> str:
    """The event service the inbox of the listener bound at ``endpoint`` notifies when it takes a
    sample out (iceoryx2 names a service for one messaging pattern only, hence a name of its own)."""
    return "wrapyfi_like/room/" + hashlib.sha256(endpoint.encode()).hexdigest()[:40]


def _room(endpoint: str, create: bool) -> Any:
    iox = _iceoryx2()
    builder = (_node().service_builder(iox.ServiceName.new(room_name(endpoint))).event()
               .max_notifiers(1).max_listeners(MAX_PUBLISHERS))
    return builder.create() if create else builder.open()


def _writable(address: int, nbytes: int) -> np.ndarray:
    """A uint8 array over a loaned sample's payload (the publisher's side)."""
    return np.frombuffer((ctypes.c_uint8 * nbytes).from_address(address), np.uint8)


class _Held:
    """A received sample's payload as numpy sees it, read-only, keeping the sample alive: an array
    made with ``np.asarray`` of it has it as ``base``, and the sample is released when the last
    array made from it is gone (cheaper than a ``weakref.finalize`` per message).

    The view is made from the address, not from ``Slice.as_memory_view``, which would not keep
    the sample alive (iceoryx2 #1548); and it is read-only in a way numpy will not undo
    (``flags.writeable = True`` raises), because the subscriber maps the segment read-only and a
    write would kill the process with SIGSEGV."""

    __slots__ = ("__array_interface__", "inbox", "sample")

    def __init__(self, inbox: "Inbox", sample: Any, address: int, nbytes: int) -> None:
        self.__array_interface__ = {"data": (address, True), "shape": (nbytes,), "typestr": "|u1", "version": 3}
        self.inbox = inbox
        self.sample = sample

    def __del__(self) -> None:
        self.inbox.release(self.sample)


class Inbox:
    """A listener's service and subscriber; hands out the payload of one message at a time."""

    def __init__(self, endpoint: str) -> None:
        self.name = service_name(endpoint)
        self._service = _service(self.name, create=True)
        self._subscriber = self._service.subscriber_builder().create()
        self._room_service = _room(endpoint, create=True)
        self._taken = self._room_service.notifier_builder().create()
        _open.add(self)
        self._waiting: dict[bytes, Any] = {}  # per publisher: a sample received ahead of its message
        self._held_lock = threading.Lock()  # arrays die (and release their sample) on any thread
        self.held = 0
        """Samples alive now (arrays handed out, and samples waiting for their message)."""

    def take(self, publisher: bytes, seq: int) -> Optional[Any]:
        """The sample of message ``seq`` of ``publisher``, or None when it never arrived.

        Samples of this publisher's older messages (messages that never reached this listener over
        ZeroMQ, counted there) are released; one of a later message, or of another publisher, waits
        for its own message (one per publisher, within the borrow limit, else it is released and
        its message counts as missed when it comes).
        """
        sample = self._waiting.pop(publisher, None) if self._waiting else None
        while True:
            if sample is None:
                if self.held >= BORROWED:
                    self._release_waiting()
                    if self.held >= BORROWED:
                        return None
                try:
                    sample = self._subscriber.receive()
                except shm_errors() as error:
                    logger.warning("shared-memory inbox: receive failed: %s", error)
                    return None
                if sample is None:
                    return None
                if self._subscriber.has_samples():  # else no publisher can be waiting for room
                    self._notify_room()
                with self._held_lock:
                    self.held += 1
            sender, number = _read_header(sample)
            if sender == publisher and number == seq:
                return sample
            if sender == publisher and number < seq:
                self.release(sample)
            elif sender not in self._waiting and self.held < BORROWED:
                self._waiting[sender] = sample
                if sender == publisher:
                    return None
            else:
                self.release(sample)
                if sender == publisher:
                    return None
            sample = None

    def _notify_room(self) -> None:
        """Tell waiting publishers there is room for one more sample; if that fails they send
        frames after :data:`ROOM_WAIT` instead, so delivery goes on (logged, at most every 10 s).

        Only a take that leaves samples in the inbox notifies: a publisher waits for room only
        after its queue held :data:`BUFFER` (≥ 2) samples, so the first take after that leaves
        at least one behind. A take that empties the inbox (every message of a listener that
        keeps up) then costs no system call: a publisher drains its room event before each send
        (:meth:`Port.send`), so each notification would be a datagram on the listener's path."""
        try:
            self._taken.notify()
        except shm_errors() as error:
            _log.warning(self.name, "shm-room", "shared-memory inbox %s: cannot notify its room (%s); "
                         "publishers waiting for it send frames", self.name, error)

    def size(self, sample: Any) -> int:
        """The length of the sample's payload, as iceoryx2 knows it (references are checked
        against it)."""
        return sample.header.number_of_elements

    def views(self, sample: Any, entries: list[tuple[int, int, int]], copy: bool) -> list[memoryview]:
        """A memoryview per ``(index, offset, nbytes)`` entry (checked against :meth:`size`
        already), read-only and keeping ``sample`` alive; with ``copy``, copies owned by the caller
        (and the sample is released at once).

        One entry (every ``loan``, and the common message) gets a view of exactly its bytes,
        without slicing a view of the whole payload first."""
        address = sample.payload_ptr
        if len(entries) == 1:
            _, offset, nbytes = entries[0]
            if copy:
                array = _writable(address + offset, nbytes).copy()
                self.release(sample)
                return [array.data]
            return [np.asarray(_Held(self, sample, address + offset, nbytes)).data]
        start = min(offset for _, offset, _ in entries)
        end = max(offset + nbytes for _, offset, nbytes in entries)
        if copy:
            whole = _writable(address + start, end - start).copy()
            self.release(sample)
        else:
            whole = np.asarray(_Held(self, sample, address + start, end - start))
        return [whole[offset - start:offset - start + nbytes].data for _, offset, nbytes in entries]

    def release(self, sample: Any) -> None:
        with self._held_lock:
            self.held -= 1
        sample.delete()

    def _release_waiting(self) -> None:
        for sample in self._waiting.values():
            self.release(sample)
        self._waiting.clear()

    def close(self) -> None:
        if self._service is None:
            return
        self._release_waiting()
        self._subscriber.delete()
        self._taken.delete()
        self._subscriber = self._service = self._taken = self._room_service = None


class Port:
    """One publisher's way into one listener's inbox."""

    def __init__(self, endpoint: str, first_size: int) -> None:
        iox = _iceoryx2()
        self._service = _service(service_name(endpoint), create=False)
        self._publisher = (self._service.publisher_builder().initial_max_slice_len(max(first_size, 1))
                           .allocation_strategy(iox.AllocationStrategy.PowerOfTwo)
                           .backpressure_strategy(iox.BackpressureStrategy.DiscardData)
                           .max_loaned_samples(LOANED).create())
        self._room_service = _room(endpoint, create=False)
        self._room = self._room_service.listener_builder().create()
        _open.add(self)

    def send(self, publisher: bytes, seq: int, buffers: list[memoryview], offsets: list[int], total: int,
             wait: bool = False) -> bool:
        """Copy ``buffers`` to ``offsets`` of one sample and send it; whether the listener got it.
        With ``wait``, a full inbox is given up to :data:`ROOM_WAIT` to make room, and each time
        the listener takes a sample out the message is copied and sent again."""
        if not wait:
            return self._send(publisher, seq, buffers, offsets, total)
        self._room.try_wait()  # what the listener took before: its room is there for this send
        deadline = None
        while not self._send(publisher, seq, buffers, offsets, total):
            if deadline is None:
                deadline = time.monotonic() + ROOM_WAIT
            left = deadline - time.monotonic()
            if left <= 0 or not self._room.timed_wait(_iceoryx2().Duration.from_secs_f64(left)):
                return False
        return True

    def _send(self, publisher: bytes, seq: int, buffers: list[memoryview], offsets: list[int], total: int) -> bool:
        sample = _state["loan"](self._publisher, total)
        _write_header(sample, publisher, seq)
        destination = _writable(sample.payload_ptr, total)
        for buffer, offset in zip(buffers, offsets):
            destination[offset:offset + buffer.nbytes] = np.frombuffer(buffer, np.uint8)
        del destination
        return _state["initialized"](sample).send() == 1

    def loan(self, nbytes: int) -> tuple[Any, np.ndarray]:
        """An unsent sample of ``nbytes`` and a writable uint8 array over its payload."""
        sample = _state["loan"](self._publisher, nbytes)
        return sample, _writable(sample.payload_ptr, nbytes)

    def send_loaned(self, sample: Any, publisher: bytes, seq: int) -> bool:
        """Send a loaned sample as message ``seq``; whether the listener got it."""
        _write_header(sample, publisher, seq)
        return _state["initialized"](sample).send() == 1

    @staticmethod
    def discard(sample: Any) -> None:
        sample.delete()

    def close(self) -> None:
        if self._service is None:
            return
        self._publisher.delete()
        self._room.delete()
        self._publisher = self._service = self._room = self._room_service = None


def aligned(size: int) -> int:
    return (size + ALIGN - 1) // ALIGN * ALIGN


def shm_errors() -> tuple[type, ...]:
    """What iceoryx2 raises when a service, port, loan or send fails (a failed open falls back)."""
    iox = _iceoryx2()
    names = ("PublishSubscribeOpenError", "PublishSubscribeCreateError", "PublisherCreateError",
             "SubscriberCreateError", "LoanError", "SendError", "ReceiveError", "NodeCreationFailure",
             "ConfigCreationError", "SemanticStringError", "AllocationGrowError", "NodeCleanupFailure",
             "EventCreateError", "EventOpenError", "ListenerCreateError", "ListenerWaitError",
             "NotifierCreateError", "NotifierNotifyError")
    return tuple(getattr(iox, name) for name in names if isinstance(getattr(iox, name, None), type)) + (OSError,)
