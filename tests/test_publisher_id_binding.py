"""A publisher id belongs to the sender that used it first (docs/wire.md, the envelope).

Anyone who listens on a topic reads its publishers' ids off the stream. Before the binding, one
raw message from another connection carrying an honest publisher's id and its sequence number +
65,000 made the listener skip that publisher's next ~65,000 messages as duplicates and count
64,999 missed that never happened. Real sockets on 127.0.0.1; the honest publisher is ours.
"""

import socket
import threading
import time

import pytest

from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.connect.publishers import Publisher
from wrapyfi_like.encoding import Codec
from wrapyfi_like.middlewares import envelope
from wrapyfi_like.middlewares.envelope import DEFERRED, FOREIGN, BoundSequenceCheck, pack, unpack
from wrapyfi_like.middlewares.zeromq import listener as listener_module, zmtp
from wrapyfi_like.middlewares.zeromq.senders import ConnectionBinding
from test_pubsub import pair  # noqa: F401 (a fixture: a listener and a publisher on one topic)

pytestmark = pytest.mark.timeout(30)

A = b"A" * 8


class Sender:
    """A raw ZMTP connection to a listener, as a libzmq PUSH would make: closing it closes the TCP
    connection at once (a libzmq socket closes it later, from its I/O thread)."""

    def __init__(self, listener) -> None:
        host, port = listener._transport.endpoint[len("tcp://"):].rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)))
        self.sock.sendall(zmtp.GREETING + zmtp.ready(b"PUSH"))

    def send(self, topic: str, publisher: bytes, seq: int, value, flags: int = 0) -> None:
        frames = [topic.encode(), pack(publisher, seq, flags), *Codec().encode(value)]
        self.sock.sendall(b"".join(zmtp.frame_head(len(frame), index < len(frames) - 1) + bytes(frame)
                                   for index, frame in enumerate(frames)))

    def close(self) -> None:
        self.sock.close()

    def finish(self) -> None:
        """Close as an honest publisher does: read what the listener wrote (greeting, READY) first,
        so the close sends FIN after the data, not RST (which makes the kernel drop what the
        listener has not read yet). Its handshake is awaited: under load it may not be there yet."""
        self.sock.settimeout(10)
        handshake = len(zmtp.GREETING) + len(zmtp.ready(b"PULL"))
        while handshake > 0:
            got = self.sock.recv(handshake)
            assert got, "the listener closed the connection"
            handshake -= len(got)
        self.sock.setblocking(False)
        try:
            while self.sock.recv(65536):
                pass
        except BlockingIOError:
            pass
        self.sock.close()


def _until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.002)  # not a busy loop: the intake it waits on needs the GIL


def test_a_forged_envelope_from_another_connection_is_malformed_and_the_honest_stream_goes_on(pair, topic, caplog):
    publisher, listener = pair
    received = []

    def listen(count: int) -> None:
        for _ in range(count):
            received.append(listener.listen())

    first = threading.Thread(target=listen, args=(3,))
    first.start()
    for i in range(1, 4):
        publisher.publish(i)
    first.join(10)
    honest = listener._transport.last_envelope
    forger = Sender(listener)
    try:
        forger.send(topic, honest.publisher, honest.seq + 65_000, "FORGED")  # what B3 sent
        _until(lambda: listener._transport.recv(0.1) is None and listener._transport.statistics()["malformed"] == 1)
        for i in range(4, 204):
            publisher.publish(i)
        listen(200)
        assert received == list(range(1, 204)), "every honest message, in order; never the forged one"
        stats = listener._transport.statistics()
        assert (stats["received"], stats["missed"], stats["duplicate"], stats["malformed"]) == (203, 0, 0, 1), stats
        assert "is in use by another sender" in caplog.text
    finally:
        forger.close()


