"""The directory's state, fed requests directly: ownership, limits, timed expiry and warm-up."""

import msgpack

from wrapyfi_like.middlewares.zeromq.discovery import protocol
from wrapyfi_like.middlewares.zeromq.discovery.directory import (ADDRESS_SHARE, ENTRY_TTL, GRACE_ROUNDS, MAX_GRACE,
                                                                SMALL_NODE, SMALL_RESERVE, Directory, Peer,
                                                                address_group)
from wrapyfi_like.middlewares.zeromq.discovery.protocol import Listing, Refused, Synced, decode_listing, decode_reply
from directory_state import sync


KEY = "\0listener /cam"
HONEST = Peer(b"Nhonest")
ATTACKER = Peer(b"Nattacker")


def endpoint(port):
    return f"tcp://127.0.0.1:{port}"


def listing(directory):
    reply = decode_listing(directory.handle(Peer(b"Ntool"), protocol.list_request(9, "")))
    assert isinstance(reply, Listing)
    return reply.rows


def test_a_node_id_belongs_to_the_connection_that_announced_it(warm):
    assert isinstance(sync(warm, HONEST, "victim", [(KEY, endpoint(1), {})]), Synced)
    node_id = listing(warm)[0].node  # readable by anyone...
    # ...but useless to another connection: neither a sync nor a bye with it changes anything
    refused = sync(warm, ATTACKER, node_id, [(KEY, endpoint(2), {})], [KEY])
    assert isinstance(refused, Refused) and "another connection" in refused.reason
    assert warm.handle(ATTACKER, protocol.bye(node_id, "")) is None
    assert [row.endpoint for row in listing(warm)] == [endpoint(1)]
    assert warm.statistics()["refused_identity"] == 2
    # with CURVE, the same routing id with another key is another connection too
    assert isinstance(sync(warm, Peer(HONEST.routing_id, "someone else's key"), node_id), Refused)
    # the owner itself renews and leaves
    assert sync(warm, HONEST, "victim", [(KEY, endpoint(1), {})], [KEY]).endpoints == {KEY: {endpoint(1)}}
    warm.handle(HONEST, protocol.bye("victim", ""))
    assert listing(warm) == ()


def test_one_connection_owns_one_node_id(warm):
    sync(warm, ATTACKER, "first")
    assert isinstance(sync(warm, ATTACKER, "second", [(KEY, endpoint(3), {})]), Refused)
    assert warm.statistics()["nodes"] == 1


def test_malformed_requests_change_nothing_and_are_counted(warm):
    sync(warm, HONEST, "honest", [(KEY, endpoint(1), {})])
    for junk in (b"", b"\xc1", msgpack.packb(["sync", 1, "honest", [[KEY, 5, {}]], [], ""]),
                 msgpack.packb(["bye", "honest"]), msgpack.packb(["sync", 1, "honest", "x", [], ""])):
        assert warm.handle(ATTACKER, junk) is None
    assert warm.statistics()["malformed"] == 5
    assert sync(warm, HONEST, "honest", [(KEY, endpoint(1), {})], [KEY]).endpoints == {KEY: {endpoint(1)}}


def test_expiry_runs_on_the_timer_without_watch_or_list(warm, clock):
    for index in range(50):
        sync(warm, Peer(b"N%d" % index), f"node{index}", [(f"\0listener /t{index}", endpoint(1000 + index), {})])
    assert warm.statistics()["entries"] == 50
    clock.now += ENTRY_TTL / 2
    assert warm.expire() == 0
    clock.now += ENTRY_TTL
    assert warm.expire() == 50
    assert warm.statistics() == {"nodes": 0, "entries": 0, "bytes": 0, "malformed": 0, "refused_identity": 0,
                                 "refused_limit": 0, "refused_realm": 0, "expired": 50, "renewed_late": 0,
                                 "hints": 0, "hints_unsent": 0, "unhinted": 0}


