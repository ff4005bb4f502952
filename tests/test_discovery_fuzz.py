"""A live directory in its own process against hostile peers: it stays up, bounded, and useful.

More than 10,000 hostile messages (random bytes, mutated and wrong-typed syncs, spoofed node ids,
multi-frame junk, unread listings and unread hints), one 100 MB frame and a flood of registrations go to the
directory while honest nodes in other processes find each other. The directory process's RSS is
read from /proc before and after each shape (printed; run with ``-s`` to see the numbers).
"""

from __future__ import annotations

import random
import threading
import time

import msgpack
import pytest
import zmq

from node_processes import Node, event_is
from wrapyfi_like.middlewares.ports import free_port
from wrapyfi_like.middlewares.zeromq.discovery import list_directory, protocol
from wrapyfi_like.middlewares.zeromq.discovery.directory import ADDRESS_SHARE, SMALL_RESERVE
from wrapyfi_like.middlewares.zeromq.keys import listener_key

pytestmark = pytest.mark.timeout(120)

HOSTILE_MESSAGES = 12_000
CONNECTIONS = 24
FLOOD_CONNECTIONS = 100
FLOOD_SYNCS_ON_ONE_CONNECTION = 2000
MB = 1024 * 1024
LAST = 10**9


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def dealer(address: str, routing_id: bytes = b"") -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 2000)
    sock.setsockopt(zmq.SNDTIMEO, 10_000)
    if routing_id:
        sock.setsockopt(zmq.ROUTING_ID, routing_id)
    sock.connect(address)
    return sock


def random_value(rng: random.Random, depth: int = 0):
    choice = rng.randrange(9 if depth < 3 else 6)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False, -1, 0, 2**63, -2**63, 1.5, float("nan")])
    if choice == 2:
        return "x" * rng.choice([0, 1, 64, 300, 5000])
    if choice == 3:
        return rng.randbytes(rng.randrange(40))
    if choice == 4:
        return rng.choice(["tcp://127.0.0.1:0", "tcp://*:1", "inproc://x", "ipc://rel", "tcp://127.0.0.1:99999"])
    if choice == 5:
        return rng.randrange(-10, 10**6)
    if choice == 6:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    if choice == 7:
        return {str(rng.randrange(100)): random_value(rng, depth + 1) for _ in range(rng.randrange(5))}
    return msgpack.ExtType(rng.randrange(128), rng.randbytes(4))


def hostile_messages(rng: random.Random, victim: str, count: int):
    """``count`` hostile multipart messages (lists of frames), every shape in turn."""
    valid = ["sync", 1, "attacker", [["\0listener /fuzz", "tcp://127.0.0.1:7", {"pid": 1}]], ["\0listener /fuzz"], "/0"]
    for index in range(count):
        shape = index % 8
        if shape == 0:
            yield [rng.randbytes(rng.randrange(2000))]
        elif shape == 1:  # a valid sync with bytes flipped
            frame = bytearray(msgpack.packb(valid))
            for _ in range(rng.randrange(1, 6)):
                frame[rng.randrange(len(frame))] = rng.randrange(256)
            yield [bytes(frame)]
        elif shape == 2:  # a valid structure with one field replaced by a value of another type
            message = list(valid)
            message[rng.randrange(len(message))] = random_value(rng)
            yield [msgpack.packb(message)]
        elif shape == 3:  # another connection's node id: may neither renew nor evict it
            yield [rng.choice([protocol.bye(victim, "/0"), protocol.sync(index, victim, [], [], "/0")])]
        elif shape == 4:
            yield [rng.randbytes(10) for _ in range(rng.randrange(2, 6))]
        elif shape == 5:  # a listing nobody reads
            yield [protocol.list_request(index, "/0")]
        elif shape == 6:  # containers that claim more than they hold, and deep nesting
            yield [rng.choice([b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\x91" * 100_000,
                               b"\xdb\xff\xff\xff\xff" + b"a" * 10])]
        else:  # bad endpoints and oversized info in an otherwise valid sync
            announcement = ["\0listener /fuzz", random_value(rng), {"a": "b" * rng.choice([10, 257, 5000])}]
            yield [protocol.encode(["sync", index, "attacker", [announcement], [], "/0"])]


def fuzz(address: str, victim: str, counters: dict) -> None:
    rng = random.Random(16)
    sockets = [dealer(address) for _ in range(CONNECTIONS)]
    try:
        for index, frames in enumerate(hostile_messages(rng, victim, HOSTILE_MESSAGES)):
            sockets[index % CONNECTIONS].send_multipart(frames)
            counters["sent"] += 1
        for sock in sockets:  # one connection's requests are handled in order: this answer comes last
            sock.send(protocol.list_request(LAST, "/0"))
        for sock in sockets:
            while True:
                assert sock.poll(30_000), "the directory stopped answering a hostile connection"
                reply = msgpack.unpackb(sock.recv())
                if reply[:2] == ["listing", LAST]:
                    counters["answered"] += 1
                    break
    finally:
        for sock in sockets:
            sock.close(linger=2000)


FLOOD = [[f"\0listener /flood/{n}", f"tcp://127.0.0.1:{10000 + n}", {"class_name": "Flood"}]
         for n in range(protocol.MAX_ANNOUNCEMENTS)]


