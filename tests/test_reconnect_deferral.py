"""A publisher that reconnects under the same id while its old connection is still there: every
message counted once, a bounded ``recv`` stays bounded, nothing of the old connection kept once it
is done, and ``"latest"`` still gives the newest (issue 17, the reconnect deferral).

Real sockets on 127.0.0.1: each raw connection below is what a publisher's libzmq socket makes
(:class:`Sender` of test_publisher_id_binding). A connection kept open and silent is, to the
listener, exactly a half-open one (its peer vanished without a word): only TCP keepalive ends it,
which its close stands for here.
"""

import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.encoding import Codec
from wrapyfi_like.middlewares import envelope
from wrapyfi_like.middlewares.envelope import DEFERRED, LATEST, BoundSequenceCheck, pack, unpack
from test_publisher_id_binding import Sender, _Sources, _intake_connection, _until

pytestmark = pytest.mark.timeout(30)


def _counts(transport) -> tuple[int, int, int, int]:
    stats = transport.statistics()
    return stats["received"], stats["missed"], stats["duplicate"], stats["malformed"]


def test_messages_refused_under_a_half_open_connection_are_not_counted_again_as_missed(topic, caplog):
    """The reconnected publisher's 6..15 are refused while its old connection holds the id
    (malformed: nothing tells them from a forger's then); 16 and 17 are lost on the way; 18..20
    arrive after the old connection ended. Each of the 20 messages is counted exactly once, and the
    takeover is logged once at WARNING with the count (it was: 10 malformed and 12 missed)."""
    listener = Listener("Test", topic)
    transport = listener._transport
    publisher = envelope.new_publisher_id()
    old, new = Sender(listener), Sender(listener)
    try:
        for seq in range(1, 6):
            old.send(topic, publisher, seq, seq)
        assert [Codec().decode(transport.recv(10)) for _ in range(5)] == [1, 2, 3, 4, 5]
        for seq in range(6, 16):
            new.send(topic, publisher, seq, seq)
        _until(lambda: transport.recv(0.1) is None and transport.statistics()["malformed"] == 10)
        old.close()  # what keepalive does to a half-open connection
        _until(lambda: _intake_connection(transport, new) is not None and len(transport._intake._connections) == 1)
        with caplog.at_level(logging.WARNING, logger="wrapyfi_like"):
            for seq in range(18, 21):
                new.send(topic, publisher, seq, seq)
            assert [Codec().decode(transport.recv(10)) for _ in range(3)] == [18, 19, 20]
        assert transport.recv(0) is None
        received, missed, duplicate, malformed = _counts(transport)
        assert (received, missed, duplicate, malformed) == (8, 2, 0, 10)
        assert received + missed + malformed == 20, "every message the publisher sent, counted once"
        assert transport.per_publisher()[publisher.hex()]["missed"] == 2
        took = [r for r in caplog.records if "took its id over" in r.getMessage()]
        assert len(took) == 1 and took[0].levelno == logging.WARNING and " 10 of its messages" in took[0].getMessage()
    finally:
        new.close()
        listener.close()


_OLD_PUBLISHER = """
import socket, sys
from wrapyfi_like.encoding import Codec
from wrapyfi_like.middlewares.envelope import pack
from wrapyfi_like.middlewares.zeromq import zmtp
host, port, topic, publisher = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), bytes.fromhex(sys.argv[4])
sock = socket.create_connection((host, port))
sock.sendall(zmtp.GREETING + zmtp.ready(b"PUSH"))
for seq in range(1, 6):
    frames = [topic, pack(publisher, seq), *Codec().encode(seq)]
    sock.sendall(b"".join(zmtp.frame_head(len(f), i < len(frames) - 1) + bytes(f) for i, f in enumerate(frames)))
print("sent", flush=True)
sys.stdin.read()
"""


