"""The agent survives any reply and any error of its own; a watch never forgets a peer during warm-up."""

import select
import socket
import threading
import time

import msgpack
import pytest
import zmq

from wrapyfi_like.middlewares.ports import free_port
from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent, Watch, agent as agent_module, protocol
from wrapyfi_like.middlewares.zeromq.settings import ZeroMQSettings
from directory_state import agent_with_fake_directory, next_sync

pytestmark = pytest.mark.timeout(60)

KEY = "\0listener /agent-test"


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.fixture
def fake_directory():
    """A ROUTER the test drives, bound first so the agent under test cannot host."""
    with agent_with_fake_directory() as pair:
        yield pair


def test_the_agent_survives_every_malformed_reply_and_then_takes_a_good_one(fake_directory):
    router, agent = fake_directory
    watch = agent.watch(KEY)
    hostile = [b"", b"\xc1", msgpack.packb(["synced"]), msgpack.packb(["synced", "1", {}, False]),
               msgpack.packb(["synced", 0, {KEY: ["tcp://127.0.0.1:0"]}, False]),
               msgpack.packb(["synced", 0, {KEY: "tcp://x:1"}, False]), msgpack.packb(["synced", 0, [], False]),
               msgpack.packb(["listing", 0, []]), msgpack.packb({"a": 1}), b"\xdd\xff\xff\xff\xff",
               b"\x92" + b"\x91" * 50000]
    routing_id, request = next_sync(router)
    for junk in hostile:
        router.send_multipart([routing_id, junk])
    router.send_multipart([routing_id, b"two", b"frames"])
    router.send_multipart([routing_id, protocol.synced(request.seq, {KEY: ["tcp://127.0.0.1:4000"]}, False)])
    wait_until(lambda: watch.endpoints == {"tcp://127.0.0.1:4000"})
    assert agent.counters["malformed_replies"] == len(hostile) + 1
    assert agent._thread.is_alive() and agent.counters["restarts"] == 0


def test_a_reply_over_the_size_limit_never_reaches_the_agent(fake_directory):
    router, agent = fake_directory
    routing_id, request = next_sync(router)
    router.send_multipart([routing_id, b"\x90" * (protocol.MAX_SYNCED_BYTES + 1)])  # libzmq drops the connection
    routing_id, request = next_sync(router)  # the agent reconnects and syncs again
    assert agent._thread.is_alive()


def test_an_error_inside_the_agent_restarts_its_loop_and_get_never_returns_a_dead_agent(fake_directory, monkeypatch):
    router, agent = fake_directory
    watch = agent.watch(KEY)
    real_apply = agent._apply
    failures = []

    def failing_once(reply):
        if not failures:
            failures.append(reply)
            raise RuntimeError("a bug")
        real_apply(reply)

    monkeypatch.setattr(agent, "_apply", failing_once)
    routing_id, request = next_sync(router)
    router.send_multipart([routing_id, protocol.synced(request.seq, {KEY: ["tcp://127.0.0.1:4001"]}, False)])
    wait_until(lambda: agent.counters["restarts"] == 1)
    routing_id, request = next_sync(router)
    router.send_multipart([routing_id, protocol.synced(request.seq, {KEY: ["tcp://127.0.0.1:4001"]}, False)])
    wait_until(lambda: watch.endpoints == {"tcp://127.0.0.1:4001"})

    process_agent = NodeAgent.get()
    thread = process_agent._thread
    monkeypatch.setattr(process_agent, "_stopping", True)  # make its thread end, as if it had died
    process_agent._wakeup.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    monkeypatch.setattr(process_agent, "_stopping", False)
    assert NodeAgent.get() is process_agent and process_agent._thread.is_alive()


def test_a_warming_directory_only_adds_endpoints():
    watch = Watch(KEY)
    watch.update(frozenset({"tcp://127.0.0.1:1", "tcp://127.0.0.1:2"}))
    watch.consume()
    watch.update(frozenset({"tcp://127.0.0.1:3"}), warming=True)
    assert watch.endpoints == {"tcp://127.0.0.1:1", "tcp://127.0.0.1:2", "tcp://127.0.0.1:3"}
    watch.update(frozenset(), warming=True)
    assert len(watch.endpoints) == 3
    watch.update(frozenset({"tcp://127.0.0.1:3"}))
    assert watch.endpoints == {"tcp://127.0.0.1:3"}
    watch.close()


def test_a_watch_notice_never_outlives_the_change_it_announced():
    """The agent's thread updates a watch while a publisher's consumes it; the publisher consumes
    only when the endpoints it reads changed. When an update's notice came after a consume that had
    already returned the new endpoints, the notice stayed readable with nothing new: a publisher
    waiting for a listener woke at once, again and again, and never raised ``WaitTimeout`` (a
    ``test_dead_peers`` run under load hung so)."""
    watch = Watch(KEY)
    assigned, consumed = threading.Event(), threading.Event()
    notify = watch._changed.set

    def late_notice():  # the agent's thread loses the CPU between the two steps of an update
        assigned.set()
        consumed.wait(0.5)
        notify()

    watch._changed.set = late_notice
    updater = threading.Thread(target=watch.update, args=(frozenset({"tcp://127.0.0.1:1"}),))
    updater.start()
    assert assigned.wait(10)
    got = []
    consumer = threading.Thread(target=lambda: (got.append(watch.consume()), consumed.set()))
    consumer.start()
    updater.join(10)
    consumer.join(10)
    assert got == [frozenset({"tcp://127.0.0.1:1"})]
    assert not select.select([watch.fileno()], [], [], 0)[0], "a notice is readable with nothing new"
    watch.close()


