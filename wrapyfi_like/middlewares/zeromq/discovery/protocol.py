"""The discovery wire: every message, request or reply, is decoded and checked here before anything
acts on it.

Discovery messages come from whoever can reach the directory's port, so each one is parsed with
bounded msgpack (no bin, no ext, bounded strings, arrays and maps), then checked against the
schema below: types, lengths, counts and endpoint syntax. What fails raises
:class:`~wrapyfi_like.exceptions.DecodeError` with a reason; the caller counts it, logs it
(rate-limited) and goes on. Nothing half-checked reaches the directory's state or a watch.

Each message is one frame, a msgpack array (docs/wire.md, "Discovery"):

| request | reply |
|---|---|
| ``["sync", seq, node_id, announcements, watched, realm]`` | ``["synced", seq, {key: [endpoint, ...]}, warming]`` or ``["refused", seq, reason]`` |
| ``["bye", node_id, realm]`` | none |
| ``["list", seq, realm]`` | ``["listing", seq, [[key, endpoint, info, node_id], ...]]`` or ``["refused", seq, reason]`` |

and, unasked, from the directory to an agent that watches a key whose endpoints changed: ``["changed"]``
(a hint to sync now; see :func:`agent_version` for who is sent one).
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple, Optional, Union

import msgpack

from wrapyfi_like.exceptions import DecodeError
from wrapyfi_like.limits import MAX_TOPIC_LENGTH

MAX_REQUEST_BYTES = 1024 * 1024
"""Bytes one request may take; libzmq refuses a larger frame (``ZMQ_MAXMSGSIZE``) before allocating it."""
MAX_SYNCED_BYTES = 8 * 1024 * 1024
"""Bytes a ``synced`` reply may take: :data:`MAX_WATCHED` keys × :data:`MAX_ENDPOINTS_PER_KEY` fit."""
MAX_LISTING_BYTES = 64 * 1024 * 1024
"""Bytes a ``listing`` reply may take: a full directory (:data:`MAX_DIRECTORY_BYTES`) fits."""
MAX_ANNOUNCEMENTS = 256
"""Announcements one node (process) may hold in the directory."""
MAX_WATCHED = 256
"""Keys one node may watch."""
MAX_ENDPOINTS_PER_KEY = 64
"""Endpoints a ``synced`` reply gives per key (those of the longest-known nodes first)."""
MAX_NODES = 1024
"""Live nodes a directory holds; a new node beyond that is refused until one expires."""
MAX_ENTRIES = 16384
"""Announcements a directory holds over all nodes."""
MAX_DIRECTORY_BYTES = 16 * 1024 * 1024
"""Sum of the sizes of the live nodes' last syncs: the directory's budget of peer-chosen bytes."""
MAX_KEY_LENGTH = MAX_TOPIC_LENGTH + 32
"""Characters of a key: a topic (:data:`~wrapyfi_like.limits.MAX_TOPIC_LENGTH`) plus a kind prefix."""
MAX_NODE_ID_LENGTH = 64
MAX_REALM_LENGTH = 64
MAX_INFO_ITEMS = 16
MAX_INFO_NAME_LENGTH = 64
MAX_INFO_TEXT_LENGTH = 256
MAX_HOST_LENGTH = 253
MAX_IPC_PATH_BYTES = 107
"""A Unix socket path holds at most 107 bytes (108 with its terminating NUL)."""
MAX_SEQ = 2**63 - 1
VERSION = 2
"""This protocol's version: 2 added the ``changed`` hint. An agent says its version in its
DEALER's routing id (:func:`agent_routing_id`), which every directory, old or new, accepts as it
is, so a new agent still syncs with an old directory, and an old agent is never sent a hint."""
_VERSION_MARK = b"v"

_TCP = re.compile(r"tcp://(\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):([0-9]{1,5})")

Announcement = tuple
"""``(key, endpoint, info)``: one checked announcement."""


class Sync(NamedTuple):
    """A node's whole state: it replaces what the node announced and watched before."""

    seq: int
    node: str
    announcements: tuple[Announcement, ...]
    watched: tuple[str, ...]
    realm: str


