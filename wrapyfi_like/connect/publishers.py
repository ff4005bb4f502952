"""A publisher: data type → codec → transport, built once per topic and reused per message."""

from __future__ import annotations

import math
import threading
from typing import Any, ContextManager, Optional, Sequence

import numpy as np

from wrapyfi_like.connect.formats import ValueFormat
from wrapyfi_like.exceptions import ConfigurationError
from wrapyfi_like.limits import check_max_message_size, check_outgoing, check_queue_depth, check_topic
from wrapyfi_like.connect.wire import transports
from wrapyfi_like.middlewares.envelope import Group

BACKPRESSURE_POLICIES = ("block", "drop", "latest")
"""What a publisher does when a listener's queue is full: wait for room (nothing lost), drop the
new message, or hold only the newest message per listener and replace it (camera streams)."""
DEFAULT_QUEUE_DEPTH = {"block": 1000, "drop": 1000, "latest": 1}
"""Messages queued per listener before ``backpressure`` applies, unless ``queue_depth`` says otherwise."""
ZERO_COPY_MODES = ("safe", "unsafe")
"""``"safe"``: the caller may change or reuse a published array as soon as ``publish()`` returns.
``"unsafe"``: arrays are handed to the transport as they are, and the caller must not change them
until they have been sent (there is no way to know when): the old, fastest behaviour."""


class Publisher:
    """Publishes a method's return value on ``out_topic``.

    ``wait_timeout`` bounds how long ``should_wait=True`` waits for a first listener (None: as long
    as it takes, as in Wrapyfi). ``backpressure`` (one of :data:`BACKPRESSURE_POLICIES`) and
    ``queue_depth`` decide what happens when a listener is slow; every message not delivered
    because of them is counted in :attr:`dropped`. ``max_message_size`` (bytes) bounds what one
    publish may send: a larger value raises :class:`~wrapyfi_like.exceptions.MessageTooLarge`
    before anything is sent. ``zero_copy`` (one of :data:`ZERO_COPY_MODES`) says whether the
    caller owns its arrays again when :meth:`publish` returns. Every other kwarg goes to the data
    type and the plugins.

    Thread-safe: several threads may publish through one publisher; messages never interleave.
    """

    def __init__(self, name: str, out_topic: str, carrier: str = "tcp", should_wait: bool = True,
                 *, data_type: str = "NativeObject", middleware: str = "zeromq",
                 wait_timeout: Optional[float] = None, backpressure: str = "block",
                 queue_depth: Optional[int] = None, max_message_size: Optional[int] = None,
                 curve_secret_key: Optional[str] = None, zero_copy: str = "safe", wire: Optional[str] = None,
                 wire_sockets: Optional[dict] = None, **kwargs: Any) -> None:
        if backpressure not in BACKPRESSURE_POLICIES:
            raise ConfigurationError(f"backpressure must be one of {BACKPRESSURE_POLICIES}, got {backpressure!r}")
        if zero_copy not in ZERO_COPY_MODES:
            raise ConfigurationError(f"zero_copy must be one of {ZERO_COPY_MODES}, got {zero_copy!r}")
        if check_queue_depth(queue_depth) is None:
            queue_depth = DEFAULT_QUEUE_DEPTH[backpressure]
        check_topic(out_topic)
        self.name = name
        self.out_topic = out_topic
        self.max_message_size = check_max_message_size(max_message_size)
        self._format = ValueFormat(data_type, middleware=middleware, wire=wire, **kwargs)
        # "safe" is every transport's default, so only the opt-out is passed: a transport that
        # cannot share buffers then refuses it instead of silently ignoring it.
        options = {} if zero_copy == "safe" else {"zero_copy": zero_copy}
        module, sockets = transports(middleware, wire, wire_sockets)
        self._transport = module.PublisherTransport(
            out_topic, carrier=carrier, should_wait=should_wait, wait_timeout=wait_timeout,
            info={"class_name": name, "data_type": data_type},
            backpressure=backpressure, queue_depth=queue_depth, curve_secret_key=curve_secret_key, **options, **sockets)
        self._count_lock = threading.Lock()
        self.sent = 0

    @property
    def dropped(self) -> int:
        """Messages (per listener) not delivered because of the ``backpressure`` policy."""
        return getattr(self._transport, "dropped", 0)  # a transport that never drops need not count

    def publish(self, value: Any, group: Optional[Group] = None) -> None:
        """Encode and send ``value``; ``group`` marks it as one part of a stacked method's call,
        so listeners can return the parts of one call together (None: a message on its own)."""
        frames = self._format.encode(value)
        check_outgoing(frames, self.max_message_size, self.out_topic)
        self._transport.send(frames, group)
        with self._count_lock:
            self.sent += 1

    def loan(self, shape: Sequence[int], dtype: Any) -> ContextManager[np.ndarray]:
        """A writable array of ``shape`` and ``dtype`` to fill in place, published when the
        ``with`` block ends without an error.

        With ``carrier="shm"`` the array lies in the shared memory of a listener that can take it,
        which then gets the message without any copy on either side (docs/guide/shm.md); on other
        carriers it is an ordinary array, published as usual. The array is read-only after the
        block: its memory belongs to the listeners then.
        """
        return _LoanBlock(self, shape, dtype)

    def stats(self) -> dict[str, int]:
        """Counts since this publisher was built; with zeromq also ``unconfirmed`` (sent to a
        listener whose connection dropped before it acked them), with ``carrier="shm"`` also the
        transport's ``shm_*`` counts (which path the listeners got)."""
        statistics = getattr(self._transport, "statistics", None)
        shm = {name: count for name, count in (statistics() if statistics else {}).items()
               if name.startswith("shm") or name == "unconfirmed"}
        return {"sent": self.sent, "received": 0, "dropped": self.dropped, "malformed": 0,
                "missed": 0, "duplicate": 0, "incomplete": 0, **shm}

    def publisher_stats(self) -> dict[str, dict[str, int]]:
        """Counts per remote publisher heard: a publisher hears none."""
        return {}

    def close(self) -> None:
        self._transport.close()