def test_a_directory_that_is_behind_keeps_the_nodes_whose_turn_has_not_come(warm, clock):
    """Twenty nodes past their lifetime while the directory served only half of their next syncs
    (a burst: it is behind) are all kept; each sync that comes late renews its node."""
    peers = [Peer(b"N%d" % index) for index in range(20)]
    for index, peer in enumerate(peers):
        sync(warm, peer, f"node{index}", [(KEY, endpoint(index + 1), {})])
    clock.now += ENTRY_TTL + 0.5
    for index, peer in enumerate(peers[:10]):
        sync(warm, peer, f"node{index}", [(KEY, endpoint(index + 1), {})], seq=2)
    assert warm.expire(connections=len(peers)) == 0
    for index, peer in enumerate(peers[10:], 10):
        sync(warm, peer, f"node{index}", [(KEY, endpoint(index + 1), {})], seq=2)
    assert warm.statistics()["renewed_late"] == 20 and warm.statistics()["nodes"] == 20
    assert warm.expire() == 0  # all renewed: nothing to expire, with or without grace


def test_a_silent_node_expires_once_every_connection_had_its_turns(warm, clock):
    """The grace is the directory's own delay, not the node's: a node that sends nothing while
    the directory serves every other connection GRACE_ROUNDS times is dropped."""
    peers = [Peer(b"N%d" % index) for index in range(10)]
    for index, peer in enumerate(peers):
        sync(warm, peer, f"node{index}")
    clock.now += ENTRY_TTL + 0.5
    for seq in range(2, 2 + GRACE_ROUNDS):
        assert warm.expire(connections=len(peers)) == 0, "a round not served yet"
        for index, peer in enumerate(peers[1:], 1):
            sync(warm, peer, f"node{index}", seq=seq)
    assert warm.expire(connections=len(peers)) == 1
    assert warm.statistics()["nodes"] == 9 and warm.statistics()["expired"] == 1


def test_the_grace_of_a_directory_that_serves_nothing_ends_at_max_grace(warm, clock):
    """Many open connections and no requests (idle, stalled or hostile ones) keep a dead node
    listed at most MAX_GRACE past its lifetime."""
    sync(warm, HONEST, "dead")
    clock.now += ENTRY_TTL + MAX_GRACE - 0.1
    assert warm.expire(connections=1000) == 0
    clock.now += 0.2
    assert warm.expire(connections=1000) == 1


def test_node_and_entry_limits_refuse_the_newcomer_and_keep_the_others(warm, monkeypatch):
    monkeypatch.setattr(protocol, "MAX_NODES", 3)
    monkeypatch.setattr(protocol, "MAX_ENTRIES", 5)
    sync(warm, HONEST, "honest", [(KEY, endpoint(1), {})])
    sync(warm, Peer(b"Na"), "a", [("k", endpoint(2), {})] * 4)
    assert isinstance(sync(warm, Peer(b"Nb"), "b", [("k", endpoint(3), {})]), Refused)  # 6 entries
    sync(warm, Peer(b"Nb"), "b")
    assert isinstance(sync(warm, Peer(b"Nc"), "c"), Refused)  # a fourth node
    assert warm.statistics()["refused_limit"] == 2
    assert sync(warm, HONEST, "honest", [(KEY, endpoint(1), {})], [KEY]).endpoints == {KEY: {endpoint(1)}}


def test_the_byte_budget_bounds_what_peers_make_the_directory_hold(warm, monkeypatch):
    monkeypatch.setattr(protocol, "MAX_DIRECTORY_BYTES", 20_000)
    info = {"blob": "x" * 200}
    accepted = 0
    for index in range(200):
        announcements = [(f"\0listener /t{index}/{n}", endpoint(2000 + n), info) for n in range(10)]
        accepted += isinstance(sync(warm, Peer(b"N%d" % index), f"n{index}", announcements), Synced)
    assert 0 < accepted < 200
    assert warm.statistics()["bytes"] <= 20_000