class Bye(NamedTuple):
    node: str
    realm: str


class ListRequest(NamedTuple):
    seq: int
    realm: str


class Synced(NamedTuple):
    seq: int
    endpoints: dict[str, frozenset[str]]
    warming: bool
    """True while the directory is younger than an entry's lifetime: it may not know every live
    node yet, so an endpoint missing from this reply is no sign that its owner is gone."""


class Changed(NamedTuple):
    """A hint: an endpoint under a key this agent watches was added or removed; sync to learn which."""


class Refused(NamedTuple):
    seq: int
    reason: str


class ListingRow(NamedTuple):
    key: str
    endpoint: str
    info: dict
    node: str


class Listing(NamedTuple):
    seq: int
    rows: tuple[ListingRow, ...]


Request = Union[Sync, Bye, ListRequest]
Reply = Union[Synced, Changed, Refused, Listing]


def _refuse_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"msgpack extension type {code} is not part of the discovery protocol")


def _unpack(frame: bytes, max_bytes: int, max_array: int, max_map: int) -> Any:
    if len(frame) > max_bytes:
        raise DecodeError(f"a discovery message of {len(frame)} bytes; the limit is {max_bytes}")
    try:
        return msgpack.unpackb(frame, raw=False, strict_map_key=True, use_list=True, ext_hook=_refuse_ext,
                               max_str_len=max(MAX_KEY_LENGTH, MAX_INFO_TEXT_LENGTH) * 4, max_bin_len=0,
                               max_ext_len=0, max_array_len=max_array, max_map_len=max_map)
    except DecodeError:
        raise
    except Exception as error:  # msgpack raises several types for bad bytes and broken limits
        raise DecodeError(f"not a bounded msgpack value: {type(error).__name__}: {error}") from None


def _array(value: Any, what: str, max_items: int) -> list:
    if type(value) is not list:
        raise DecodeError(f"{what} must be an array, got {type(value).__name__}")
    if len(value) > max_items:
        raise DecodeError(f"{what} holds {len(value)} items; the limit is {max_items}")
    return value


def _text(value: Any, what: str, max_length: int, empty: bool = False) -> str:
    if type(value) is not str:
        raise DecodeError(f"{what} must be a string, got {type(value).__name__}")
    if len(value) > max_length or (not value and not empty):
        raise DecodeError(f"{what} must be {'0' if empty else '1'} to {max_length} characters long, "
                          f"got {len(value)}")
    return value


def _seq(value: Any) -> int:
    if type(value) is not int or not 0 <= value <= MAX_SEQ:
        raise DecodeError(f"seq must be a non-negative 64-bit integer, got {type(value).__name__}")
    return value


def check_endpoint(endpoint: Any, allow_empty: bool = False) -> str:
    """``endpoint`` if it is ``tcp://host:port`` (port 1–65535) or ``ipc:///absolute/path`` (at
    most :data:`MAX_IPC_PATH_BYTES` bytes, no NUL); anything else is a :class:`DecodeError`.

    An empty endpoint is allowed where it means "nothing to connect to" (a publisher's listing entry).
    """
    _text(endpoint, "an endpoint", 6 + MAX_HOST_LENGTH + 8, empty=True)
    if not endpoint and allow_empty:
        return endpoint
    if endpoint.startswith("ipc://"):
        path = endpoint[6:]
        if path.startswith("/") and "\0" not in path and 1 < len(path.encode()) <= MAX_IPC_PATH_BYTES:
            return endpoint
    else:
        match = _TCP.fullmatch(endpoint)
        if match and len(match.group(1)) <= MAX_HOST_LENGTH and 1 <= int(match.group(2)) <= 65535:
            return endpoint
    raise DecodeError("an endpoint must be tcp://host:port or ipc:///path")


