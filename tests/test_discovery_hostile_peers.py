"""The discovery directory under a hostile node on the same machine, with real sockets and the
attacker in a process of its own (attack report B4, B5).

Run as a script, this file plays the attacker (the test starts it as a process and waits for its
JSON events): ``fill ADDRESS REALM SOURCE...`` announces as many nodes of 256 entries as it can
from each loopback source address (libzmq's ``tcp://SOURCE:0;HOST:PORT``); ``flood ADDRESS REALM
CONNECTIONS`` has 31 nodes announce the same 256 keys, then sends 256-key watch syncs back to back
on ``CONNECTIONS`` connections that never read a reply.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import pytest
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from node_processes import Node, event_is  # noqa: E402
from wrapyfi_like.middlewares.ports import free_port  # noqa: E402
from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent, protocol  # noqa: E402
from wrapyfi_like.middlewares.zeromq.discovery.directory import ADDRESS_SHARE  # noqa: E402
from wrapyfi_like.middlewares.zeromq.settings import ZeroMQSettings  # noqa: E402

pytestmark = pytest.mark.timeout(60)

REALM = "/0"
HOT_KEYS = [f"\0listener /hot/{n}" for n in range(protocol.MAX_WATCHED)]
MEETING_TIME = 3.0
"""Seconds within which two honest agents meet through a directory under the flood (documented in
docs/reliability.md; about 0.1 s without it)."""


class Attacker(Node):
    script = Path(__file__).resolve()


@pytest.fixture
def hosting():
    """An agent that hosts the directory (it binds first), and the directory's address."""
    address = f"tcp://127.0.0.1:{free_port()}"
    agent = NodeAgent(zmq.Context.instance(), ZeroMQSettings("127.0.0.1", address, "/tmp", 0, REALM))
    agent.watch("\0listener /nobody")  # starts its thread
    _wait(lambda: agent.directory is not None, 10)
    yield agent, address
    agent.stop()


def _wait(condition, timeout: float, fileno=None) -> None:
    """Until ``condition()`` holds (checked when ``fileno`` is readable, else every 10 ms);
    TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        zmq.select([fileno] if fileno is not None else [], [], [], min(left, 0.01 if fileno is None else 0.1))


def _other_local_address() -> str | None:
    """A non-loopback IPv4 address of this machine (another host, for the directory), if it has one."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the route's source
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


def test_one_host_fills_at_most_its_share_from_two_loopback_addresses(hosting):
    agent, address = hosting
    attacker = Attacker("fill", address, REALM, "127.0.0.2", "127.0.0.3")
    try:
        report = attacker.wait_for(event_is("filled"), timeout=30)
    finally:
        attacker.stop()
    entries = agent.directory.statistics()["entries"]
    assert report["refused"] > 0
    assert entries <= protocol.MAX_ENTRIES * ADDRESS_SHARE, report
    # a small node of the same host still gets in (the share's small-node reserve), and so does a
    # node of another host if this machine has another address (its own share)
    for source in ["127.0.0.1"] + [address for address in [_other_local_address()] if address]:
        assert isinstance(_honest_sync(source, address), protocol.Synced), source


def _honest_sync(source: str, address: str):
    dealer = _dealer(zmq.Context.instance(), source, address)
    try:
        dealer.send(protocol.sync(1, f"honest-{source}", [["\0listener /honest", "tcp://127.0.0.1:5", {}]], [], REALM))
        assert dealer.poll(5000), f"the directory did not answer a node at {source}"
        return protocol.decode_reply(dealer.recv())
    finally:
        dealer.close()


