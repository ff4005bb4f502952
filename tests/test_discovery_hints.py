"""The directory's ``changed`` hints: who is owed one, how often, how much it may hold, and that an
agent that gets one syncs at once instead of at its next poll (polls are set to a minute here, so
only a hint can make a watch see a new peer within the tests' bounds)."""

import time

import msgpack
import pytest
import zmq

from wrapyfi_like.middlewares.ports import free_port
from wrapyfi_like.middlewares.zeromq import curve
from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent, agent as agent_module, directory as directory_module
from wrapyfi_like.middlewares.zeromq.discovery import protocol
from wrapyfi_like.middlewares.zeromq.discovery.hosting import ZmtpHost
from wrapyfi_like.middlewares.zeromq.discovery.directory import ENTRY_TTL, HINT_INTERVAL, Peer
from wrapyfi_like.middlewares.zeromq.discovery.protocol import Changed, decode_reply
from wrapyfi_like.middlewares.zeromq.settings import ZeroMQSettings
from wrapyfi_like.security import keypair
from directory_state import agent_with_fake_directory, next_sync, serve_until, sync


pytestmark = pytest.mark.timeout(60)

KEY = "\0listener /hints"
OTHER = "\0listener /other"
WATCHER = Peer(protocol.agent_routing_id(b"watcher"))
OLD_WATCHER = Peer(b"N" + b"old-agent-id-15")  # what agents before protocol version 2 used
ANNOUNCER = Peer(protocol.agent_routing_id(b"announcer"))
POLL = 60.0
"""The agents' sync intervals in the live tests: far beyond every wait below."""


def announce(directory, port, key=KEY, seq=1):
    return sync(directory, ANNOUNCER, "announcer", [(key, f"tcp://127.0.0.1:{port}", {})], seq=seq)


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# -- the directory's state --------------------------------------------------------------------


def test_a_watcher_is_owed_a_hint_when_a_watched_key_changes_and_an_old_agent_never_is(warm):
    sync(warm, WATCHER, "watcher", watched=[KEY])
    sync(warm, OLD_WATCHER, "old", watched=[KEY])
    sync(warm, Peer(protocol.agent_routing_id(b"elsewhere")), "elsewhere", watched=[OTHER])
    assert warm.due_hints() == [] and warm.next_hint() is None
    announce(warm, 4000)
    assert warm.due_hints() == [WATCHER]
    assert warm.statistics()["hints"] == 1
    assert protocol.agent_version(OLD_WATCHER.routing_id) == 1 and protocol.agent_version(WATCHER.routing_id) == 2


def test_only_changes_of_what_a_watcher_is_told_owe_it_a_hint(warm):
    sync(warm, WATCHER, "watcher", [(KEY, "tcp://127.0.0.1:1", {})], watched=[KEY])
    assert warm.due_hints() == [], "its own change: its reply already says it"
    announce(warm, 4000)
    warm.due_hints()
    sync(warm, ANNOUNCER, "announcer", [(KEY, "tcp://127.0.0.1:4000", {"class_name": "new info"})], seq=2)
    sync(warm, ANNOUNCER, "announcer", [(KEY, "tcp://127.0.0.1:4000", {}), (KEY, "", {})], seq=3)
    assert warm.due_hints() == [], "info and endpoint-less entries are not what a watcher is told"


def test_a_bye_and_an_expiry_owe_the_watchers_a_hint(warm, clock):
    sync(warm, WATCHER, "watcher", watched=[KEY])
    announce(warm, 4000)
    warm.due_hints()
    warm.handle(ANNOUNCER, protocol.bye("announcer", ""))
    clock.now += HINT_INTERVAL
    assert warm.due_hints() == [WATCHER]
    announce(warm, 4001)
    clock.now += HINT_INTERVAL
    warm.due_hints()
    clock.now += ENTRY_TTL / 2
    sync(warm, WATCHER, "watcher", watched=[KEY], seq=2)  # the watcher stays alive, the announcer not
    clock.now += ENTRY_TTL / 2 + 0.1
    assert warm.expire() == 1
    assert warm.due_hints() == [WATCHER]


def test_a_burst_of_changes_costs_a_watcher_one_hint_per_interval_and_the_last_change_is_told(warm, clock):
    sync(warm, WATCHER, "watcher", watched=[KEY])
    announce(warm, 4000)
    assert warm.due_hints() == [WATCHER], "the first change is told at once"
    for seq in range(2, 50):
        announce(warm, 4000 + seq, seq=seq)
        assert warm.due_hints() == []
    assert warm.next_hint() == pytest.approx(clock.now + HINT_INTERVAL)
    clock.now += HINT_INTERVAL
    assert warm.due_hints() == [WATCHER], "the changes during the interval are told by one hint at its end"
    assert warm.next_hint() is None
    assert warm.statistics()["hints"] == 2


