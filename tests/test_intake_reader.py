"""Who reads an intake's sockets (leader/follower): a caller waiting in ``receive`` reads them
itself, the intake's own thread reads only while no caller does, and the role passes between them
without losing, reordering or stalling anything.

Each test records which thread queued each message (the intake's ``_deliver``, where a parsed
message enters the queue, or ``_read_direct``, where a waiting caller takes one whole from its
read), so it can tell "the caller read it" from "the intake's thread read it".
"""

import os
import struct
import threading
import time

import pytest
import zmq

from wrapyfi_like.exceptions import ClosedError
from wrapyfi_like.middlewares.zeromq import intake as intake_module
from wrapyfi_like.middlewares.zeromq.intake import ZmtpIntake
from wrapyfi_like.middlewares.zeromq.settings import ZeroMQSettings

pytestmark = pytest.mark.timeout(60)


class Readers:
    """Wraps an intake's ``_deliver`` and ``_read_direct``: the name of the thread that queued each
    message, or read it and handed it straight to its caller (counted in ``direct``), in order."""

    def __init__(self, intake: ZmtpIntake) -> None:
        self.threads: list[str] = []
        self.direct = 0
        self.changed = threading.Condition()
        deliver, read_direct = intake._deliver, intake._read_direct

        def recording(batch: list) -> None:
            deliver(batch)
            with self.changed:
                self.threads.extend(threading.current_thread().name for _ in batch)
                self.changed.notify_all()

        def recording_direct(connection) -> list:
            frames = read_direct(connection)
            if frames is not None:
                with self.changed:
                    self.threads.append(threading.current_thread().name)
                    self.direct += 1
                    self.changed.notify_all()
            return frames

        intake._deliver = recording
        intake._read_direct = recording_direct

    def wait_for(self, predicate, timeout: float = 20) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(self.threads), timeout), self.threads[-5:]


def make_intake(carrier: str = "tcp", queue_depth=None) -> ZmtpIntake:
    address = ZeroMQSettings.from_environment().bind_address(carrier)
    return ZmtpIntake(address, 1024 * 1024, queue_depth, lambda peer, problem: None)


def dealer(endpoint: str) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)  # as a publisher's outlet: it is sent acks
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 1000)
    sock.connect(endpoint)
    return sock


def message(number: int) -> list[bytes]:
    return [b"/topic", struct.pack("<Q", number), b"h", bytes(1024)]


def number_of(frames: list) -> int:
    return struct.unpack("<Q", frames[1])[0]


def connect(intake: ZmtpIntake, sender: zmq.Socket) -> None:
    """Send message 0 and take it: the sender's connection is complete."""
    sender.send_multipart(message(0))
    assert number_of(intake.receive(10)) == 0


def is_intake_thread(name: str) -> bool:
    return name.startswith("wrapyfi_like intake")


@pytest.mark.parametrize("carrier", ["tcp", "ipc"])
def test_a_waiting_caller_reads_the_sockets_itself(carrier, in_thread):
    """A message that arrives while its caller waits goes socket -> caller: the caller's thread
    reads and parses it (no hop through the intake's thread), and hands it to itself without
    queuing it (one message whole in one read)."""
    intake = make_intake(carrier)
    readers = Readers(intake)
    sender = dealer(intake.endpoint)
    try:
        sender.send_multipart(message(0))  # the connection's handshake and first message
        assert number_of(intake.receive(10)) == 0
        callers = set()
        for number in range(1, 50):
            waiting = in_thread(lambda: (threading.current_thread().name, intake.receive(10)))
            wait_until_the_caller_reads(intake)
            sender.send_multipart(message(number))
            name, frames = waiting.result(timeout=10)
            assert number_of(frames) == number
            callers.add(name)
        # a message sent in the instant between the caller's arrival and its asking for the role
        # may still be read by the intake's thread; almost all are the caller's own reads
        assert sum(name in callers for name in readers.threads[1:]) >= 45, readers.threads
        assert readers.direct >= 40, f"only {readers.direct} of 49 messages went straight to their caller"
    finally:
        sender.close()
        intake.release()