def test_an_agent_the_directory_keeps_refusing_syncs_less_and_less_often(fake_directory):
    router, agent = fake_directory
    agent.watch(KEY)  # a watch without peers: the agent would sync twenty times a second
    arrivals = []
    for _ in range(4):
        routing_id, request = next_sync(router)
        arrivals.append(time.monotonic())
        router.send_multipart([routing_id, protocol.refused(request.seq, "the directory would hold more than 1 nodes")])
    assert arrivals[3] - arrivals[2] >= 0.9, "each refusal in a row doubles the pause before the next sync"
    assert agent.counters["refused"] >= 3


@pytest.fixture
def short_reply_timeouts(monkeypatch):
    """REPLY_TIMEOUT 0.2 s and STALL_TIMEOUT 1.5 s, set before the agent of a fixture after it starts."""
    monkeypatch.setattr(agent_module, "REPLY_TIMEOUT", 0.2)
    monkeypatch.setattr(agent_module, "STALL_TIMEOUT", 1.5)


def test_a_sync_waits_its_turn_at_a_directory_that_is_behind_and_reconnects_only_when_stalled(
        short_reply_timeouts, fake_directory):
    """The directory's address is held (the agent cannot take over): the directory is alive and
    behind, so the sync keeps its place in line past REPLY_TIMEOUT; the agent opens a new connection
    only after STALL_TIMEOUT. Reconnecting at REPLY_TIMEOUT threw syncs in line away in a burst."""
    router, agent = fake_directory
    routing_id, first = next_sync(router)
    assert not router.poll(1000), "the agent sent its sync again while the first was in line"
    assert agent.counters["slow_replies"] == 1 and agent.counters["reconnects"] == 0
    router.send_multipart([routing_id, protocol.synced(first.seq, {}, False)])  # a late answer
    routing_id, second = next_sync(router)  # its next poll, which is checked again
    sent = time.monotonic()
    wait_until(lambda: agent.counters["slow_replies"] == 2)
    assert agent.counters["reconnects"] == 0
    again_routing_id, again = next_sync(router)
    assert time.monotonic() - sent >= 1.5 * 0.9
    assert again_routing_id == routing_id and again.seq > second.seq and again.node == first.node
    assert agent.counters["reconnects"] >= 1


def test_a_sync_lost_with_its_connection_takes_the_directory_over_at_once(fake_directory, monkeypatch):
    """The directory's host exits: the connection drops, and the agent takes the address over and
    syncs with its own directory without waiting for a reply timeout (set to a minute here)."""
    monkeypatch.setattr(agent_module, "STALL_TIMEOUT", 60.0)
    router, agent = fake_directory
    agent.announce(KEY, "tcp://127.0.0.1:4000", {})
    next_sync(router)  # in flight, never answered: it goes with the connection
    monkeypatch.setattr(agent_module, "REPLY_TIMEOUT", 60.0)
    router.close(linger=0)
    wait_until(lambda: agent.directory is not None and agent.directory.endpoints(KEY) == ["tcp://127.0.0.1:4000"])
    assert agent.counters["dropped"] >= 1 and agent.counters["slow_replies"] == 0


def test_an_agent_that_takes_over_a_silent_directorys_address_lists_itself_there_at_once(monkeypatch):
    """The directory's host is gone without closing the agent's connection (here a plain TCP
    listener that accepted it, then let the address go and never answers): the agent takes the
    address over at REPLY_TIMEOUT and syncs with its own directory right away, not after
    STALL_TIMEOUT on a connection nobody reads."""
    monkeypatch.setattr(agent_module, "REPLY_TIMEOUT", 0.3)
    monkeypatch.setattr(agent_module, "STALL_TIMEOUT", 60.0)
    port = free_port()
    listener = socket.create_server(("127.0.0.1", port))
    agent = NodeAgent(zmq.Context.instance(), ZeroMQSettings("127.0.0.1", f"tcp://127.0.0.1:{port}", "/tmp", 0, "/0"))
    try:
        agent.announce(KEY, "tcp://127.0.0.1:4000", {})
        listener.settimeout(10)
        connection, _ = listener.accept()
        listener.close()
        wait_until(lambda: agent.directory is not None and agent.directory.endpoints(KEY) == ["tcp://127.0.0.1:4000"],
                   timeout=5.0)
        assert agent.counters["slow_replies"] == 1 and agent.counters["reconnects"] == 1
        connection.close()
    finally:
        agent.stop()
        listener.close()