def _info(value: Any) -> dict:
    if type(value) is not dict:
        raise DecodeError(f"info must be a map, got {type(value).__name__}")
    if len(value) > MAX_INFO_ITEMS:
        raise DecodeError(f"info holds {len(value)} items; the limit is {MAX_INFO_ITEMS}")
    for name, item in value.items():
        _text(name, "an info name", MAX_INFO_NAME_LENGTH)
        if type(item) is list:
            for text in _array(item, f"info {name!r}", MAX_INFO_ITEMS):
                _text(text, f"an item of info {name!r}", MAX_INFO_TEXT_LENGTH, empty=True)
        elif type(item) is str:
            _text(item, f"info {name!r}", MAX_INFO_TEXT_LENGTH, empty=True)
        elif item is not None and type(item) not in (bool, int, float):
            raise DecodeError(f"info {name!r} must be nil, a boolean, a number, a string or an array "
                              f"of strings, got {type(item).__name__}")
    return value


def _announcement(value: Any) -> Announcement:
    key, endpoint, info = _exactly(value, 3, "an announcement")
    return (_text(key, "a key", MAX_KEY_LENGTH), check_endpoint(endpoint, allow_empty=True), _info(info))


def _exactly(value: Any, count: int, what: str) -> list:
    _array(value, what, count)
    if len(value) != count:
        raise DecodeError(f"{what} must have {count} items, got {len(value)}")
    return value


def decode_request(frame: bytes) -> Request:
    """The request in ``frame``, fully checked; :class:`DecodeError` says what is wrong."""
    message = _unpack(frame, MAX_REQUEST_BYTES, max(MAX_ANNOUNCEMENTS, MAX_WATCHED), MAX_INFO_ITEMS)
    if type(message) is not list or not message or type(message[0]) is not str:
        raise DecodeError("a discovery request must be an array that starts with its kind")
    kind = message[0]
    if kind == "sync":
        _, seq, node, announcements, watched, realm = _exactly(message, 6, "a sync")
        return Sync(_seq(seq), _text(node, "node_id", MAX_NODE_ID_LENGTH),
                    tuple(_announcement(a) for a in _array(announcements, "announcements", MAX_ANNOUNCEMENTS)),
                    tuple(_text(k, "a watched key", MAX_KEY_LENGTH) for k in _array(watched, "watched", MAX_WATCHED)),
                    _text(realm, "realm", MAX_REALM_LENGTH, empty=True))
    if kind == "bye":
        _, node, realm = _exactly(message, 3, "a bye")
        return Bye(_text(node, "node_id", MAX_NODE_ID_LENGTH), _text(realm, "realm", MAX_REALM_LENGTH, empty=True))
    if kind == "list":
        _, seq, realm = _exactly(message, 3, "a list")
        return ListRequest(_seq(seq), _text(realm, "realm", MAX_REALM_LENGTH, empty=True))
    raise DecodeError("unknown discovery request kind")


def decode_reply(frame: bytes) -> Reply:
    """The ``synced``, ``changed`` or ``refused`` message in ``frame``, fully checked (what an agent receives)."""
    message = _unpack(frame, MAX_SYNCED_BYTES, max(MAX_WATCHED, MAX_ENDPOINTS_PER_KEY), MAX_WATCHED)
    if type(message) is not list or not message or type(message[0]) is not str:
        raise DecodeError("a discovery reply must be an array that starts with its kind")
    if message[0] == "synced":
        _, seq, table, warming = _exactly(message, 4, "a synced reply")
        if type(table) is not dict or type(warming) is not bool:
            raise DecodeError("a synced reply must carry a map of endpoints and a warming flag")
        endpoints = {}
        for key, listed in table.items():
            _text(key, "a key", MAX_KEY_LENGTH)
            endpoints[key] = frozenset(check_endpoint(e) for e in _array(listed, "endpoints", MAX_ENDPOINTS_PER_KEY))
        return Synced(_seq(seq), endpoints, warming)
    if message[0] == "changed":
        _exactly(message, 1, "a changed hint")
        return Changed()
    return _refused(message)


