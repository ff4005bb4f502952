"""The publisher's side of ``carrier="shm"``: which listeners get a message's large buffers in
shared memory, and the message each listener gets.

A listener gets the shared-memory form only if it announced itself under
:func:`~.shm_wire.shm_listener_key` with this process's compatibility token (same host, same
``/dev/shm``, same user, same prefix, iceoryx2 importable on both sides), the publisher's port
into its inbox opened, and the sample reached it (``send`` returned one recipient; a publisher
with ``backpressure="block"`` gives a full inbox up to :data:`~.shm.ROOM_WAIT` to make room
first). Otherwise that listener gets the ordinary frames of the same message: the fallback is
per listener and per message, so nothing is lost on the way between the two forms.
"""

from __future__ import annotations

import logging
from typing import NamedTuple, Optional

import numpy as np

from wrapyfi_like.logs import RateLimitedLog
from wrapyfi_like.middlewares.zeromq import shm
from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent
from wrapyfi_like.middlewares.zeromq.shm_wire import pack_refs, shm_listener_key

THRESHOLD = 512 * 1024
"""Buffers of at least this many bytes travel in shared memory. Measured (research/shm.md,
benchmarks/bench_shm.py): below about 512 KiB the hybrid path is no faster than frames over ipc
(64 KiB: 1.2× the latency), from 1 MiB on it is 0.4–0.6× the latency."""


_UNOPENED = object()
"""No port tried yet (a port whose opening failed is None)."""


class Split(NamedTuple):
    """One message's shared-memory form: the buffers that go into the sample, and the frames."""

    buffers: list
    offsets: list[int]
    total: int
    frames: list
    """``[header, *buffers]`` with an empty frame for each buffer in the sample, then the refs."""


def split(frames: list, loan: Optional["Loan"] = None) -> Optional[Split]:
    """The shared-memory form of ``frames`` (``[header, *buffers]``), or None if no buffer is
    large enough to be worth it (or none is C-contiguous: the codec's buffers all are, and
    ``memoryview.cast`` takes no other). A message that is ``loan``'s array alone (what
    ``Publisher.loan`` publishes) is recognised first, without looking at each frame."""
    if loan is not None and len(frames) == 2:
        part = loan.part(frames)
        if part is not None:
            return part
    body = None
    for index in range(1, len(frames)):
        view = memoryview(frames[index])
        if view.nbytes < THRESHOLD or not view.c_contiguous:
            continue
        if view.ndim != 1 or view.format != "B":
            view = view.cast("B")
        if body is None:  # the first large buffer: most messages have none, or only this one
            body, buffers, offsets, entries, total = list(frames), [], [], [], 0
        buffers.append(view)
        offsets.append(total)
        entries.append((index, total, view.nbytes))
        total = shm.aligned(total + view.nbytes)
        body[index] = b""
    if body is None:
        return None
    body.append(pack_refs(entries))
    return Split(buffers, offsets, total, body)


class Loan:
    """A sample of one listener's inbox that the caller fills before publishing it."""

    def __init__(self, endpoint: str, port: shm.Port, sample, array) -> None:
        self.endpoint = endpoint
        self.port = port
        self.sample = sample
        """None once sent."""
        self.array = array
        self._memory = array.base
        """The ctypes object over the sample's payload that ``array`` is made from."""
        self._part: Optional[Split] = None
        """What :meth:`part` made: a message that :meth:`carries` without looking again."""

    def part(self, frames: list) -> Optional[Split]:
        """The shared-memory form of ``[header, buffer]`` if ``buffer`` is this loan's whole
        array as the codec hands it out (a flat byte view; anything else: None, and
        :func:`split` looks at the frames as for any message). One buffer at offset 0 needs
        none of ``split``'s lists built per frame."""
        buffer = frames[1]
        if (self.sample is None or type(buffer) is not memoryview or buffer.nbytes != self.array.nbytes
                or buffer.ndim != 1 or buffer.format != "B" or not buffer.c_contiguous  # e.g. reversed
                or not self._owns(buffer)):
            return None
        nbytes = buffer.nbytes
        self._part = Split([buffer], [0], shm.aligned(nbytes), [frames[0], b"", pack_refs([(1, 0, nbytes)])])
        return self._part

    def _owns(self, buffer: memoryview) -> bool:
        """Whether ``buffer``'s chain of owners ends at this loan's memory."""
        owner = buffer.obj
        while isinstance(owner, np.ndarray):
            owner = owner.base
        return owner is self._memory

    def carries(self, part: Split) -> bool:
        """Whether ``part``'s only shared buffer is this loan's whole array (then it is sent as is).

        Told by the buffer's owner, not its address (numpy's ``__array_interface__`` and
        ``.ctypes`` cost 7–10 µs each): an array whose chain of bases ends at this loan's memory
        lies inside it, and a contiguous buffer as large as the loan inside it is all of it. A
        buffer made some other way (a copy, ``as_strided``) is not recognised and is copied."""
        if self.sample is None or len(part.buffers) != 1:
            return False
        if part is self._part:
            return True
        buffer = part.buffers[0]
        return buffer.nbytes == self.array.nbytes and self._owns(buffer)  # split() passes C-contiguous buffers only