def test_a_publisher_that_reconnects_goes_on_with_exact_counts(topic):
    """A new connection under the same id, once the old one is gone, continues its stream: the gap
    across the reconnect is counted as missed, a repeat as duplicate, in order."""
    listener = Listener("Test", topic)
    transport = listener._transport
    publisher = envelope.new_publisher_id()
    try:
        old = Sender(listener)
        for seq in range(1, 6):
            old.send(topic, publisher, seq, seq)
        assert [Codec().decode(transport.recv(10)) for _ in range(5)] == [1, 2, 3, 4, 5]
        old.close()  # its end may reach the intake after the new connection's first message
        new = Sender(listener)
        try:
            for seq in (8, 5, 9, 10):  # 6 and 7 were lost in the reconnect; 5 comes again
                new.send(topic, publisher, seq, seq)
            assert [Codec().decode(transport.recv(10)) for _ in range(3)] == [8, 9, 10]
        finally:
            new.close()
        stats = transport.statistics()
        assert (stats["received"], stats["missed"], stats["duplicate"], stats["malformed"]) == (8, 2, 1, 0), stats
    finally:
        listener.close()


def test_a_publisher_restarted_with_a_new_id_is_heard_while_the_old_ids_sender_is_gone(pair, topic):
    publisher, listener = pair
    got = threading.Thread(target=listener.listen)
    got.start()
    publisher.publish("old")
    got.join(10)
    old_id = listener._transport.last_envelope.publisher
    publisher.close()
    restarted = Publisher("Test", topic, should_wait=True, wait_timeout=10)
    try:
        results = []
        got = threading.Thread(target=lambda: results.append(listener.listen()))
        got.start()
        restarted.publish("new")
        got.join(10)
        assert results == ["new"] and listener._transport.last_envelope.publisher != old_id
        stats = listener._transport.statistics()
        assert (stats["received"], stats["missed"], stats["malformed"]) == (2, 0, 0), stats
    finally:
        restarted.close()


def test_a_peer_that_uses_an_id_first_holds_it_while_its_connection_is_open(topic):
    """The documented limit: without CURVE the first sender of an id is trusted with it; another
    connection's messages under it are refused (counted, logged) until that sender is gone."""
    listener = Listener("Test", topic)
    transport = listener._transport
    publisher = envelope.new_publisher_id()
    first, second = Sender(listener), Sender(listener)
    try:
        first.send(topic, publisher, 1, "first")
        assert Codec().decode(transport.recv(10)) == "first"
        second.send(topic, publisher, 2, "second")
        _until(lambda: transport.recv(0.1) is None and transport.statistics()["malformed"] == 1)
        first.close()
        second.send(topic, publisher, 3, "second again")  # the id's sender left: this one goes on
        assert Codec().decode(transport.recv(10)) == "second again"
        stats = transport.statistics()  # 2, refused while the first sender was there, is counted once
        assert (stats["received"], stats["missed"], stats["malformed"]) == (2, 0, 1), stats
    finally:
        second.close()
        listener.close()


def test_a_connection_whose_peer_closed_it_may_be_taken_over_while_its_data_is_unread():
    """The ordering race of a reconnect: the intake may read the new connection's messages before
    the old connection's last ones (a listener behind leaves them in the kernel). The kernel knows
    the old one's peer has left (POLLRDHUP) though its data is unread; it is drained only once the
    intake dropped it."""
    binding = ConnectionBinding()
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    connection = _Connection(ours)
    try:
        assert not binding.may_take(connection)  # open, nothing pending
        theirs.send(b"x")
        assert not binding.may_take(connection)  # open, its messages are still to be read
        theirs.close()
        assert binding.may_take(connection)  # its peer closed it: another connection may take its ids
        assert not binding.drained(connection)  # but what it sent is still to be delivered
        assert ours.recv(1) == b"x"
        connection.queued = 1  # read, a message waits in the intake's queue
        ours.close()
        assert binding.may_take(connection) and not binding.drained(connection)  # the intake dropped it
        connection.queued = 0
        assert binding.drained(connection)  # and delivered everything it had
    finally:
        ours.close()
        theirs.close()


