"""The discovery protocol checks every message against its schema before anything acts on it."""

import msgpack
import pytest

from wrapyfi_like.exceptions import DecodeError
from wrapyfi_like.middlewares.zeromq.discovery import protocol
from wrapyfi_like.middlewares.zeromq.discovery.protocol import (
    Bye, Changed, ListRequest, Refused, Sync, Synced, check_endpoint, decode_listing, decode_reply, decode_request)

GOOD_ANNOUNCEMENT = ["\0listener /cam", "tcp://127.0.0.1:40123",
                     {"class_name": "Cam", "pid": 42, "data_types": ["Image"], "service": True, "x": None, "f": 1.5}]


def test_valid_messages_decode_to_their_named_tuples():
    assert decode_request(protocol.sync(3, "42-ab", [GOOD_ANNOUNCEMENT], ["\0listener /cam"], "1000/0")) == Sync(
        3, "42-ab", (tuple(GOOD_ANNOUNCEMENT),), ("\0listener /cam",), "1000/0")
    assert decode_request(protocol.bye("42-ab", "")) == Bye("42-ab", "")
    assert decode_request(protocol.list_request(7, "/3")) == ListRequest(7, "/3")
    assert decode_reply(protocol.synced(3, {"k": ["ipc:///tmp/x.sock"]}, True)) == Synced(
        3, {"k": frozenset({"ipc:///tmp/x.sock"})}, True)
    assert decode_reply(protocol.refused(4, "no")) == Refused(4, "no")
    assert decode_reply(protocol.CHANGED) == Changed()
    rows = protocol.encode([["k", "", {}, "n"]])
    assert decode_listing(protocol.listing_from_rows(5, rows)).rows == (("k", "", {}, "n"),)


@pytest.mark.parametrize("endpoint", [
    "tcp://127.0.0.1:1", "tcp://host.example.org:65535", "tcp://[::1]:5659", "ipc:///tmp/wrapyfi_like-1000/a.sock"])
def test_endpoints_that_are_accepted(endpoint):
    assert check_endpoint(endpoint) == endpoint


@pytest.mark.parametrize("endpoint", [
    "", "tcp://127.0.0.1:0", "tcp://127.0.0.1:65536", "tcp://127.0.0.1:*", "tcp://127.0.0.1", "tcp://:80",
    "tcp://bad host:80", "tcp://-a:80", "udp://127.0.0.1:80", "inproc://x", "ipc://relative", "ipc://@abstract",
    "ipc:///" + "a" * 107, "ipc:///a\0b", "tcp://" + "a" * 254 + ":1", "pgm://eth0;239.192.1.1:5555",
    "tcp://127.0.0.1:80\n", 42, None, b"tcp://127.0.0.1:80",
])
def test_endpoints_that_are_refused(endpoint):
    with pytest.raises(DecodeError):
        check_endpoint(endpoint)


def sync_with(**changes):
    fields = {"kind": "sync", "seq": 1, "node": "n", "announcements": [GOOD_ANNOUNCEMENT], "watched": [], "realm": ""}
    fields.update(changes)
    return msgpack.packb(list(fields.values()))