class _LoanBlock:
    """One ``with publisher.loan(shape, dtype) as array`` block, as one context manager that
    takes the transport's loan (:meth:`lend`) and gives it back (:meth:`settle`) itself.

    Why not a ``contextlib.contextmanager`` around the transport's own: each generator-based
    context manager costs about 2.3 µs to enter and leave, and a loaned message is a fixed cost
    of a few dozen µs spread over every layer (docs/guide/shm.md, "Where a message's time goes")."""

    __slots__ = ("_publisher", "_shape", "_dtype", "_transport", "_lends", "_loan", "_array")

    def __init__(self, publisher: Publisher, shape: Sequence[int], dtype: Any) -> None:
        self._publisher = publisher
        self._shape = (shape,) if isinstance(shape, int) else tuple(shape)  # an int, as numpy takes it
        self._dtype = np.dtype(dtype)
        self._transport = publisher._transport
        self._lends = hasattr(self._transport, "lend")
        self._loan: Any = None
        self._array: Optional[np.ndarray] = None

    def __enter__(self) -> np.ndarray:
        if self._array is not None:
            raise RuntimeError("this loan block is already in use: take a new one with loan()")
        if self._lends:
            nbytes = math.prod(self._shape) * self._dtype.itemsize  # math.prod: np.prod cost 5 µs per loan
            self._loan = self._transport.lend(nbytes)
        if self._loan is None:
            self._array = np.empty(self._shape, self._dtype)
            return self._array
        try:
            self._array = self._loan.array.view(self._dtype).reshape(self._shape)
        except BaseException:  # e.g. a dtype numpy cannot view bytes as: __exit__ will not run
            loan, self._loan = self._loan, None
            self._transport.settle(loan)
            raise
        return self._array

    def __exit__(self, kind: Optional[type], error: Optional[BaseException], traceback: Any) -> None:
        loan, array = self._loan, self._array
        self._loan = self._array = None
        try:
            if kind is None:
                self._publisher.publish(array)
                if self._lends:
                    array.flags.writeable = False
        finally:
            if loan is not None:
                self._transport.settle(loan)