class _Connection:
    """What a binding sees of an intake connection: its socket, and what of it waits in the queue."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.queued = 0
        self.start = self.end = 0  # nothing of a message begun
        self.frames, self.big = [], None


class _Sources:
    """A binding over plain names: sources in ``gone`` have left."""

    def __init__(self) -> None:
        self.gone: set[str] = set()  # their peers left
        self.empty: set[str] = set()  # and they have nothing more to deliver
        self.unread: set[str] = set()  # have data the listener has not read yet

    def token(self, source: str) -> str:
        return source

    def may_take(self, owner: str) -> bool:
        return owner in self.gone

    def pending(self, owner: str) -> bool:
        return owner in self.unread

    def drained(self, owner: str) -> bool:
        return owner in self.empty


def test_the_sequence_check_keeps_each_id_to_its_sender_and_counts_across_a_takeover():
    sources = _Sources()
    check = BoundSequenceCheck(sources)

    def accept(seq: int, source: str) -> int:
        return check.accept(unpack(pack(A, seq)), source)

    assert [accept(1, "c1"), accept(2, "c1"), accept(65_002, "forger"), accept(3, "c1")] == [0, 0, FOREIGN, 0]
    sources.gone.add("c1")
    sources.empty.add("c1")
    assert [accept(6, "c2"), accept(5, "c2"), accept(7, "c2"), accept(4, "c1")] == [2, -1, 0, FOREIGN]
    assert check.per_publisher[A] == {"received": 5, "missed": 2, "duplicate": 1, "dropped": 0}
    assert accept(8, "forger") == FOREIGN  # c2 is there: a refused message changes nothing
    assert accept(8, "c2") == 0


def test_bindings_are_forgotten_with_their_ids(monkeypatch):
    """A peer inventing ids from ever new connections, each closed after its message, cannot grow
    what the listener keeps; from connections it keeps open, at most MAX_IDS_PER_SENDER ids each."""
    monkeypatch.setattr(envelope, "MAX_TRACKED_PUBLISHERS", 4)
    sources = _Sources()
    check = BoundSequenceCheck(sources)
    for index in range(50):
        assert check.accept(unpack(pack(index.to_bytes(8, "little"), 1)), f"connection {index}") == 0
        sources.gone.add(f"connection {index}")
        assert len(check._owners) <= 5 and len(check._last) <= 4
    accepted = [check.accept(unpack(pack((100 + index).to_bytes(8, "little"), 1)), "open") for index in range(40)]
    assert accepted.count(0) == envelope.MAX_IDS_PER_SENDER and len(check._owners) <= 5 + envelope.MAX_IDS_PER_SENDER


def test_a_takeover_defers_the_new_senders_messages_until_the_old_ones_tail_is_in():
    """The old sender's peer left but it still holds 4 and 5: the new sender's 6 and 7 wait
    (DEFERRED) until they are in, then go on with no gap; once the old sender has nothing more,
    a real gap is counted once."""
    sources = _Sources()
    check = BoundSequenceCheck(sources)

    def accept(seq: int, source: str) -> int:
        return check.accept(unpack(pack(A, seq)), source)

    assert [accept(1, "c1"), accept(2, "c1"), accept(3, "c1")] == [0, 0, 0]
    assert accept(6, "c2") == FOREIGN  # c1 is there
    sources.unread.add("c1")  # and behind: its end, if it left, comes after its data
    assert accept(6, "c2") == DEFERRED
    check.waiting = False  # the listener stopped waiting (MAX_DEFERRED)
    assert accept(6, "c2") == FOREIGN
    check.waiting = True
    sources.gone.add("c1")
    assert [accept(6, "c2"), accept(4, "c1"), accept(6, "c2"), accept(5, "c1")] == [DEFERRED, 0, DEFERRED, 0]
    assert [accept(6, "c2"), accept(7, "c2"), accept(5, "c1")] == [0, 0, -1]  # c1's late repeat: duplicate
    assert accept(10, "c2") == DEFERRED  # 8 and 9 may still be in c1
    sources.empty.add("c1")
    assert [accept(10, "c2"), accept(11, "c2")] == [2, 0]
    assert check.per_publisher[A] == {"received": 9, "missed": 2, "duplicate": 1, "dropped": 0}
    assert accept(12, "forger") == FOREIGN  # c2 is there


def _intake_connection(transport, sender):
    """The intake's side of ``sender``'s connection (None: not accepted yet)."""
    port = sender.sock.getsockname()[1]
    for c in list(transport._intake._connections.values()):
        try:
            if c.sock.getpeername()[1] == port:
                return c
        except OSError:  # the old connection, closed by its peer
            pass
    return None


def test_a_publisher_that_reconnects_while_the_listener_is_behind_loses_nothing(topic, caplog):
    """Review 27 R3: the old connection sent 1..200 and closed (FIN after its data) while the
    listener was behind, so most of it is still unread in the kernel; the reconnected publisher's
    201..210 are read by the intake first. Every message arrives, in order, none counted missed,
    duplicate or malformed (it was: 10 malformed, then 10 missed; before the binding: the old
    tail lost as missed and duplicate)."""
    old_count, payload = 200, b"x" * 4000
    # a connection's byte budget in the intake is one message size: the old one's rest stays in the kernel
    listener = Listener("Test", topic, max_message_size=64 * 1024)
    transport = listener._transport
    publisher = envelope.new_publisher_id()
    old = Sender(listener)
    sent = threading.Thread(target=lambda: [old.send(topic, publisher, seq, (seq, payload))
                                            for seq in range(1, old_count + 1)])
    sent.start()
    sent.join(20)
    assert not sent.is_alive(), "the kernel did not take the old connection's messages"
    old.finish()
    new = Sender(listener)
    try:
        for seq in range(old_count + 1, old_count + 11):
            new.send(topic, publisher, seq, (seq, payload))

        def new_read_first() -> bool:  # the race of R3: the new connection's messages wait in the intake
            c = _intake_connection(transport, new)
            return c is not None and c.queued > 0 and c.start == c.end
        _until(new_read_first)
        got = [Codec().decode(transport.recv(10))[0] for _ in range(old_count + 10)]
        assert got == list(range(1, old_count + 11))
        assert transport.recv(0) is None
        stats = transport.statistics()
        assert (stats["received"], stats["missed"], stats["duplicate"], stats["malformed"]) == (210, 0, 0, 0), stats
        assert "in use by another sender" not in caplog.text
    finally:
        new.close()
        listener.close()


@pytest.mark.parametrize("max_deferred", [listener_module.MAX_DEFERRED, 1])
def test_a_forged_envelope_while_the_ids_connection_is_behind_waits_and_is_refused(topic, monkeypatch, max_deferred):
    """While the honest connection has unread data, another connection's message under its id
    waits (its end could be behind that data); once the data is read and the connection is still
    open, it is malformed. Past MAX_DEFERRED held messages it is refused at once. Either way the
    honest stream arrives whole and in order."""
    monkeypatch.setattr(listener_module, "MAX_DEFERRED", max_deferred)
    honest_count, payload = 100, b"x" * 4000
    listener = Listener("Test", topic, max_message_size=64 * 1024)
    transport = listener._transport
    publisher = envelope.new_publisher_id()
    honest, forger = Sender(listener), Sender(listener)
    try:
        sent = threading.Thread(target=lambda: [honest.send(topic, publisher, seq, (seq, payload))
                                                for seq in range(1, honest_count + 1)])
        sent.start()
        sent.join(20)
        assert not sent.is_alive(), "the kernel did not take the honest connection's messages"
        # the honest connection uses the id first (under load the intake could read the forger's first)
        _until(lambda: (c := _intake_connection(transport, honest)) is not None and c.queued > 0)
        for seq in range(5):
            forger.send(topic, publisher, 65_000 + seq, (0, b"FORGED"))

        def forged_read() -> bool:
            c = _intake_connection(transport, forger)
            return c is not None and c.queued > 0 and c.start == c.end
        _until(forged_read)
        held = []  # how many messages were held back each time they were offered again
        offer = transport._offer_deferred
        monkeypatch.setattr(transport, "_offer_deferred", lambda: (held.append(len(transport._deferred)), offer()))
        got = [Codec().decode(transport.recv(10))[0] for _ in range(honest_count)]
        assert got == list(range(1, honest_count + 1))
        _until(lambda: transport.recv(0.1) is None and transport.statistics()["malformed"] == 5)
        assert held and max(held) > 1, held  # the race was met (with 1: held past MAX_DEFERRED)
        stats = transport.statistics()
        assert (stats["received"], stats["missed"], stats["duplicate"], stats["malformed"]) == (100, 0, 0, 5), stats
    finally:
        honest.finish()
        forger.close()
        listener.close()