def wait_until_the_caller_reads(intake: ZmtpIntake) -> None:
    """Until a caller waits in ``receive`` holding the reader role (not asking for it)."""
    deadline = time.monotonic() + 10
    while not (intake._caller_in and intake._role.locked() and not intake._wanted):
        assert time.monotonic() < deadline, "the caller never took the reader role"
        threading.Event().wait(0.001)


def test_after_the_caller_leaves_the_intake_thread_reads_and_hands_the_role_back(in_thread):
    """A caller that stops calling ``receive`` while messages keep coming: within the lease the
    intake's thread reads them (so the queue fills while the caller is away), and when the caller
    comes back and empties the queue it reads again itself; every message arrives once, in order."""
    intake = make_intake(queue_depth=100_000)
    readers = Readers(intake)
    sender = dealer(intake.endpoint)
    try:
        received = []
        for number in range(100):
            sender.send_multipart(message(number))
            received.append(number_of(intake.receive(10)))
        for number in range(100, 600):  # the caller is away: nobody calls receive
            sender.send_multipart(message(number))
        readers.wait_for(lambda threads: len(threads) == 600 and is_intake_thread(threads[-1]))
        assert intake.queued() == 500
        received += [number_of(intake.receive(10)) for _ in range(500)]
        waiting = in_thread(lambda: intake.receive(10))
        wait_until_the_caller_reads(intake)  # the caller asked for the role back, and has it
        sender.send_multipart(message(600))
        received.append(number_of(waiting.result(timeout=10)))
        assert received == list(range(601))
        assert not is_intake_thread(readers.threads[-1]), "the caller did not take the role back"
    finally:
        sender.close()
        intake.release()


@pytest.mark.parametrize("carrier", ["tcp", "ipc"])
def test_close_from_another_thread_wakes_a_caller_that_is_reading(carrier, in_thread):
    intake = make_intake(carrier)
    path = intake.endpoint[len("ipc://"):] if carrier == "ipc" else None
    try:
        waiting = in_thread(lambda: intake.receive(None))
        wait_until_the_caller_reads(intake)
        closed_at = time.monotonic()
        intake.close()
        with pytest.raises(ClosedError):
            waiting.result(timeout=5)
        assert time.monotonic() - closed_at < 1.0  # woken through the pipe, not at a slice's end
        intake.release()
        assert not intake._thread.is_alive()
        if path is not None:
            assert not os.path.exists(path)
    finally:
        intake.release()


def test_a_caller_busy_for_two_seconds_while_20k_messages_arrive_loses_nothing(in_thread):
    """The publisher keeps sending while the caller does other work for 2 s: the intake's thread
    reads until the queue is full (then TCP backpressure holds the sender), pongs and acks go on;
    afterwards the caller takes all 20,000 messages, none lost, in order."""
    total = 20_000
    intake = make_intake()
    readers = Readers(intake)
    sender = dealer(intake.endpoint)
    try:
        sender.send_multipart(message(0))
        received = [number_of(intake.receive(10))]
        sending = in_thread(lambda: [sender.send_multipart(message(n)) for n in range(1, total)])
        readers.wait_for(lambda threads: len(threads) > intake_module.DEFAULT_QUEUE_DEPTH
                         and is_intake_thread(threads[-1]))  # the thread reads for the busy caller
        threading.Event().wait(2)  # the caller's other work
        assert intake.queued() <= intake_module.DEFAULT_QUEUE_DEPTH + 1  # bounded: the rest waits in TCP
        while len(received) < total:
            frames = intake.receive(10)
            assert frames is not None, f"stalled after {len(received)} messages"
            received.append(number_of(frames))
        sending.result(timeout=10)
        assert received == list(range(total))
        assert intake.receive(0) is None
    finally:
        sender.close()
        intake.release()


def test_a_polling_caller_is_served_by_the_intake_thread():
    """``receive(0)`` reads only while the intake's thread does not: with no blocking caller ever,
    that thread reads, and a caller that only polls finds every message queued, in order."""
    intake = make_intake()
    readers = Readers(intake)
    sender = dealer(intake.endpoint)
    try:
        for number in range(20):
            sender.send_multipart(message(number))
        readers.wait_for(lambda threads: len(threads) == 20)
        assert all(is_intake_thread(name) for name in readers.threads)
        assert [number_of(intake.receive(0)) for _ in range(20)] == list(range(20))
        assert intake.receive(0) is None
    finally:
        sender.close()
        intake.release()