def test_a_publisher_process_frozen_then_killed_and_its_successor_under_its_id_count_each_message_once(topic):
    """The same with processes: the old connection's process is stopped (SIGSTOP: its connection
    open and silent, as a half-open one) while its successor sends under its id, then killed."""
    listener = Listener("Test", topic)
    transport = listener._transport
    publisher = envelope.new_publisher_id()
    host, port = transport.endpoint[len("tcp://"):].rsplit(":", 1)
    old = subprocess.Popen([sys.executable, "-c", _OLD_PUBLISHER, host, port, topic, publisher.hex()],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    new = Sender(listener)
    try:
        assert old.stdout.readline() == b"sent\n"
        os.kill(old.pid, signal.SIGSTOP)
        assert [Codec().decode(transport.recv(10)) for _ in range(5)] == [1, 2, 3, 4, 5]
        for seq in range(6, 11):
            new.send(topic, publisher, seq, seq)
        _until(lambda: transport.recv(0.1) is None and transport.statistics()["malformed"] == 5)
        old.kill()
        old.wait(10)
        _until(lambda: len(transport._intake._connections) == 1)
        for seq in range(11, 14):
            new.send(topic, publisher, seq, seq)
        assert [Codec().decode(transport.recv(10)) for _ in range(3)] == [11, 12, 13]
        assert _counts(transport) == (8, 0, 0, 5)  # it was (8, 5, 0, 5): 5 lost, counted 10 times
    finally:
        old.kill()
        old.wait(10)
        new.close()
        listener.close()


def test_a_forger_refused_under_an_id_does_not_change_the_count_of_the_reconnect_that_follows(topic):
    """What a forger had refused under the id is its own: the honest publisher's reconnect gap
    is counted in full (the forger's message is malformed, once)."""
    listener = Listener("Test", topic)
    transport = listener._transport
    publisher = envelope.new_publisher_id()
    old, forger = Sender(listener), Sender(listener)
    new = None
    try:
        old.send(topic, publisher, 1, 1)
        assert Codec().decode(transport.recv(10)) == 1
        forger.send(topic, publisher, 3, "FORGED")  # a number the honest publisher then loses
        _until(lambda: transport.recv(0.1) is None and transport.statistics()["malformed"] == 1)
        old.close()
        _until(lambda: len(transport._intake._connections) == 1)
        new = Sender(listener)
        new.send(topic, publisher, 4, 4)  # 2 and 3 lost in the reconnect
        assert Codec().decode(transport.recv(10)) == 4
        assert _counts(transport) == (2, 2, 0, 1)
    finally:
        for sender in (forger, new):
            if sender is not None:
                sender.close()
        listener.close()


def test_a_bounded_recv_with_a_deferral_pending_keeps_its_timeout(topic, monkeypatch):
    """A message that must wait for its id's previous connection arrives at the very end of a
    recv(0.3): the call still returns by its own deadline (it waited up to twice as long)."""
    timeout = 0.3
    listener = Listener("Test", topic)
    transport = listener._transport
    publisher = envelope.new_publisher_id()
    old, new = Sender(listener), Sender(listener)
    try:
        old.send(topic, publisher, 1, 1)
        assert Codec().decode(transport.recv(10)) == 1
        # the old connection still has data the listener has not read: the new one's message waits
        monkeypatch.setattr(transport._sequence._binding, "pending", lambda owner: True)
        receive = transport._intake.receive
        late = []

        def arriving_at_the_end(wait):  # the first wait passes with nothing; then the message arrives
            if late or wait is None or wait < timeout / 2:
                return receive(wait)
            late.append(receive(wait))
            new.send(topic, publisher, 2, 2)
            frames = None
            while frames is None:
                frames = receive(1.0)
            return frames
        monkeypatch.setattr(transport._intake, "receive", arriving_at_the_end)
        started = time.monotonic()
        assert transport.recv(timeout) is None
        took = time.monotonic() - started
        assert late == [None] and transport._deferred, "the deferral was not met"
        assert took < timeout + 0.25, f"recv({timeout}) took {took:.2f} s"
    finally:
        old.close()
        new.close()
        listener.close()


def _reconnect_while_behind(listener, topic: str, publisher: bytes, old_count: int, new_count: int, flags: int = 0):
    """Review 27 R3's race: the old connection sent 1..old_count and closed (FIN after its data)
    while the listener was behind; the new connection's messages are read by the intake first.
    Returns the intake's side of the old connection and the new sender."""
    transport = listener._transport
    payload = b"x" * 4000
    old = Sender(listener)
    for seq in range(1, old_count + 1):  # the kernel takes them: the intake reads one message size at a time
        old.send(topic, publisher, seq, (seq, payload), flags)
    _until(lambda: _intake_connection(transport, old) is not None)
    old_side = _intake_connection(transport, old)
    old.finish()
    new = Sender(listener)
    for seq in range(old_count + 1, old_count + new_count + 1):
        new.send(topic, publisher, seq, (seq, payload), flags)

    def new_read_first() -> bool:
        c = _intake_connection(transport, new)
        return c is not None and c.queued > 0 and c.start == c.end
    _until(new_read_first)
    return old_side, new


def test_the_previous_connection_is_let_go_once_it_is_drained(topic):
    """After a reconnect the listener keeps the old connection's place for its id only while it
    may deliver: once it is drained a wait that reads nothing lets it go, and the intake keeps
    none of its 64 KB read buffer (it was kept per id until the id was forgotten, 4,096 ids)."""
    listener = Listener("Test", topic, max_message_size=64 * 1024)
    transport = listener._transport
    publisher = envelope.new_publisher_id()
    old_side, new = _reconnect_while_behind(listener, topic, publisher, 100, 5)
    try:
        got = [Codec().decode(transport.recv(10))[0] for _ in range(105)]
        assert got == list(range(1, 106))
        _until(lambda: transport.recv(0.05) is None and not transport._sequence._previous)
        assert old_side.sock.fileno() < 0 and len(old_side.buffer) == 0
        assert _counts(transport) == (105, 0, 0, 0)
    finally:
        new.close()
        listener.close()


def test_latest_after_a_reconnect_gives_the_newest_and_counts_the_superseded_as_dropped(topic):
    """``backpressure="latest"`` with a deferral: the old connection's 100 and the new one's 10
    are all there when the listener reads; each call gets the newest it can read without waiting,
    the new connection's deferred messages superseded as they are released, every skipped one
    counted as dropped, none missed (it got the old connection's messages one by one: 95 calls)."""
    listener = Listener("Test", topic, max_message_size=64 * 1024)
    transport = listener._transport
    publisher = envelope.new_publisher_id()
    _, new = _reconnect_while_behind(listener, topic, publisher, 100, 10, LATEST)
    try:
        got = [Codec().decode(transport.recv(10))[0]]
        while got[-1] != 110:
            got.append(Codec().decode(transport.recv(10))[0])
        # each call reads ahead what the intake has without waiting (a connection's byte budget at
        # a time, so a few calls); what it skips, the new connection's deferred ones too, is dropped
        assert got == sorted(set(got)) and len(got) <= 10, got
        assert transport.recv(0) is None
        stats = transport.statistics()
        assert (stats["received"], stats["dropped"], stats["missed"], stats["duplicate"], stats["malformed"]) == \
            (len(got), 110 - len(got), 0, 0, 0), stats
    finally:
        new.close()
        listener.close()


def test_a_previous_senders_message_the_listener_holds_back_keeps_it_from_counting_as_drained():
    """Seen under load: the listener read the old connection's last message while it held back
    the new one's (so it was held back too, behind them), then the intake dropped the old
    connection: by its connection it was drained, the new one's next message went first with a
    gap of one, and the old one's last was refused (1 missed and 1 malformed for no loss)."""
    sources = _Sources()
    check = BoundSequenceCheck(sources)

    def accept(seq: int, source: str) -> int:
        return check.accept(unpack(pack(b"A" * 8, seq)), source)

    assert [accept(1, "c1"), accept(2, "c1"), accept(3, "c1")] == [0, 0, 0]
    sources.gone.add("c1")
    assert accept(5, "c2") == DEFERRED  # c1 may still hold 4
    sources.empty.add("c1")  # the intake dropped c1 and has nothing of it: its 4 is held back by the listener
    check.held_back(["c2", "c1"])
    assert [accept(5, "c2"), accept(4, "c1")] == [DEFERRED, 0]
    check.held_back(["c2"])
    assert accept(5, "c2") == 0
    assert check.per_publisher[b"A" * 8] == {"received": 5, "missed": 0, "duplicate": 0, "dropped": 0}
    assert not check._previous  # c1 drained: let go
