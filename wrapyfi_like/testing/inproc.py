"""Unit-test classes that communicate, without sockets: :func:`inproc_middleware`."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from wrapyfi_like.middlewares import redirected
from wrapyfi_like.middlewares.inproc.bus import Bus, pop_bus, push_bus


@contextmanager
def inproc_middleware() -> Iterator[Bus]:
    """Route every communicator created for ``"zeromq"`` (or ``"inproc"``) in the block to a fresh
    in-memory bus, and close that bus when the block ends.

    The class under test stays as written: its messages take the same codec path, frames and
    envelope (publisher id, sequence number, ``latest`` flag, call group) as on the wire, so encode
    errors, exact topics, ``should_wait``, timeouts, backpressure, the counts in ``stats()`` and
    the pairing of stacked returns behave as with ZeroMQ.
    A communicator built inside the block raises :class:`~wrapyfi_like.exceptions.ClosedError`
    if used after it, so one test cannot reach into the next. The yielded bus lists live topics
    (``bus.topics()``, ``bus.topics("service")``).
    """
    bus = Bus("the in-memory bus of an inproc_middleware block")
    push_bus(bus)
    try:
        with redirected("zeromq", "inproc"):
            yield bus
    finally:
        pop_bus(bus)
        bus.close()
