"""Across hosts: a publisher and a listener in two network namespaces joined by a veth pair.

Each namespace is a host with its own address (10.231.0.1 and 10.231.0.2); the discovery
directory lives on the publisher's host, so a cut link also cuts the listener off from discovery.
The tests show delivery, that nothing crosses while the link is down, that after a short cut
every message the publisher reported as sent arrives once and in order, and that after a long
one messages flow again. The cut itself is the one fixed wait: it is the fault, not a guess at
how long something takes.

Needs root (CAP_NET_ADMIN) and iproute2; ``make test`` installs iproute2 where it can.
"""

import json
import os
import shutil
import subprocess
import time
import uuid

import pytest

from node_processes import Node, event_is

pytestmark = pytest.mark.timeout(60)

PUBLISHER_IP, LISTENER_IP = "10.231.0.1", "10.231.0.2"
RATE = 50  # messages per second
QUEUE_DEPTH = 20
SHORT_CUT = 2.0  # under the ZMTP heartbeat timeout (3 s) and discovery's entry lifetime (4 s)
LONG_CUT = 6.0  # over both: the connection is dropped and the listener leaves discovery


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


@pytest.fixture
def hosts():
    """Two namespaces ``a`` (publisher) and ``b`` (listener) joined by veth ``a_link``/``b_link``."""
    if shutil.which("ip") is None:
        pytest.skip("iproute2's `ip` is not installed (make test installs it when run as root)")
    if os.geteuid() != 0:
        pytest.skip("creating network namespaces needs root")
    name = f"wl{uuid.uuid4().hex[:8]}"
    a, b = f"{name}a", f"{name}b"
    created = []
    try:
        for ns in (a, b):
            _ip("netns", "add", ns)
            created.append(ns)
    except subprocess.CalledProcessError as error:
        for ns in created:
            _ip("netns", "del", ns)
        pytest.skip(f"cannot create network namespaces here: {error.stderr.strip()}")
    try:
        _ip("link", "add", a, "type", "veth", "peer", "name", b)
        for ns, ip in ((a, PUBLISHER_IP), (b, LISTENER_IP)):
            _ip("link", "set", ns, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", ns)
            _ip("-n", ns, "link", "set", ns, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield a, b
    finally:
        for ns in created:  # deleting a namespace deletes its end of the veth pair, and so the pair
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def _node(role: str, topic: str, ns: str, own_ip: str, *args: str) -> Node:
    return Node(role, topic, *args, netns=ns, env={
        "WRAPYFI_ZEROMQ_DISCOVERY": f"tcp://{PUBLISHER_IP}:5659",
        "WRAPYFI_ZEROMQ_SOCKET_IP": own_ip,
    })


def _run_with_cut(hosts, topic: str, count: int, cut_seconds: float):
    """Publish ``count`` numbered messages from host a to host b at ``RATE``, cut the link for
    ``cut_seconds`` once the listener has some, and return what each side reported."""
    a, b = hosts
    listener = _node("listen", topic, b, LISTENER_IP)
    publisher = _node("publish", topic, a, PUBLISHER_IP, "--count", str(count), "--rate", str(RATE),
                      "--kwargs", json.dumps({"queue_depth": QUEUE_DEPTH}))
    try:
        listener.wait_for(event_is("got", seq=RATE // 2), timeout=30)  # delivery across the link

        _ip("-n", a, "link", "set", a, "down")
        down = time.time()
        time.sleep(cut_seconds)  # the fault lasts this long; everything else waits on events
        up = time.time()
        _ip("-n", a, "link", "set", a, "up")

        listener.wait_for(event_is("got", seq=count - 1), timeout=30)  # flowing again
        publisher.wait_for(event_is("done"), timeout=20)
        assert publisher.process.wait(timeout=10) == 0, "".join(publisher.stderr)
    finally:
        publisher.stop()
        listener.stop()
    sent = {event["seq"]: event["t"] for event in publisher.seen if event["event"] == "sent"}
    got = [(event["seq"], event["t"]) for event in listener.seen if event["event"] == "got"]
    assert sorted(sent) == list(range(count))  # the publisher neither crashed nor gave up
    for seq, t in got:
        if down < t < up:  # on its way before the cut: nothing sent after the cut crossed it
            assert seq == 0 or sent[seq - 1] < down, (seq, sent[seq - 1] - down)
    print(f"cut {cut_seconds} s: publish returned {sum(down < t < up for t in sent.values())} times "
          f"during the cut, the listener got {sum(down < t < up for _, t in got)} messages during it")
    return sent, [seq for seq, _ in got], down, up


def test_a_short_link_cut_delays_messages_and_loses_none(hosts, topic):
    sent, got, _, _ = _run_with_cut(hosts, topic, count=4 * RATE, cut_seconds=SHORT_CUT)
    assert got == sorted(sent)  # every message reported as sent, once, in order


def test_after_a_long_link_cut_messages_flow_again(hosts, topic):
    """What holds today: recovery, nothing twice, nothing across a cut link. What does not (see
    docs/reliability.md, Across hosts): the messages queued when the heartbeat gave the connection
    up are not all delivered, and the ones the kernel still retransmits arrive after newer ones."""
    count = 8 * RATE
    sent, got, _, up = _run_with_cut(hosts, topic, count=count, cut_seconds=LONG_CUT)
    assert len(got) == len(set(got))  # none twice
    after_cut = [seq for seq in got if sent[seq] > up]
    assert after_cut == list(range(after_cut[0], count))  # sent after the link was back: all, in order
    missing = sorted(set(sent) - set(got))
    late = sum(1 for earlier, later in zip(got, got[1:]) if later < earlier)
    print(f"long cut: {len(missing)} messages lost, {late} times an older message came after a newer one")