def test_replies_list_at_most_the_endpoint_limit_oldest_nodes_first(warm, clock):
    sync(warm, HONEST, "honest", [(KEY, endpoint(1), {})])
    clock.now += 0.01
    for index in range(protocol.MAX_ENDPOINTS_PER_KEY + 20):
        sync(warm, Peer(b"N%d" % index), f"fake{index}", [(KEY, endpoint(5000 + index), {})])
    listed = sync(warm, Peer(b"Nwatcher"), "watcher", watched=[KEY]).endpoints[KEY]
    assert len(listed) == protocol.MAX_ENDPOINTS_PER_KEY and endpoint(1) in listed


def test_a_publisher_entry_without_endpoint_is_listed_but_never_handed_out(warm):
    sync(warm, HONEST, "honest", [(KEY, "", {})])
    assert sync(warm, Peer(b"Nw"), "w", watched=[KEY]).endpoints == {KEY: frozenset()}
    assert [row.endpoint for row in listing(warm)] == [""]


def test_a_new_directory_is_warming_for_one_entry_lifetime(clock):
    directory = Directory("", clock)
    assert sync(directory, HONEST, "n").warming is True
    clock.now += ENTRY_TTL + 0.01
    assert sync(directory, HONEST, "n").warming is False


def test_another_realm_is_refused(clock):
    directory = Directory("1000/0", clock)
    reply = decode_reply(directory.handle(HONEST, protocol.sync(1, "n", [], [], "1001/0")))
    assert isinstance(reply, Refused) and "realm" in reply.reason
    assert isinstance(decode_listing(directory.handle(HONEST, protocol.list_request(1, "1000/3"))), Refused)
    assert directory.statistics()["nodes"] == 0


def test_one_address_may_use_half_of_each_limit(warm, monkeypatch):
    monkeypatch.setattr(protocol, "MAX_NODES", 8)
    flooder = [Peer(b"F%d" % n, None, "10.0.0.66") for n in range(8)]
    accepted = [isinstance(sync(warm, peer, f"flood{n}"), Synced) for n, peer in enumerate(flooder)]
    assert accepted == [True] * 4 + [False] * 4
    assert "10.0.0.66" in sync(warm, flooder[5], "flood5").reason
    for n in range(4):  # other hosts still get in
        assert isinstance(sync(warm, Peer(b"H%d" % n, None, "10.0.0.%d" % n), f"honest{n}"), Synced)
    assert isinstance(sync(warm, Peer(b"late", None, "10.0.0.9"), "late"), Refused)  # the whole is full
    warm.handle(flooder[0], protocol.bye("flood0", ""))
    # its share has room again, but not the last node: that one is kept for a newcomer (RESERVE)
    assert isinstance(sync(warm, flooder[6], "flood6"), Refused)
    assert isinstance(sync(warm, Peer(b"new", None, "10.0.0.10"), "new"), Synced)
    warm.handle(flooder[1], protocol.bye("flood1", ""))
    warm.handle(Peer(b"new", None, "10.0.0.10"), protocol.bye("new", ""))
    assert isinstance(sync(warm, flooder[6], "flood6"), Synced)


def test_one_address_may_hold_half_of_the_announcements(warm, monkeypatch):
    monkeypatch.setattr(protocol, "MAX_ENTRIES", 40)
    big = [(f"\0listener /t{n}", endpoint(3000 + n), {}) for n in range(15)]
    assert isinstance(sync(warm, Peer(b"A", None, "10.0.0.1"), "a", big), Synced)
    assert isinstance(sync(warm, Peer(b"B", None, "10.0.0.1"), "b", big), Refused)
    assert isinstance(sync(warm, Peer(b"C", None, "10.0.0.2"), "c", big), Synced)
    assert warm.statistics()["entries"] == 30


def test_every_loopback_address_and_an_ipv6_64_count_as_one_address():
    for one, other in (("127.0.0.2", "127.0.0.3"), ("127.0.0.1", "::1"), ("::ffff:127.0.0.9", "127.1.2.3"),
                       ("2001:db8::1", "2001:db8::ffff:2"), ("::ffff:10.0.0.7", "10.0.0.7")):
        assert address_group(one) == address_group(other), (one, other)
    for one, other in (("10.0.0.1", "10.0.0.2"), ("2001:db8::1", "2001:db8:0:1::1"), ("127.0.0.1", "10.0.0.1")):
        assert address_group(one) != address_group(other), (one, other)