def test_connections_that_never_read_heavy_syncs_do_not_keep_an_honest_pair_apart(hosting):
    agent, address = hosting
    attacker = Attacker("flood", address, REALM, "8")
    try:
        attacker.wait_for(event_is("flooding"), timeout=30)
        attacker.wait_for(event_is("flooding"), timeout=30)  # a second of flood has passed
        settings = ZeroMQSettings("127.0.0.1", address, "/tmp", 0, REALM)
        publisher = NodeAgent(zmq.Context.instance(), settings)
        listener = NodeAgent(zmq.Context.instance(), settings)
        try:
            started = time.monotonic()
            watch = listener.watch("\0listener /honest")
            publisher.announce("\0listener /honest", "tcp://127.0.0.1:7", {})
            _wait(lambda: watch.consume() == {"tcp://127.0.0.1:7"}, MEETING_TIME, watch.fileno())
            met = time.monotonic() - started
        except TimeoutError:
            pytest.fail(f"the honest pair did not meet within {MEETING_TIME} s under the flood; "
                        f"directory {agent.directory.statistics()}")
        finally:
            publisher.stop()
            listener.stop()
        report = attacker.wait_for(event_is("flooding"), timeout=30)
        assert report["sent"] > 100  # the flood was on all along
        assert met < MEETING_TIME
    finally:
        attacker.stop()


# -- the attacker -----------------------------------------------------------------------------------

def _report(event: str, **fields) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def _dealer(context: zmq.Context, source: str, address: str, reads: bool = True) -> zmq.Socket:
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.setsockopt(zmq.ROUTING_ID, protocol.agent_routing_id(os.urandom(14)))
    if not reads:  # libzmq reads replies into its queue by itself: keep that to one, and TCP's small
        dealer.setsockopt(zmq.RCVHWM, 1)
        dealer.setsockopt(zmq.RCVBUF, 65536)
    dealer.connect(f"tcp://{source}:0;{address[len('tcp://'):]}")
    return dealer


def _fill(address: str, realm: str, sources: list[str]) -> None:
    context = zmq.Context()
    nodes = []
    for source in sources:
        for n in range(protocol.MAX_ENTRIES // protocol.MAX_ANNOUNCEMENTS):  # enough for the whole directory
            announcements = [[f"\0listener /fill/{source}/{n}/{k}", f"tcp://{source}:{1000 + k}", {}]
                             for k in range(protocol.MAX_ANNOUNCEMENTS)]
            dealer = _dealer(context, source, address)
            dealer.send(protocol.sync(1, f"fill-{source}-{n}", announcements, [], realm))
            nodes.append(dealer)
    taken = refused = 0
    for dealer in nodes:
        if dealer.poll(20000):
            reply = protocol.decode_reply(dealer.recv())
            taken += isinstance(reply, protocol.Synced)
            refused += isinstance(reply, protocol.Refused)
    _report("filled", taken=taken, refused=refused)
    zmq.select([], [], [], 30)  # stay, so the entries stay, until the test stops us


def _flood(address: str, realm: str, connections: int) -> None:
    context = zmq.Context()
    announcers = []
    for n in range(31):
        announcements = [[key, f"tcp://127.0.0.2:{2000 + n * len(HOT_KEYS) + k}", {}] for k, key in enumerate(HOT_KEYS)]
        announcers.append((_dealer(context, "127.0.0.2", address), f"hot-{n}", announcements))
    watchers = [_dealer(context, "127.0.0.3", address, reads=False) for _ in range(connections)]
    sent = seq = 0
    started = announced = reported = time.monotonic()
    for dealer, node, announcements in announcers:
        dealer.send(protocol.sync(0, node, announcements, [], realm))
    while True:
        now = time.monotonic()
        if now - announced > 1.0:
            for dealer, node, announcements in announcers:
                while dealer.poll(0):
                    dealer.recv()
                seq += 1
                dealer.send(protocol.sync(seq, node, announcements, [], realm))
            announced = now
        if now - started > 0.5:  # the announcers are in
            for n, dealer in enumerate(watchers):
                seq += 1
                try:
                    dealer.send(protocol.sync(seq, f"watch-{n}", [], HOT_KEYS, realm), zmq.NOBLOCK)
                    sent += 1
                except zmq.Again:
                    pass
            if now - reported > 1.0:
                _report("flooding", sent=sent)
                reported = now
        zmq.select([], [], [], 0.002)


if __name__ == "__main__":
    role, directory, realm, *rest = sys.argv[1:]
    if role == "fill":
        _fill(directory, realm, rest)
    else:
        _flood(directory, realm, int(rest[0]))