def _refused(message: list) -> Refused:
    if message[0] != "refused":
        raise DecodeError("unknown discovery reply kind")
    _, seq, reason = _exactly(message, 3, "a refused reply")
    return Refused(_seq(seq), _text(reason, "a reason", MAX_INFO_TEXT_LENGTH * 4, empty=True))


def decode_listing(frame: bytes) -> Union[Listing, Refused]:
    """The ``listing`` (or ``refused``) reply in ``frame``, fully checked (what a tool receives)."""
    message = _unpack(frame, MAX_LISTING_BYTES, MAX_ENTRIES, MAX_INFO_ITEMS)
    if type(message) is not list or not message or type(message[0]) is not str:
        raise DecodeError("a discovery reply must be an array that starts with its kind")
    if message[0] != "listing":
        return _refused(message)
    _, seq, rows = _exactly(message, 3, "a listing")
    checked = []
    for row in _array(rows, "listing rows", MAX_ENTRIES):
        key, endpoint, info, node = _exactly(row, 4, "a listing row")
        checked.append(ListingRow(*_announcement([key, endpoint, info]), _text(node, "node_id", MAX_NODE_ID_LENGTH)))
    return Listing(_seq(seq), tuple(checked))


def agent_routing_id(random_part: bytes) -> bytes:
    """The routing id of an agent of this :data:`VERSION`: ``b"v"``, the version digit, then
    ``random_part`` (at most 253 bytes: a routing id holds 255)."""
    return _VERSION_MARK + str(VERSION).encode() + random_part


def agent_version(routing_id: bytes) -> int:
    """The protocol version of the agent with this routing id: what :func:`agent_routing_id` put
    there, else 1 (agents before version 2 used ``b"N"`` and random bytes; tools use libzmq's ids)."""
    if routing_id[:1] == _VERSION_MARK and routing_id[1:2].isdigit():
        return int(routing_id[1:2])
    return 1


def encode(message: list) -> bytes:
    return msgpack.packb(message)


def sync(seq: int, node: str, announcements: list, watched: list, realm: str) -> bytes:
    return encode(["sync", seq, node, announcements, watched, realm])


def bye(node: str, realm: str) -> bytes:
    return encode(["bye", node, realm])


def list_request(seq: int, realm: str) -> bytes:
    return encode(["list", seq, realm])


def synced(seq: int, endpoints: dict[str, list[str]], warming: bool) -> bytes:
    return encode(["synced", seq, endpoints, warming])


def synced_from_parts(seq: int, parts: list[bytes], warming: bool) -> bytes:
    """A ``synced`` reply whose endpoints map is ``parts``, each one key and its endpoint list
    already encoded (:func:`synced_part`): the same bytes as :func:`synced`, without encoding
    again what a directory keeps encoded until the key changes."""
    return b"".join((b"\x94", encode("synced"), encode(seq), _map_header(len(parts)), *parts,
                     encode(warming)))


def synced_part(key: str, endpoints: list[str]) -> bytes:
    """One entry of a ``synced`` reply's endpoints map, encoded (for :func:`synced_from_parts`)."""
    return encode(key) + encode(endpoints)


def _map_header(count: int) -> bytes:
    """msgpack's head of a map of ``count`` pairs (fixmap, map 16 or map 32)."""
    if count < 16:
        return bytes((0x80 | count,))
    if count < 2**16:
        return b"\xde" + count.to_bytes(2, "big")
    return b"\xdf" + count.to_bytes(4, "big")


CHANGED = msgpack.packb(["changed"])
"""The ``changed`` hint, the same bytes every time."""


def refused(seq: Optional[int], reason: str) -> bytes:
    return encode(["refused", seq or 0, reason])


def listing_from_rows(seq: int, encoded_rows: bytes) -> bytes:
    """A ``listing`` reply around rows already encoded (a msgpack array of 3 items, spelled out)."""
    return b"".join((b"\x93", encode("listing"), encode(seq), encoded_rows))