def test_a_watcher_that_never_reads_holds_one_owed_flag_whatever_changes(warm, clock):
    watchers = [Peer(protocol.agent_routing_id(b"w%d" % n)) for n in range(20)]
    for n, peer in enumerate(watchers):
        sync(warm, peer, f"watcher-{n}", watched=[KEY, OTHER])
    for seq in range(1, 2000):
        announce(warm, 4000 + seq % 7, key=(KEY, OTHER)[seq % 2], seq=seq)
        assert len(warm._owed) <= len(watchers)
        if seq % 100 == 0:
            clock.now += HINT_INTERVAL
            assert len(warm.due_hints()) == len(watchers)
    assert warm.statistics()["hints"] <= len(watchers) * 20


def test_a_watcher_that_syncs_is_owed_nothing_more(warm, clock):
    sync(warm, WATCHER, "watcher", watched=[KEY])
    announce(warm, 4000)
    warm.due_hints()
    announce(warm, 4001, seq=2)
    sync(warm, WATCHER, "watcher", watched=[KEY], seq=2)
    clock.now += HINT_INTERVAL
    assert warm.due_hints() == [] and warm.next_hint() is None
    sync(warm, WATCHER, "watcher", watched=[OTHER], seq=3)
    announce(warm, 4002, seq=3)
    assert warm.due_hints() == [], "it no longer watches the key"


# -- the agent --------------------------------------------------------------------------------


@pytest.fixture
def fake_directory(monkeypatch):
    """A ROUTER the test drives, bound first so the agent under test cannot host."""
    monkeypatch.setattr(agent_module, "SYNC_INTERVAL", POLL)
    monkeypatch.setattr(agent_module, "FAST_SYNC_INTERVAL", POLL)
    with agent_with_fake_directory() as pair:
        yield pair


def test_an_agent_syncs_at_once_on_a_hint_and_ignores_bad_ones(fake_directory):
    router, agent = fake_directory
    watch = agent.watch(KEY)
    routing_id, request = next_sync(router)
    while KEY not in request.watched:  # a sync sent before the watch existed: the watch asks for its own
        router.send_multipart([routing_id, protocol.synced(request.seq, {}, False)])
        routing_id, request = next_sync(router)
    assert protocol.agent_version(routing_id) == protocol.VERSION
    router.send_multipart([routing_id, protocol.synced(request.seq, {KEY: []}, False)])
    bad = [msgpack.packb(["changed", KEY]), msgpack.packb(["changed", None]), msgpack.packb(["changes"]),
           msgpack.packb(["hint"])]
    for junk in bad:
        router.send_multipart([routing_id, junk])
    router.send_multipart([routing_id, protocol.CHANGED])
    routing_id, request = next_sync(router)  # a minute before its poll: the hint asked for it
    assert agent.counters["hints"] == 1 and agent.counters["malformed_replies"] == len(bad)
    router.send_multipart([routing_id, protocol.synced(request.seq, {KEY: ["tcp://127.0.0.1:4000"]}, False)])
    wait_until(lambda: watch.endpoints == {"tcp://127.0.0.1:4000"})
    assert decode_reply(protocol.CHANGED) == Changed()


def three_agents(monkeypatch, address):
    """A host, then a watcher and an announcer that sync with it, all polling once a minute (and
    entries living longer than that)."""
    monkeypatch.setattr(agent_module, "SYNC_INTERVAL", POLL)
    monkeypatch.setattr(agent_module, "FAST_SYNC_INTERVAL", POLL)
    monkeypatch.setattr(directory_module, "ENTRY_TTL", 2 * POLL)
    settings = ZeroMQSettings("127.0.0.1", address, "/tmp", 0, "/0")
    host = NodeAgent(zmq.Context.instance(), settings)
    wait_until(lambda: host.directory is not None)
    return host, NodeAgent(zmq.Context.instance(), settings), NodeAgent(zmq.Context.instance(), settings)


@pytest.mark.parametrize("with_curve", [False, True], ids=["zmtp-host", "curve-host"])
def test_a_watch_sees_a_new_peer_through_a_hint_long_before_its_poll(monkeypatch, with_curve):
    if with_curve:
        _public, secret = keypair()
        monkeypatch.setenv(curve.SECRET_KEY_VARIABLE, secret)
    host, watcher, announcer = three_agents(monkeypatch, f"tcp://127.0.0.1:{free_port()}")
    try:
        assert (host._server_keys is not None) == with_curve  # CURVE: the host serves on a CurveHost
        watch = watcher.watch(KEY)
        wait_until(lambda: KEY in host.directory._watchers)  # its first sync is done: the next must be hinted
        announcer.announce(KEY, "tcp://127.0.0.1:4000", {})
        wait_until(lambda: watch.endpoints == {"tcp://127.0.0.1:4000"})
        assert watcher.counters["hints"] >= 1 and host.directory.statistics()["hints"] >= 1
        assert announcer.counters["hints"] == 0, "nobody it watches changed"
    finally:
        for agent in (announcer, watcher, host):
            agent.stop()
        if with_curve:
            curve.stop_authenticators()