def test_large_messages_are_read_ahead_by_the_intake_thread_and_small_ones_by_the_caller(in_thread):
    """From :data:`~.intake.BULK_FROM` bytes the intake's thread reads the next message while the
    caller works on the last one (the kernel's copy overlaps the caller's work); once messages are
    small again, the waiting caller takes the role back."""
    intake = make_intake(queue_depth=100)
    readers = Readers(intake)
    sender = dealer(intake.endpoint)
    large = bytes(intake_module.BULK_FROM)
    try:
        connect(intake, sender)
        for number in range(1, 20):
            waiting = in_thread(lambda: intake.receive(10))
            sender.send_multipart([*message(number)[:3], large])
            assert number_of(waiting.result(timeout=10)) == number
        assert sum(is_intake_thread(name) for name in readers.threads[2:20]) >= 16, readers.threads
        for number in range(20, 40):
            waiting = in_thread(lambda: intake.receive(10))
            sender.send_multipart(message(number))
            assert number_of(waiting.result(timeout=10)) == number
        assert sum(not is_intake_thread(name) for name in readers.threads[25:40]) >= 13, readers.threads
    finally:
        sender.close()
        intake.release()


def test_a_burst_that_has_arrived_is_drained_by_receive_zero_not_one_message_per_call():
    """What a ``"latest"`` listener does: one blocking receive, then ``receive(0)`` until None. A
    burst of 64 KiB messages (each a frame read in several pieces) that sits in the socket must all
    come out of that drain, whoever holds the reader role; one message per call made a latest
    listener return a burst one by one (conformance ``test_latest_returns_the_newest``)."""
    intake = make_intake()
    sender = dealer(intake.endpoint)
    try:
        connect(intake, sender)
        count = 20
        for number in range(1, count + 1):
            sender.send_multipart([b"/topic", struct.pack("<Q", number), b"h", bytes(64 * 1024)])
        assert number_of(intake.receive(10)) == 1  # the burst has begun to arrive
        deadline = time.monotonic() + 10
        drained, stops = [], 0
        while len(drained) < count - 1 and time.monotonic() < deadline:
            frames = intake.receive(0)
            if frames is None:  # the drain stopped: wait for the next message, as a listener would
                stops += 1
                frames = intake.receive(1)
            if frames is not None:
                drained.append(number_of(frames))
        assert drained == list(range(2, count + 1))
        assert stops <= 2, f"a burst that had arrived came out a few at a time ({stops} stops)"
    finally:
        sender.close()
        intake.release()


def thread_wake_ups(thread: threading.Thread) -> int:
    """How many times ``thread`` went to sleep and woke (Linux: its voluntary context switches)."""
    with open(f"/proc/self/task/{thread.native_id}/status") as status:
        for line in status:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches in the thread's status")


def test_a_caller_waiting_long_does_not_make_the_intake_thread_poll():
    """While a caller waits in ``receive`` for messages that do not come, the intake's thread
    sleeps until the caller leaves (woken at most every SIGNAL_CHECK), instead of checking every
    READER_LEASE whether the caller is still there (100 wake-ups a second for nothing)."""
    intake = make_intake()
    sender = dealer(intake.endpoint)
    try:
        connect(intake, sender)
        before, started = thread_wake_ups(intake._thread), time.monotonic()
        assert intake.receive(1.0) is None
        seconds = time.monotonic() - started
        woken = thread_wake_ups(intake._thread) - before
        assert woken <= 3 + seconds / intake_module.SIGNAL_CHECK, f"{woken} wake-ups in {seconds:.2f} s"
    finally:
        sender.close()
        intake.release()