def test_one_host_cannot_take_more_than_its_share_from_several_source_addresses(warm, monkeypatch):
    monkeypatch.setattr(protocol, "MAX_ENTRIES", 64)
    announcements = [(f"\0listener /fill/{n}", endpoint(3000 + n), {}) for n in range(8)]
    sources = ["127.0.0.2", "127.0.0.3", "::1", "::ffff:127.0.0.4"]
    accepted = [isinstance(sync(warm, Peer(b"F%d" % n, None, sources[n % 4]), f"f{n}", announcements), Synced)
                for n in range(8)]
    assert accepted == [True] * 4 + [False] * 4 and warm.statistics()["entries"] == 32


def test_a_newcomer_gets_in_after_two_hosts_filled_their_shares(warm, monkeypatch):
    monkeypatch.setattr(protocol, "MAX_ENTRIES", 128)
    big = [(f"\0listener /fill/{n}", endpoint(3000 + n), {}) for n in range(16)]
    for host in ("10.0.0.1", "10.0.0.2"):
        for n in range(8):
            sync(warm, Peer(f"{host}/{n}".encode(), None, host), f"{host}/{n}", big)
    assert warm.statistics()["entries"] == 128 - 16  # the reserve is left
    newcomer = Peer(b"new", None, "10.0.0.3")
    reply = sync(warm, newcomer, "new", [(KEY, endpoint(1), {})], [KEY])
    assert isinstance(reply, Synced) and reply.endpoints == {KEY: {endpoint(1)}}


def test_a_cached_reply_entry_follows_every_change_of_its_key(warm, clock):
    watcher = Peer(b"Nwatcher")
    assert sync(warm, watcher, "w", watched=[KEY]).endpoints == {KEY: frozenset()}
    sync(warm, HONEST, "a", [(KEY, endpoint(1), {})])
    assert sync(warm, watcher, "w", watched=[KEY]).endpoints == {KEY: {endpoint(1)}}
    clock.now += 0.01
    sync(warm, ATTACKER, "b", [(KEY, endpoint(2), {})])
    assert sync(warm, watcher, "w", watched=[KEY, KEY]).endpoints == {KEY: {endpoint(1), endpoint(2)}}
    sync(warm, HONEST, "a", [(KEY, endpoint(3), {})])
    assert sync(warm, watcher, "w", watched=[KEY]).endpoints == {KEY: {endpoint(3), endpoint(2)}}
    warm.handle(ATTACKER, protocol.bye("b", ""))
    assert sync(warm, watcher, "w", watched=[KEY]).endpoints == {KEY: {endpoint(3)}}
    clock.now += ENTRY_TTL + 0.01
    sync(warm, watcher, "w")
    warm.expire()
    assert sync(warm, watcher, "w", watched=[KEY]).endpoints == {KEY: frozenset()}


def test_a_small_node_gets_in_after_big_ones_of_its_own_host_filled_what_they_may(warm, monkeypatch):
    monkeypatch.setattr(protocol, "MAX_ENTRIES", 1024)
    big = [(f"\0listener /fill/{n}", endpoint(3000 + n), {}) for n in range(SMALL_NODE + 1)]
    taken = sum(isinstance(sync(warm, Peer(b"B%d" % n, None, "127.0.0.2"), f"big{n}", big), Synced) for n in range(40))
    assert taken * len(big) <= 1024 * (ADDRESS_SHARE - SMALL_RESERVE) < (taken + 1) * len(big)
    small = [(KEY, endpoint(1), {})] * SMALL_NODE
    assert isinstance(sync(warm, Peer(b"S", None, "127.0.0.1"), "small", small), Synced)
    assert isinstance(sync(warm, Peer(b"B", None, "127.0.0.1"), "big", big), Refused)