def test_a_hint_to_a_connection_that_is_gone_is_counted_and_dropped_and_an_old_agent_gets_none(warm):
    address = f"tcp://127.0.0.1:{free_port()}"
    host = ZmtpHost(address, warm)
    dealers = {}
    try:
        for name in ("gone", "watcher", "announcer", "old"):
            dealer = dealers[name] = zmq.Context.instance().socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.setsockopt(zmq.ROUTING_ID, OLD_WATCHER.routing_id if name == "old"
                              else protocol.agent_routing_id(name.encode()))
            dealer.connect(address)
        for name in ("gone", "watcher", "old"):
            dealers[name].send(protocol.sync(0, name, [], [KEY], ""))
            serve_until(host, lambda: dealers[name].poll(0))
        dealers.pop("gone").close()
        wait_until(lambda: host._router.outlet(protocol.agent_routing_id(b"gone")) is None)
        dealers["announcer"].send(protocol.sync(0, "announcer", [[KEY, "tcp://127.0.0.1:4000", {}]], [], ""))
        serve_until(host, lambda: dealers["announcer"].poll(0))
        host.send_hints()
        assert warm.statistics()["hints"] == 2 and warm.statistics()["hints_unsent"] == 1
        dealers["watcher"].recv()  # its synced reply
        assert dealers["watcher"].poll(5000) and decode_reply(dealers["watcher"].recv()) == Changed()
        dealers["old"].recv()  # its synced reply, and nothing after it: it was sent no hint
        assert not dealers["old"].poll(0)
    finally:
        for dealer in dealers.values():
            dealer.close()
        host.close()


def test_a_flapping_peer_hints_each_watcher_at_most_once_per_interval(warm, clock):
    """A peer whose endpoint changes on every sync (hostile, or restarting in a loop) makes each
    watcher sync a few times a second at most, not once per change."""
    sync(warm, WATCHER, "watcher", watched=[KEY])
    hints = 0
    for seq in range(1, 501):  # 500 changes over one second of the directory's clock
        announce(warm, 4000 + seq % 2, seq=seq)
        hints += len(warm.due_hints())
        clock.now += 0.002
    assert hints <= 1 / HINT_INTERVAL + 1 <= 5, hints


def test_watches_beyond_the_index_limit_are_not_indexed_and_counted(warm, clock, monkeypatch):
    """The hint index is bounded in all: a node whose watches do not fit gets no hints (it learns
    at its polls), is counted in ``unhinted``, and is indexed once there is room."""
    monkeypatch.setattr(directory_module, "MAX_WATCHES", 3)
    sync(warm, WATCHER, "watcher", watched=[KEY, OTHER])
    late = Peer(protocol.agent_routing_id(b"late"))
    sync(warm, late, "late", watched=[KEY, OTHER])
    assert warm._watches == 2 and warm.statistics()["unhinted"] == 1
    announce(warm, 4000)
    assert warm.due_hints() == [WATCHER], "the node that did not fit is not hinted"
    sync(warm, WATCHER, "watcher", watched=[KEY], seq=2)  # room for the late node's two now
    sync(warm, late, "late", watched=[KEY, OTHER], seq=2)
    assert warm._watches == 3
    announce(warm, 4001, seq=2)
    clock.now += HINT_INTERVAL
    assert set(warm.due_hints()) == {WATCHER, late}


def test_big_watchers_of_one_host_leave_index_room_for_its_small_ones(warm, monkeypatch):
    """The last eighth of an address's share of the hint index is for nodes watching at most
    SMALL_NODE keys: watchers of 256 keys from two loopback addresses (one host) do not make a
    small watcher on 127.0.0.1 unhinted."""
    monkeypatch.setattr(directory_module, "MAX_WATCHES", 2048)
    many = [f"\0listener /many/{n}" for n in range(protocol.MAX_WATCHED)]
    for n in range(8):
        sync(warm, Peer(protocol.agent_routing_id(b"big%d" % n), None, f"127.0.0.{2 + n % 2}"), f"big{n}", watched=many)
    assert warm.statistics()["unhinted"] == 5  # 3 of 256 fit in 2048 * (1/2 - 1/16)
    small = Peer(protocol.agent_routing_id(b"small"), None, "127.0.0.1")
    sync(warm, small, "small", watched=[KEY])
    assert warm.statistics()["unhinted"] == 5
    announce(warm, 4000)
    assert small in warm.due_hints()