def test_the_caller_leaving_a_long_wait_wakes_the_intake_thread(monkeypatch, in_thread):
    """The thread sleeps while a caller waits; when the caller leaves, it wakes the thread, which
    then reads for it after READER_LEASE, as after a short wait. (The thread's own slice is made
    30 s here, so only the caller's wake-up can start it within the test's 10 s.)"""
    monkeypatch.setattr(intake_module, "SIGNAL_CHECK", 30.0)
    intake = make_intake()
    readers = Readers(intake)
    sender = dealer(intake.endpoint)
    try:
        connect(intake, sender)
        deadline = time.monotonic() + 10
        slept = False
        while not slept:  # a wait during which the thread went to sleep for the caller
            waiting = in_thread(lambda: intake.receive(0.5))
            while not (slept or waiting.done()):
                slept = intake._dozing
                threading.Event().wait(0.001)
            assert waiting.result(timeout=10) is None
            assert time.monotonic() < deadline, "the intake's thread never slept while a caller waited"
        sender.send_multipart(message(1))  # the caller has left and stays away
        readers.wait_for(lambda threads: len(threads) == 2, timeout=10)
        assert is_intake_thread(readers.threads[-1])
        assert number_of(intake.receive(0)) == 1
    finally:
        sender.close()
        intake.release()


def test_messages_handed_straight_to_their_caller_are_acked_too(in_thread):
    """A message that skips the queue (read whole by its waiting caller) is acked like a queued
    one: fewer than ACK_EVERY of them, delivered one at a time, are acked on the next tick."""
    from wrapyfi_like.middlewares.zeromq import acks

    intake = make_intake()
    readers = Readers(intake)
    sender = dealer(intake.endpoint)
    try:
        connect(intake, sender)
        intake.delivered(intake.source, 1)
        for number in range(1, 4):
            waiting = in_thread(lambda: intake.receive(10))
            wait_until_the_caller_reads(intake)
            sender.send_multipart(message(number))
            assert number_of(waiting.result(timeout=10)) == number
            intake.delivered(intake.source, number + 1)
        assert readers.direct >= 1, "no message went straight to its caller"
        upto = 0
        while upto < 4:  # acks are cumulative: the last one read says how far
            assert sender.poll(10_000), f"acked up to {upto} of 4"
            since, upto = acks.unpack(sender.recv())
            assert since == 1
    finally:
        sender.close()
        intake.release()


def test_a_signal_interrupting_a_caller_that_took_the_role_does_not_stop_the_reading(monkeypatch):
    """Ctrl-C can land between the moment a waiting caller takes the reader role and its read:
    the role is let go as the exception leaves receive, so the next call (a program that catches
    KeyboardInterrupt and goes on) still gets its messages."""
    intake = make_intake()
    sender = dealer(intake.endpoint)
    try:
        connect(intake, sender)

        def interrupted(deadline, reading):
            assert reading, "the caller took the role in receive"
            raise KeyboardInterrupt

        # the intake's thread takes the role once no caller came for READER_LEASE (a loaded
        # machine can pause that long after connect): it is kept from taking it, and let go
        monkeypatch.setattr(intake, "_thread_reads", lambda: False)
        intake._wakeup.set()  # ends the wait of a step the thread may be in
        deadline = time.monotonic() + 10
        while intake._role.locked():
            assert time.monotonic() < deadline, "the intake's thread kept the reader role"
            threading.Event().wait(0.001)
        intake._lead = interrupted
        with pytest.raises(KeyboardInterrupt):
            intake.receive(5)
        del intake._lead
        assert not intake._role.locked() and not intake._caller_in
        monkeypatch.undo()
        sender.send_multipart(message(1))
        assert number_of(intake.receive(10)) == 1
    finally:
        sender.close()
        intake.release()


def test_a_signal_during_a_direct_read_loses_no_byte_of_it(monkeypatch, in_thread):
    """A read taken straight to its caller is kept on the connection before it is parsed: an
    exception from a signal while it is looked at leaves the bytes there, and they arrive next."""
    intake = make_intake()
    sender = dealer(intake.endpoint)
    try:
        connect(intake, sender)
        calls = []
        whole_message = intake_module._whole_message

        def interrupted_once(*args):
            calls.append(1)
            if len(calls) == 1:
                raise KeyboardInterrupt
            return whole_message(*args)

        monkeypatch.setattr(intake_module, "_whole_message", interrupted_once)
        waiting = in_thread(lambda: intake.receive(10))
        wait_until_the_caller_reads(intake)
        sender.send_multipart(message(1))
        with pytest.raises(KeyboardInterrupt):
            waiting.result(timeout=10)
        assert calls, "the message was read straight to its caller"
        assert number_of(intake.receive(10)) == 1
    finally:
        sender.close()
        intake.release()
