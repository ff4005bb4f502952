"""ZeroMQ publish/listen transport: frames in, frames out; it never sees Python objects.

Each listener binds a socket of its own and announces it to discovery under
:func:`listener_key` of its topic. Each publisher watches that key and connects one DEALER (an
*outlet*) to every listener of its topic, and sends each message to each of them (fan-out in the
publisher, one hop, no broker). Why not PUB/SUB: a SUB socket only sends its subscription when the
thread that owns it next touches it, so a publisher waiting for a subscription could wait forever
on a listener whose thread is blocked elsewhere. A DEALER with one peer sends as a PUSH does, and
reads the listener's acks (:mod:`.acks`) back; its connection completes without the listener's
thread (the listener's intake or libzmq does the handshake), so the first message is never lost.
Without CURVE an outlet is our own (:class:`~.zmtp_outlet.ZmtpOutlet`: it writes ZMTP frames with
one ``sendmsg``, from this thread, no libzmq pipe or I/O thread in between); with CURVE keys it is
libzmq's (:class:`~.outlets.Outlet`). Both offer the same methods, so this module never touches a
socket. Outlets send only over completed connections (:mod:`~.connections`): a listener that
discovery still lists after it went away, or that refuses our CURVE key, is no destination. An
outlet is closed only when its own connection is down and discovery no longer lists it.

A message is the multipart ``[topic, envelope, header, *buffers]``: the envelope
(:mod:`wrapyfi_like.middlewares.envelope`) carries this publisher's random id and a sequence
number 1, 2, 3, …, so listeners count what they missed. Topics match exactly.

When a listener's connection has no room (our outlet: the kernel's send buffer takes nothing of
the message, or a partly written message's rest is still waiting; libzmq's: ``queue_depth``
messages queued), the publisher's ``backpressure`` policy applies: ``"block"`` waits for room while
the listener's connection is up (up to ``wait_timeout`` if set, then :class:`WaitTimeout`); nothing
is discarded for a slow or stopped listener. ``"drop"`` drops the new message for that listener.
``"latest"`` holds the new message as the one pending message for that listener, replacing
(dropping) any older pending one; a flusher thread sends it as soon as there is room, so the
newest message never waits for the next publish. Every message not delivered this way is counted
in ``dropped`` and logged (at most once per 10 s). A message for a listener whose connection
dropped (killed, host gone) is counted in ``dropped`` too, and what had been sent over it that the
listener never acked in ``unconfirmed`` (an upper bound of what it lost, :mod:`.acks`).

Ownership (``zero_copy``): with ``"safe"`` (the default), the caller may reuse its arrays as soon
as :meth:`send` returns. Our outlets need nothing for it: the kernel copies what ``sendmsg`` takes.
A message it took only part of is finished before anything else goes to that listener: ``"block"``
writes the rest from the caller's buffers before :meth:`send` returns (every listener's rest in one
poll loop); otherwise, or when that wait is cut short (``wait_timeout``, ``close()``, Ctrl-C), the
rest is copied and the flusher writes it. With libzmq's outlets (CURVE), ``"block"`` sends the large
buffers of a message zero-copy and waits until libzmq has written them out (pyzmq's
``MessageTracker``) when together they reach :data:`COPY_BELOW`, and copies them once below it (a
copy is then cheaper than the wait); ``"drop"`` and ``"latest"`` must never wait for a slow
listener, so they copy large buffers once whatever their size. Small buffers (< 64 KiB) are always
copied by pyzmq. ``"unsafe"`` sends zero-copy and returns at once: the caller must not modify a
published buffer until libzmq has sent it, or the listener receives the modified bytes (our
outlets copy a rest under ``"unsafe"`` too: there is no wait to save).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Optional

import zmq
import zmq.utils.garbage

from wrapyfi_like.background import signals_blocked, start_thread
from wrapyfi_like.exceptions import ClosedError, ConfigurationError, WaitTimeout
from wrapyfi_like.logs import RateLimitedLog, truncate
from wrapyfi_like.middlewares import envelope as envelopes
from wrapyfi_like.middlewares.base import PublisherTransport, check_carrier
from wrapyfi_like.middlewares.deadlines import deadline_after, remaining_seconds, slice_ms
from wrapyfi_like.middlewares.envelope import LATEST, SHM, Group
from wrapyfi_like.middlewares.zeromq import lifecycle
from wrapyfi_like.middlewares.zeromq.curve import Key, producer_keys
from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent
from wrapyfi_like.middlewares.zeromq.errors import MapsZMQErrors
from wrapyfi_like.middlewares.zeromq.discovery.waiting import expect_peer
from wrapyfi_like.middlewares.zeromq.keys import listener_key, publisher_key, topic_frame
from wrapyfi_like.middlewares.zeromq.outlets import Outlet
from wrapyfi_like.middlewares.zeromq.shm_outbox import THRESHOLD, Loan, ShmOutbox, split
from wrapyfi_like.middlewares.zeromq.wakeup import Wakeup
from wrapyfi_like.middlewares.zeromq.zmtp_outlet import Framer, ZmtpOutlet, names_no_host

logger = logging.getLogger("wrapyfi_like.zeromq")

PUBLISHER_LINGER_MS = 1000
"""How long unsent messages may hold up closing a publisher (and interpreter exit)."""
CONNECT_GRACE = 0.5
"""Seconds a ``should_wait`` publisher with ``"block"`` waits for a newly found listener's
connection to complete, so a listener found just before a publish gets it; a listener whose
connection is still not complete (refused, dead, or slow) is passed over until it is."""
DEFAULT_MAX_OUTLETS = 64
"""Listeners one publisher connects to at most; discovery entries beyond it are skipped (and
logged), so a flood of fake entries cannot exhaust file descriptors (each outlet holds ~3)."""
OUTLET_PATIENCE = 1.0
"""Seconds an outlet that never connected keeps its place while other listed endpoints wait for
one (only when ``max_outlets`` are open)."""
ZERO_COPY_MODES = ("safe", "unsafe")
TRACK_FROM = zmq.COPY_THRESHOLD
"""Buffers of at least this many bytes go zero-copy; smaller ones pyzmq copies anyway."""
COPY_BELOW = 256 * 1024
"""``"block"``/``"safe"``: a message whose large buffers (≥ :data:`TRACK_FROM`) add up to less
than this many bytes has them copied once instead of tracked. Waiting for libzmq to let go of a
buffer crosses three threads (libzmq's I/O thread, pyzmq's garbage collector, the caller) and
keeps the caller from preparing the next message; a copy of 64 KiB costs less than that, one of
1 MiB more (it competes with the kernel's copies for the two cores and the memory bus).
Measured on the 2-core machine with :mod:`benchmarks.ownership_probe` (one publisher process
alternating both ways to 1, 4 or 8 listener processes over ipc and tcp; docs/benchmarks.md, "Who
owns a published buffer"): copying gave 1.13–1.70× the messages per second of the wait at 64–192
KiB, 0.82–1.19× at 256 KiB, 0.85–1.00× at 512 KiB and 0.52–0.94× at 1 MiB."""
ACK_QUIET = 0.25
"""Seconds :meth:`~ZeroMQPublisherTransport.close` waits for a listener's next ack before it stops
waiting for that listener to take the rest (see ``_await_acks``)."""
FLUSH_RECHECK = 0.05
"""Seconds the ``"latest"`` flusher waits on a socket's signal before looking again anyway
(libzmq's signal is edge-triggered; the recheck makes a missed edge cost at most this)."""


class ZeroMQPublisherTransport(MapsZMQErrors, PublisherTransport, role="publisher"):
    """Connects to every listener of its topic that ``session`` (this process's discovery agent)
    reports and sends frames to each.

    Listeners bind, so the listener's ``carrier`` decides how a publisher reaches it; the
    publisher's ``carrier`` is only checked (one of :data:`~..base.CARRIERS`).
    """

    max_outlets = DEFAULT_MAX_OUTLETS
    """Listeners this publisher connects to at most (see :data:`DEFAULT_MAX_OUTLETS`); set on
    an instance before its first ``send`` to change it for that publisher."""

    def __init__(self, topic: str, carrier: str = "tcp", should_wait: bool = True,
                 wait_timeout: Optional[float] = None, info: Optional[dict] = None,
                 backpressure: str = "block", queue_depth: int = 1000,
                 curve_secret_key: Optional[Key] = None, zero_copy: str = "safe", *, session: NodeAgent) -> None:
        check_carrier(carrier)
        if zero_copy not in ZERO_COPY_MODES:
            raise ConfigurationError(f"zero_copy must be one of {ZERO_COPY_MODES}, got {zero_copy!r}")
        self.topic = topic
        self._keys = producer_keys(curve_secret_key)
        self._backpressure = backpressure
        self._send_to = {"block": self._send_when_room, "drop": self._send_or_drop,
                         "latest": self._send_latest}[backpressure]
        self._flags = LATEST if backpressure == "latest" else 0
        self._topic_frame = topic_frame(topic)
        if self._keys is None:  # our own outlets: what sendmsg took, the kernel has copied (_own None: as is)
            self._own, self._message = None, Framer(self._topic_frame, envelopes.ENVELOPE.size)
            self._finish_rests = (backpressure, zero_copy) == ("block", "safe")
            self._hold = _held if zero_copy == "safe" else list
        else:
            self._own = {("block", "safe"): _copied_or_tracked, ("drop", "safe"): _copied,
                         ("latest", "safe"): _copied}.get((backpressure, zero_copy), _shared)
            self._finish_rests, self._hold, self._message = False, list, self._frames
            if self._own is not _copied:
                _start_frame_collector()
        self._queue_depth = queue_depth
        self.publisher_id = envelopes.new_publisher_id()
        self._seq = 0
        self.sent = 0
        self.dropped = 0
        self.unconfirmed = 0
        self._log = RateLimitedLog(logger)
        self._wakeup = Wakeup()  # close() wakes a send blocked in a wait
        self._should_wait = should_wait
        self._wait_timeout = wait_timeout
        self._lock = threading.Lock()
        self._context = zmq.Context.instance()
        self._outlets: dict[str, Outlet | ZmtpOutlet] = {}
        self._refused: set[str] = set()  # listed endpoints we cannot or will not connect to
        self._tried: set[str] = set()  # endpoints whose outlet never connected and gave way (max_outlets)
        self._followed: Optional[frozenset[str]] = None
        self._flusher: Optional[threading.Thread] = None
        self._flush_needed = threading.Event()
        self._agent = session
        # shm-capable listeners are watched first: a sync that reports a listener reports its inbox too
        self._shm = ShmOutbox(topic, session, self._log, wait=backpressure == "block") if carrier == "shm" else None
        self._loan: Optional[Loan] = None
        self._watch = self._agent.watch(listener_key(topic))
        # Announced only so tools can list who publishes; it binds nothing, so there is no endpoint.
        self._announcement = self._agent.announce(publisher_key(topic), "", info or {})
        self._peer_check = expect_peer("publisher", topic)  # a WARNING if no listener ever shows up
        self._found_one = False  # a listener's connection completed once: should_wait waits no more
        self._closed = False
        lifecycle.track(self)

    def send(self, frames: list, group: Optional[Group] = None) -> None:
        """Send one message to every listener; with ``should_wait``, first wait for one to exist.

        ``group`` goes into the envelope (the call a stacked method's parts belong to). When this
        returns, the caller may modify ``frames``' buffers (unless ``zero_copy="unsafe"``).
        """
        with self._lock:
            if self._closed:
                raise ClosedError(f"publisher on {self.topic} is closed")
            if self._watch.endpoints is not self._followed:
                self._follow()
            if self._should_wait and not self._found_one:
                self._wait_for_listener()
                self._found_one = True
            self._seq += 1
            envelope = envelopes.pack(self.publisher_id, self._seq, self._flags, group)
            try:
                begun = self._send_each(frames, split(frames, self._loan) if self._shm is not None else None, envelope, group)
                if begun and self._finish_rests:
                    self._write_rests()
            except BaseException:
                self._keep_rests()  # a message begun and cut short is finished later, from a copy
                raise
            if begun:
                self._keep_rests()
            self.sent += 1

    def _send_each(self, frames: list, part, envelope: bytes, group: Optional[Group]) -> bool:
        """Send one message to every listener (those with a shared-memory inbox get its notice);
        whether one of them took only part of it (its rest borrows the caller's buffers).

        Outside this lock no outlet borrows (``send`` and the flusher finish or copy every rest
        before they let go of it), so a message that every outlet took whole, or none, leaves
        nothing to finish or copy, and ``send`` skips looking."""
        message = shm_message = None
        trackers = ()
        begun = False
        outlets = self._outlets
        for outlet in list(outlets.values()):
            if not outlet.tuned:
                self._check(outlet)  # the news of its connection, which gets its send buffer then
            if outlets.get(outlet.endpoint) is not outlet:
                continue  # closed by an earlier wait (or just now: down and unlisted)
            if part is not None and self._shm.deliver(outlet.endpoint, part, self.publisher_id, self._seq,
                                                      self._loan):
                if shm_message is None:
                    shm_message = self._message(envelopes.pack(self.publisher_id, self._seq, self._flags | SHM, group),
                                                part.frames)
                self._send_to(outlet, shm_message)
            else:
                if message is None:  # built once, for the listeners that get frames
                    if self._own is None:
                        message = self._message(envelope, frames)
                    else:
                        body, trackers = self._own(frames)
                        message = self._message(envelope, body)
                        del body
                self._send_to(outlet, message)
            if outlet.borrowing:
                begun = True
        del message, shm_message, part
        if trackers:
            self._wait_for_trackers(trackers)
        return begun

    def _frames(self, envelope: bytes, body: list) -> list:
        """A message as libzmq's outlets send it."""
        return [self._topic_frame, envelope, *body]

    def lend(self, nbytes: int) -> Optional[Loan]:
        """A loan of ``nbytes`` to fill (its ``array``, writable uint8) and then :meth:`send` as
        the only large buffer of a message, and give back with :meth:`settle`; or None: then the
        caller fills an ordinary array.

        With ``carrier="shm"``, ``nbytes`` ≥ the shared-memory threshold and a listener that shares
        memory, the array is a sample in that listener's inbox and is sent to it without any copy
        (other listeners get copies, as usual). One loan at a time per publisher: while one is
        out, another thread gets None. The array must not be used after :meth:`settle`.
        """
        with self._lock:
            self._check_open()
            self._follow()
            if self._should_wait and not self._found_one:  # as send would: a loan needs its listener
                self._wait_for_listener()
                self._found_one = True
            if self._shm is None or nbytes < THRESHOLD or self._loan is not None:
                return None
            self._loan = self._shm.loan(list(self._outlets), nbytes)
            return self._loan

    def settle(self, loan: Loan) -> None:
        """End ``loan`` (from :meth:`lend`): its sample, if it was not sent, is given back."""
        with self._lock:
            if self._loan is loan:
                self._loan = None
            if loan.sample is not None:
                loan.port.discard(loan.sample)
                loan.sample = None

    def _follow(self) -> None:
        """Open outlets for newly listed endpoints; close those both unlisted and down.

        At most ``max_outlets`` are open; while more endpoints are listed, an outlet whose
        connection never completed gives its place to another after ``OUTLET_PATIENCE``, so fake
        entries cannot keep a real listener out for good.
        """
        if self._watch.endpoints is self._followed:
            return  # nothing changed: the common case costs no system call
        endpoints = self._followed = self._watch.consume()
        self._refused &= endpoints
        self._tried &= endpoints
        for outlet in self._outlets.values():
            outlet.listed = outlet.endpoint in endpoints
        waiting = endpoints - self._outlets.keys() - self._refused - self._tried
        if not waiting and self._tried:
            self._tried.clear()  # every endpoint had its turn: start another round
            waiting = endpoints - self._outlets.keys() - self._refused
        if waiting and len(self._outlets) >= self.max_outlets:
            self._make_room()
        for endpoint in sorted(waiting):
            if len(self._outlets) >= self.max_outlets:
                self._log.warning(self.topic, "max_outlets",
                                  "publisher on %s: discovery lists more than %d listeners; the others "
                                  "wait for a place (max_outlets)", self.topic, self.max_outlets)
                self._followed = None  # look again on the next send
                break
            try:
                self._outlets[endpoint] = (
                    ZmtpOutlet(endpoint, self._unconfirmed) if self._keys is None and names_no_host(endpoint) else
                    Outlet(self._context, endpoint, self._queue_depth, PUBLISHER_LINGER_MS, self._keys,
                           self._unconfirmed))
            except ValueError as error:
                self._refused.add(endpoint)
                self._log.warning(truncate(endpoint), "endpoint",
                                  "publisher on %s: skipped listener endpoint %s from discovery: %s",
                                  self.topic, truncate(repr(endpoint)), error)
            except (zmq.ZMQError, OSError) as error:  # out of sockets or file descriptors: try again later
                self._log.warning(self.topic, "outlet", "publisher on %s: cannot open a connection "
                                  "to listener %s: %s", self.topic, truncate(repr(endpoint)), error)
                self._followed = None
                break
        for outlet in list(self._outlets.values()):
            if not outlet.listed:
                self._check(outlet)
        if self._shm is not None:
            self._shm.forget(self._outlets.keys())

    def _make_room(self) -> None:
        """Close outlets that never connected within ``OUTLET_PATIENCE`` (their turn is over)."""
        now = time.monotonic()
        for outlet in list(self._outlets.values()):
            if not outlet.was_up and now - outlet.found_at >= OUTLET_PATIENCE:
                outlet.check()
                if not outlet.was_up:
                    del self._outlets[outlet.endpoint]
                    outlet.close(0)
                    self._tried.add(outlet.endpoint)

    def _check(self, outlet: Outlet) -> None:
        """Take in the outlet's connection news; close it if it is down and no longer listed."""
        if outlet.check():
            self._log.warning(outlet.endpoint, "disconnected",
                              "publisher on %s: the connection to listener %s dropped (the listener died "
                              "or its host is unreachable)", self.topic, outlet.endpoint)
        if not outlet.up and not outlet.listed:
            del self._outlets[outlet.endpoint]
            outlet.close(0)
            if outlet.pending is not None:
                self._count_dropped(outlet, 1)
            self._followed = None  # an endpoint skipped for max_outlets may fit now

    def _wait_for_listener(self) -> None:
        """Wait until a connection to a listener is *complete*: one discovery still lists after
        it closed, or one that refuses our CURVE key, never completes, so it never counts."""
        logger.info("waiting for a listener on %s", self.topic)
        deadline = deadline_after(self._wait_timeout)
        while True:
            for outlet in list(self._outlets.values()):
                self._check(outlet)
            if any(outlet.up and outlet.room() for outlet in self._outlets.values()):
                return
            if deadline is not None and time.monotonic() >= deadline:  # whatever else keeps waking us
                raise WaitTimeout(
                    f"no listener for {self.topic} connected within {self._wait_timeout} s "
                    "(wait_timeout); start one, or publish with should_wait=False"
                )
            poller = zmq.Poller()
            for outlet in self._outlets.values():
                outlet.register(poller, room=False)
            poller.register(self._watch.fileno(), zmq.POLLIN)
            poller.register(self._wakeup.fileno(), zmq.POLLIN)
            events = dict(poller.poll(slice_ms(deadline)))
            self._check_open()
            if self._watch.fileno() in events:
                self._follow()

    def _send_when_room(self, outlet: Outlet, message: list) -> None:
        if outlet.try_send(message):
            outlet.mark_up()
            outlet.sent(self._seq)
        else:
            self._wait_for_room(outlet, message)

    def _wait_for_room(self, outlet: Outlet, message: list) -> None:
        """Send, or wait for room while the listener's connection is up.

        A listener whose connection has not completed is waited for only up to ``CONNECT_GRACE``
        after it was found (and only with ``should_wait``), then passed over until it connects.
        A connection that drops (its listener died) ends the wait; the message is counted.
        """
        deadline = deadline_after(self._wait_timeout)
        while True:
            if self._outlets.get(outlet.endpoint) is not outlet:
                if outlet.was_up:  # closed meanwhile: down and no longer listed
                    self._count_dropped(outlet, 1)
                return
            if outlet.try_send(message):
                outlet.mark_up()
                outlet.sent(self._seq)
                return
            self._check(outlet)
            if self._outlets.get(outlet.endpoint) is not outlet:
                continue
            if not outlet.up:
                if outlet.was_up:
                    return self._count_dropped(outlet, 1)
                until = outlet.found_at + (CONNECT_GRACE if self._should_wait else 0.0)
                if time.monotonic() >= until:
                    return  # not connected yet: not a destination (yet)
            elif deadline is not None and time.monotonic() >= deadline:  # whatever else keeps waking us
                raise WaitTimeout(f"listener {outlet.endpoint} of {self.topic} had no room for "
                                  f"{self._wait_timeout} s (wait_timeout); the message was not sent to it")
            else:
                until = deadline
            # acks too: read as they come (by _check), not lost with a connection that drops meanwhile
            poller = outlet.room_poller(self._watch.fileno(), self._wakeup.fileno())
            events = dict(poller.poll(slice_ms(until)))
            self._check_open()
            if self._watch.fileno() in events:
                self._follow()

    def _send_or_drop(self, outlet: Outlet, message: list) -> None:
        if outlet.try_send(message):
            outlet.mark_up()
            outlet.sent(self._seq)
            return
        self._check(outlet)
        if outlet.was_up:
            self._count_dropped(outlet, 1)  # (a listener not connected yet is no destination)

    def _send_latest(self, outlet: Outlet, message: list) -> None:
        """Send what is pending for this listener, then ``message``; hold whatever finds no room."""
        if outlet.pending is not None:
            if outlet.try_send(outlet.pending):
                outlet.sent(outlet.pending_seq)
                outlet.pending = None
            else:
                outlet.pending = None
                self._count_dropped(outlet, 1)  # still no room: the older message gives way
        if outlet.try_send(message):
            outlet.mark_up()
            outlet.sent(self._seq)
            return
        self._check(outlet)
        if outlet.was_up and outlet.endpoint in self._outlets:
            outlet.pending, outlet.pending_seq = self._hold(message), self._seq
            self._start_flusher()

    def _count_dropped(self, outlet: Outlet, count: int) -> None:
        self.dropped += count
        self._log.warning(self.topic, "dropped",
                          "publisher on %s (backpressure=%s): a message was not delivered to listener %s; "
                          "%d dropped in total", self.topic, self._backpressure, outlet.endpoint, self.dropped)

    def _await_acks(self) -> None:
        """Before closing, wait while listeners still ack what was sent to them: up to
        ``PUBLISHER_LINGER_MS``, and no longer than :data:`ACK_QUIET` without any ack. A message
        the ``"latest"`` policy still holds is sent meanwhile as soon as its listener has room,
        and counted as dropped if the wait ends first.

        libzmq lets a closed DEALER's queued messages leave within its linger only while nothing
        arrives for it; acks arriving meanwhile (a listener working through its backlog) stall that,
        and the tail of the stream was lost. Waiting for the acks here means what the listeners
        are taking has reached them before the socket closes; a listener that takes nothing (busy,
        stopped) stops the wait after ``ACK_QUIET``, and libzmq's linger applies as before.

        Connection news (the monitor's) ends the wait for that listener and is left unread: a
        listener that went away while this publisher closes (often one of the same process, closed
        first at exit) is not counted, as before acks.
        """
        now = time.monotonic()
        deadline, quiet = now + PUBLISHER_LINGER_MS / 1000, now + ACK_QUIET
        for outlet in self._outlets.values():
            outlet.closing = True
        while True:
            for outlet in self._outlets.values():
                if outlet.write_rest() and outlet.pending is not None and outlet.try_send(outlet.pending):
                    outlet.sent(outlet.pending_seq)
                    outlet.pending = None
            waiting = [outlet for outlet in self._outlets.values()
                       if outlet.up and (len(outlet.ledger) or outlet.pending is not None or outlet.has_rest())
                       and not outlet.news()]
            if not waiting or now >= min(deadline, quiet):
                break
            poller = zmq.Poller()
            for outlet in waiting:
                outlet.register(poller, room=outlet.pending is not None)
            poller.poll(max(1, slice_ms(min(deadline, quiet))))
            for outlet in waiting:
                before = len(outlet.ledger)
                outlet.read_acks()
                if len(outlet.ledger) < before:
                    quiet = time.monotonic() + ACK_QUIET
            now = time.monotonic()
        for outlet in self._outlets.values():
            if outlet.pending is not None:
                outlet.pending = None
                self._count_dropped(outlet, 1)

    def _unconfirmed(self, outlet: Outlet, count: int, why: str) -> None:
        """Told by an outlet (:data:`~.outlets.Unconfirmed`): messages it sent that its listener
        never acked and now never will; or, with ``count`` 0, a problem that lost nothing (what the
        listener wrote back, a connection that could not be opened), which ``why`` names."""
        if not count:
            self._log.warning(outlet.endpoint, "report", "publisher on %s: listener %s: %s",
                              self.topic, outlet.endpoint, truncate(why))
            return
        self.unconfirmed += count
        self._log.warning(outlet.endpoint, "unconfirmed",
                          "publisher on %s: %d messages sent to listener %s were never confirmed delivered "
                          "(%s); %d unconfirmed in total", self.topic, count, outlet.endpoint, why,
                          self.unconfirmed)

    def _wait_for_trackers(self, trackers: list) -> None:
        """Wait until libzmq no longer references the caller's buffers (``zero_copy="safe"``)."""
        deadline = deadline_after(self._wait_timeout)
        for tracker in trackers:
            while not tracker.done:
                try:
                    tracker.wait(min(FLUSH_RECHECK * 2, remaining_seconds(deadline) or FLUSH_RECHECK * 2))
                except zmq.NotDone:
                    self._check_open()
                    if deadline is not None and time.monotonic() >= deadline:
                        raise WaitTimeout(f"a message on {self.topic} was still being sent after "
                                          f"{self._wait_timeout} s (wait_timeout)") from None

    def _keep_rests(self) -> None:
        """Copy what is unwritten of the message just sent (our own outlets): the caller gets its
        buffers back, and the flusher writes the rest as soon as there is room."""
        kept = False
        try:
            for outlet in self._outlets.values():
                if outlet.borrowing:
                    outlet.keep_rest()
                    kept = True
        except BaseException:  # a signal's exception midway: a rest not copied must not go on borrowing
            for outlet in self._outlets.values():
                if outlet.borrowing:
                    outlet.drop("interrupted before the rest of a message was copied")
            raise
        finally:
            if kept:
                self._start_flusher()

    def _write_rests(self) -> None:
        """``"block"`` and ``"safe"``: write what the kernel did not take of the message straight
        from the caller's buffers before :meth:`send` returns, to every listener at once (one slow
        listener does not hold up the others' writes). As for any ``"block"`` wait: a connection
        that drops ends its wait (what it took unacked is counted), ``wait_timeout`` bounds it."""
        deadline = deadline_after(self._wait_timeout)
        while True:
            unfinished = [outlet for outlet in self._outlets.values() if outlet.borrowing and not outlet.write_rest()]
            if not unfinished:
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"a listener of {self.topic} had no room for the rest of a message for "
                                  f"{self._wait_timeout} s (wait_timeout); it is written when there is room")
            poller = zmq.Poller()
            for outlet in unfinished:
                outlet.register(poller, room=True)
            poller.register(self._wakeup.fileno(), zmq.POLLIN)
            poller.poll(slice_ms(deadline))
            self._check_open()
            for outlet in unfinished:
                outlet.read_acks()  # and see a listener that went away

    def _start_flusher(self) -> None:
        self._flush_needed.set()
        if self._flusher is None or not (self._closed or self._flusher.is_alive()):  # it ends only at close
            self._flusher = start_thread(self._flush, f"wrapyfi_like-flusher-{self.topic}")

    def _flush(self) -> None:
        """Write the kept rests, and (``"latest"``) send each pending message, as soon as their
        listener has room: nothing waits for the next publish."""
        while True:
            self._flush_needed.wait()
            with self._lock:
                if self._closed:
                    return
                poller = None
                for outlet in list(self._outlets.values()):
                    try:
                        if self._flush_one(outlet):
                            poller = poller or zmq.Poller()
                            outlet.register(poller, room=True, news=False)
                    except Exception:  # a bug must cost that listener's connection, not every later flush
                        logger.exception("publisher on %s: flushing to listener %s failed; its connection "
                                         "is dropped", self.topic, outlet.endpoint)
                        outlet.drop("flushing to it failed")
                        if outlet.pending is not None:
                            outlet.pending = None
                            self._count_dropped(outlet, 1)
                if poller is None:
                    self._flush_needed.clear()
                    if self._closed:  # close() sets _closed before the event: seen here if cleared late
                        return
                    continue
                poller.register(self._wakeup.fileno(), zmq.POLLIN)
            try:
                poller.poll(int(FLUSH_RECHECK * 1000))
            except (zmq.ZMQError, OSError, ValueError):
                pass  # a socket closed meanwhile: look again under the lock

    def _flush_one(self, outlet: Outlet) -> bool:
        """Write ``outlet``'s rest and pending message as far as there is room; whether something waits still."""
        if outlet.write_rest():
            if outlet.pending is None:
                return False
            if outlet.try_send(outlet.pending):
                outlet.sent(outlet.pending_seq)
                outlet.pending = None
                outlet.keep_rest()  # a copy already, but no longer the message's own list
                if not outlet.has_rest():
                    return False
        outlet.read_acks()  # taken in: they would wake the wait (a drop is for _check to report)
        return True

    def statistics(self) -> dict[str, int]:
        """``sent`` (messages sent: each went to every connected listener), ``dropped`` (per
        listener, not delivered because of ``backpressure`` or a dropped connection),
        ``unconfirmed`` (per listener, sent over a connection that then dropped before the
        listener acked delivering them: an upper bound of what it lost, see :mod:`.acks`),
        ``outlets`` (listeners connected to now) and ``disconnects`` (connections that dropped).
        With ``carrier="shm"`` also ``shm_sent`` (messages a listener got through shared memory;
        ``shm_loaned`` of them were filled in place with :meth:`loan`, without a copy),
        ``shm_fallback`` (messages with shm-sized buffers a listener got as frames instead) and
        ``shm_outlets`` (listeners with an open shared-memory port)."""
        outlets = list(self._outlets.values())
        counts = {"sent": self.sent, "dropped": self.dropped, "unconfirmed": self.unconfirmed,
                  "outlets": len(outlets),
                  "disconnects": sum(outlet.disconnects for outlet in outlets)}
        if self._shm is not None:
            counts.update(self._shm.statistics())
        return counts

    def shm_paths(self) -> dict[str, str]:
        """``carrier="shm"``: per listener endpoint, the path its last large message took
        (``"shm"`` or ``"frames"``); empty for other carriers."""
        return dict(self._shm.paths) if self._shm is not None else {}

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"publisher on {self.topic} was closed while sending")

    def close(self) -> None:
        """Close, also while another thread waits in :meth:`send` (it gets :class:`ClosedError`).

        A message still held by the ``"latest"`` policy goes out when its listener has room, as
        long as that listener still acks (see ``_await_acks``), else it counts as dropped; queued
        messages get ``PUBLISHER_LINGER_MS`` to leave.
        """
        if self._closed:
            return
        self._closed = True
        self._peer_check.cancel()
        self._wakeup.set()
        self._flush_needed.set()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join()
        with self._lock:
            self._wakeup.close()
            self._agent.withdraw(self._announcement)
            self._agent.unwatch(self._watch)
            try:
                self._await_acks()
            finally:  # whatever a listener did to the wait, every connection is closed
                outlets, self._outlets = list(self._outlets.values()), {}
                try:
                    for outlet in outlets:
                        try:
                            outlet.close(PUBLISHER_LINGER_MS)
                        except Exception:
                            logger.exception("publisher on %s: closing the connection to listener %s failed",
                                             self.topic, outlet.endpoint)
                finally:
                    if self._shm is not None:
                        self._shm.close()


_collector_lock = threading.Lock()


def _start_frame_collector() -> None:
    """pyzmq releases zero-copy frames from a thread of its own, which the first such frame
    starts in whatever thread made it; start it here instead, blind to the process's signals
    (see :mod:`wrapyfi_like.background`), so that it cannot take a Ctrl-C meant for the user."""
    with _collector_lock:
        if not zmq.utils.garbage.gc.is_alive():
            with signals_blocked():
                zmq.utils.garbage.gc.start()


def _held(message: list) -> list:
    """A message kept for later (``"latest"``'s pending one) as copies of its buffers."""
    return [frame if type(frame) is bytes else bytes(memoryview(frame)) for frame in message]


def _shared(frames: list) -> tuple[list, list]:
    """Large buffers wrapped once in untracked frames (``zero_copy="unsafe"``): every listener's
    send then shares that one libzmq buffer, where a bare buffer would be wrapped anew (and its
    release handed to pyzmq's garbage-collector thread) for each listener."""
    body = frames
    for index, frame in enumerate(frames):
        if type(frame) is not bytes and _size(frame) >= TRACK_FROM:
            if body is frames:
                body = list(frames)
            body[index] = zmq.Frame(frame)
    return body, []


def _copied(frames: list) -> tuple[list, list]:
    """Large buffers copied once into memory libzmq owns (a frame shared by every listener's
    send). A ``bytes`` copy instead went out zero-copy and so was wrapped anew for each listener,
    and each of those wrappers was released through pyzmq's garbage-collector thread."""
    return [frame if type(frame) is bytes or _size(frame) < TRACK_FROM
            else zmq.Frame(frame, copy=True) for frame in frames], []


def _copied_or_tracked(frames: list) -> tuple[list, list]:
    """``"block"``: large buffers copied if together they are smaller than :data:`COPY_BELOW`,
    else tracked (the copy's cost grows with the bytes, the wait's hardly)."""
    large = 0
    for frame in frames:
        if type(frame) is not bytes:
            size = _size(frame)
            if size >= TRACK_FROM:
                large += size
                if large >= COPY_BELOW:
                    return _tracked(frames)
    return _copied(frames) if large else (frames, [])


def _tracked(frames: list) -> tuple[list, list]:
    """Large buffers as tracked zero-copy frames; their trackers say when libzmq let go."""
    body, trackers = frames, []
    for index, frame in enumerate(frames):
        if type(frame) is not bytes and _size(frame) >= TRACK_FROM:
            if not trackers:
                body = list(frames)
            body[index] = frame = zmq.Frame(frame, track=True)
            trackers.append(frame.tracker)
    return body, trackers


def _size(buffer) -> int:
    return buffer.nbytes if type(buffer) is memoryview else memoryview(buffer).nbytes