class ShmOutbox:
    """A publisher's ports into the inboxes of its shm-capable listeners, and their counts."""

    def __init__(self, topic: str, agent: NodeAgent, log: RateLimitedLog, wait: bool = False) -> None:
        self.topic = topic
        self._wait = wait
        """Whether a full inbox is waited for (briefly, :data:`~.shm.ROOM_WAIT`) before frames."""
        self._agent = agent
        self._log = log
        self._watch = agent.watch(shm_listener_key(topic, shm.compatibility())) if shm.available() else None
        self._ports: dict[str, Optional[shm.Port]] = {}  # None: opening failed, frames for good
        self.sent = 0
        """Messages that reached a listener through shared memory (one per listener)."""
        self.fallback = 0
        """Messages with shm-sized buffers that a listener got as frames instead."""
        self.loaned = 0
        """Of ``sent``, messages whose sample the caller filled in place (``loan``): no copy at all."""
        self.paths: dict[str, str] = {}
        """Per listener endpoint, the path its last large message took: ``"shm"`` or ``"frames"``."""

    def deliver(self, endpoint: str, part: Split, publisher: bytes, seq: int, loan: Optional[Loan] = None) -> bool:
        """Put ``part``'s sample into ``endpoint``'s inbox; whether its listener has it (else the
        caller sends that listener the ordinary frames). ``loan``'s sample goes as it is, uncopied,
        if it is this listener's and carries ``part``."""
        port = self._port(endpoint, part.total)
        delivered = False
        if port is not None:
            try:
                if loan is not None and loan.endpoint == endpoint and loan.carries(part):
                    sample, loan.sample = loan.sample, None
                    delivered = port.send_loaned(sample, publisher, seq)
                    self.loaned += delivered
                else:
                    delivered = port.send(publisher, seq, part.buffers, part.offsets, part.total, self._wait)
            except shm.shm_errors() as error:
                self._log.warning(endpoint, "shm-send", "publisher on %s: shared memory to listener %s "
                                  "failed (%s); it gets frames", self.topic, endpoint, error)
        if delivered:
            self.sent += 1
            self.paths[endpoint] = "shm"
        else:
            self.fallback += 1
            self.paths[endpoint] = "frames"
        return delivered

    def _port(self, endpoint: str, size: int) -> Optional[shm.Port]:
        port = self._ports.get(endpoint, _UNOPENED)
        if port is not _UNOPENED:
            return port
        if self._watch is None or endpoint not in self._watch.endpoints:
            self._log.log(logging.INFO, endpoint, "shm-peer", "publisher on %s: listener %s cannot share memory "
                           "with this process (another host or user, no iceoryx2, or not carrier='shm'); "
                           "it gets frames", self.topic, endpoint)
            return None
        try:
            port = shm.Port(endpoint, size)
        except shm.shm_errors() as error:
            port = None
            self._log.warning(endpoint, "shm-open", "publisher on %s: cannot open the shared-memory "
                              "inbox of listener %s (%s); it gets frames", self.topic, endpoint, error)
        self._ports[endpoint] = port
        return port

    def loan(self, endpoints, nbytes: int) -> Optional[Loan]:
        """A sample of ``nbytes`` in the inbox of one of ``endpoints`` that can take it, or None."""
        for endpoint in sorted(endpoints):
            port = self._port(endpoint, nbytes)
            if port is not None:
                try:
                    sample, array = port.loan(nbytes)
                except shm.shm_errors() as error:
                    self._log.warning(endpoint, "shm-loan", "publisher on %s: cannot loan %d bytes in "
                                      "the inbox of %s (%s)", self.topic, nbytes, endpoint, error)
                    continue
                return Loan(endpoint, port, sample, array)
        return None

    def forget(self, live: set) -> None:
        """Close the ports of listeners that are gone."""
        for endpoint in [endpoint for endpoint in self._ports if endpoint not in live]:
            port = self._ports.pop(endpoint)
            self.paths.pop(endpoint, None)
            if port is not None:
                port.close()

    def statistics(self) -> dict[str, int]:
        return {"shm_sent": self.sent, "shm_loaned": self.loaned, "shm_fallback": self.fallback,
                "shm_outlets": sum(port is not None for port in self._ports.values())}

    def close(self) -> None:
        self.forget(set())
        if self._watch is not None:
            self._agent.unwatch(self._watch)