@pytest.mark.parametrize("frame", [
    b"", b"\xc1", b"\x91", msgpack.packb("sync"), msgpack.packb([]), msgpack.packb(["nope", 1]),
    msgpack.packb(["sync", 1, "n", [], []]),  # a field missing
    msgpack.packb(["sync", 1, "n", [], [], "", "extra"]),
    sync_with(seq=-1), sync_with(seq="1"), sync_with(seq=2**64 - 1), sync_with(seq=True),
    sync_with(node=""), sync_with(node="n" * 65), sync_with(node=7),
    sync_with(announcements={}), sync_with(announcements=[["k", "tcp://127.0.0.1:1"]]),
    sync_with(announcements=[["k", "tcp://127.0.0.1:1", {}]] * (protocol.MAX_ANNOUNCEMENTS + 1)),
    sync_with(announcements=[["", "tcp://127.0.0.1:1", {}]]),
    sync_with(announcements=[["k" * (protocol.MAX_KEY_LENGTH + 1), "tcp://127.0.0.1:1", {}]]),
    sync_with(announcements=[["k", "tcp://127.0.0.1:99999", {}]]),
    sync_with(announcements=[["k", "tcp://127.0.0.1:1", {"a": {"nested": 1}}]]),
    sync_with(announcements=[["k", "tcp://127.0.0.1:1", {"a": "x" * 257}]]),
    sync_with(announcements=[["k", "tcp://127.0.0.1:1", {str(i): i for i in range(17)}]]),
    sync_with(announcements=[["k", "tcp://127.0.0.1:1", {"a": [1, 2]}]]),
    sync_with(announcements=[["k", "tcp://127.0.0.1:1", {"a": b"bin"}]]),
    sync_with(watched=["k"] * (protocol.MAX_WATCHED + 1)), sync_with(watched=[""]), sync_with(watched="k"),
    sync_with(realm=None), sync_with(realm="r" * 65),
    b"\x96" + msgpack.packb("sync") + b"\x01" + msgpack.packb("n") + b"\x90\x90" + b"\xd6\xff\0\0\0\0",  # Timestamp
    msgpack.packb(["sync", 1, "n", [], [], msgpack.ExtType(5, b"x")]),
    msgpack.packb(["bye", 1, ""]), msgpack.packb(["list", "x", ""]), msgpack.packb({1: 2}),
    msgpack.packb(["sync", 1, "n", [None] * 70000, [], ""]),
    b"\x92" + b"\x91" * 100000,  # deep nesting
    b"\xdd\xff\xff\xff\xff",  # an array claiming 4 billion items
])
def test_malformed_requests_are_decode_errors(frame):
    with pytest.raises(DecodeError):
        decode_request(frame)


def test_a_request_over_the_size_limit_is_refused_before_parsing():
    with pytest.raises(DecodeError, match="limit"):
        decode_request(b"\x90" + b"\0" * protocol.MAX_REQUEST_BYTES)


@pytest.mark.parametrize("frame", [
    msgpack.packb(["synced", 1, {"k": ["tcp://127.0.0.1:1"]}]),  # no warming flag
    msgpack.packb(["synced", 1, {"k": ["not an endpoint"]}, False]),
    msgpack.packb(["synced", 1, {"k": [""]}, False]),  # nothing to connect to
    msgpack.packb(["synced", 1, {"k": "tcp://127.0.0.1:1"}, False]),
    msgpack.packb(["synced", 1, {"k": ["tcp://127.0.0.1:1"] * (protocol.MAX_ENDPOINTS_PER_KEY + 1)}, False]),
    msgpack.packb(["synced", 1, {1: ["tcp://127.0.0.1:1"]}, False]),
    msgpack.packb(["synced", 1, [], 0]), msgpack.packb(["listing", 1, []]), msgpack.packb(["refused", 1]),
    msgpack.packb(None), b"\xff" * 10,
    msgpack.packb(["changed", "\0listener /cam"]), msgpack.packb(["changed", []]), msgpack.packb(["Changed"]),
])
def test_malformed_replies_are_decode_errors(frame):
    with pytest.raises(DecodeError):
        decode_reply(frame)


def test_the_protocol_version_is_read_from_the_routing_id_and_older_agents_are_version_1():
    routing_id = protocol.agent_routing_id(b"\x00" * 14)
    assert routing_id.startswith(b"v2") and len(routing_id) == 16
    assert protocol.agent_version(routing_id) == protocol.VERSION == 2
    for older in (b"N" + b"\xff" * 15, b"\x00\x6b\x8b\x45\x67", b"v", b"vx123", b""):
        assert protocol.agent_version(older) == 1


def test_a_synced_reply_from_encoded_parts_is_the_same_bytes_as_one_encoded_whole():
    for keys in (0, 1, 15, 16, 300, 70_000):  # fixmap, map 16 and map 32 heads
        endpoints = {f"\0listener /k{n}": [f"tcp://127.0.0.1:{n % 65000 + 1}"] * (n % 3) for n in range(keys)}
        for warming in (False, True):
            parts = [protocol.synced_part(key, value) for key, value in endpoints.items()]
            assert protocol.synced_from_parts(7, parts, warming) == protocol.synced(7, endpoints, warming)