class RegistrationFlood:
    """Valid syncs of :data:`~protocol.MAX_ANNOUNCEMENTS` made-up listeners each, one node per
    connection, from another loopback address (127.0.0.2: the same host as the honest nodes, so
    the same share), renewed every second until stopped. Each
    node also watches a flooded key and says it takes ``changed`` hints, and never reads one:
    every node that gets in owes the others a hint they leave unread."""

    def __init__(self, address: str) -> None:
        port = address.rsplit(":", 1)[1]
        self.offered = 0
        self._stop = threading.Event()
        self._sockets = [dealer(f"tcp://127.0.0.2:0;127.0.0.1:{port}", protocol.agent_routing_id(b"F%d" % index))
                         for index in range(FLOOD_CONNECTIONS)]
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        seq = 0
        while not self._stop.is_set():
            for index, sock in enumerate(self._sockets):
                sock.send(protocol.sync(seq, f"flood-{index}", FLOOD, [FLOOD[0][0]], "/0"))
                self.offered += len(FLOOD)
            seq += 1
            self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for sock in self._sockets:
            sock.close(linger=0)


def registration_flood_on_one_connection(address: str) -> int:
    """The flood's syncs from one connection under ever new node ids; returns the registrations offered."""
    offered = 0
    sock = dealer(address)
    sock.setsockopt(zmq.RCVHWM, 0)  # take every refusal, so the last answer is never dropped
    for index in range(FLOOD_SYNCS_ON_ONE_CONNECTION):
        sock.send(protocol.sync(index, f"one-{index}", FLOOD, [], "/0"))
        offered += len(FLOOD)
    sock.send(protocol.list_request(LAST, "/0"))
    while True:  # handled in order: once this listing arrives, the whole flood has been
        assert sock.poll(60_000), "the directory stopped answering the flood"
        if msgpack.unpackb(sock.recv())[:2] == ["listing", LAST]:
            break
    sock.close()
    return offered


def meet(env: dict, topic: str) -> list[Node]:
    """A listener and a publisher started now find each other and deliver 20 messages in order."""
    listener = Node("listen", topic, env=env)
    publisher = Node("publish", topic, "--count", "20", env=env)
    for seq in range(20):
        listener.wait_for(event_is("got", seq=seq), timeout=40)
    return [listener, publisher]


def listed(address: str, topic: str) -> list[str]:
    return [e.endpoint for e in list_directory(address, timeout=5) if e.key == listener_key(topic)]


def test_a_live_directory_survives_hostile_peers_with_bounded_memory(topic):
    address = f"tcp://127.0.0.1:{free_port()}"
    env = {"WRAPYFI_ZEROMQ_DISCOVERY": address}
    host = Node("idle", env=env)
    nodes = [host]
    try:
        host.wait_for(event_is("ready"))
        pid = host.process.pid
        victim = Node("listen", f"{topic}/victim", env=env)
        nodes.append(victim)
        victim_endpoint = victim.wait_for(event_is("ready"))["endpoint"]
        deadline = time.monotonic() + 20  # "ready" comes when it announced; the directory hears of it at its next sync
        while not (rows := [e for e in list_directory(address, timeout=5) if e.endpoint == victim_endpoint]):
            assert time.monotonic() < deadline, "the victim never appeared in the directory"
            time.sleep(0.02)
        victim_row = rows[0]
        memory = {"before": rss(pid)}

        counters = {"sent": 0, "answered": 0}
        fuzzing = threading.Thread(target=fuzz, args=(address, victim_row.node, counters))
        fuzzing.start()
        nodes += meet(env, f"{topic}/during")  # honest newcomers meet while the fuzz runs
        fuzzing.join(timeout=90)
        assert not fuzzing.is_alive() and counters == {"sent": HOSTILE_MESSAGES, "answered": CONNECTIONS}
        assert listed(address, f"{topic}/victim") == [victim_endpoint], "a spoofed bye or sync evicted the victim"
        memory["after 12k hostile messages"] = rss(pid)

        big = dealer(address)
        big.send(b"\x90" * (100 * MB))
        big.close(linger=5000)
        assert listed(address, f"{topic}/victim") == [victim_endpoint]
        memory["after a 100 MB frame"] = rss(pid)

        flood = RegistrationFlood(address)
        try:
            share = int(protocol.MAX_ENTRIES * ADDRESS_SHARE)
            big_nodes_may = int(protocol.MAX_ENTRIES * (ADDRESS_SHARE - SMALL_RESERVE))  # the rest: small nodes
            deadline = time.monotonic() + 30
            while len(held := list_directory(address, timeout=5)) < big_nodes_may - len(FLOOD):
                assert time.monotonic() < deadline, f"the flood did not fill its share ({len(held)} entries)"
                time.sleep(0.05)
            flooded = sum(e.info.get("class_name") == "Flood" for e in held)
            assert flooded <= share, "one address holds more than its share"
            assert victim_endpoint in {e.endpoint for e in held}, "a node already there keeps renewing"
            nodes += meet(env, f"{topic}/flooded")  # small newcomers of the same host still get in
            memory[f"during a flood of {flood.offered:,} registrations from {FLOOD_CONNECTIONS} connections "
                   f"({flooded:,} held)"] = rss(pid)
        finally:
            flood.stop()
        offered = registration_flood_on_one_connection(address)
        memory[f"after {offered:,} more from one connection"] = rss(pid)

        deadline = time.monotonic() + 30  # the flood is not renewed: it expires on the timer
        while len(list_directory(address, timeout=5)) > 10:
            assert time.monotonic() < deadline, "the flood's entries did not expire"
            time.sleep(0.2)
        nodes += meet(env, f"{topic}/after")
        memory["after expiry"] = rss(pid)

        assert host.process.poll() is None
        print("\ndirectory RSS:", {k: f"{v / MB:.1f} MB" for k, v in memory.items()})
        assert max(memory.values()) - memory["before"] < 150 * MB
    finally:
        for node in nodes:
            node.stop()
