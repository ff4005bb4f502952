"""The directory's state: which node announced which endpoints, bounded, owned and expiring.

Pure state and no sockets: :meth:`Directory.handle` takes one request frame and who sent it (a
:class:`Peer`: the ZeroMQ routing id of its connection and, with CURVE, the public key ZAP
authenticated) and returns the reply frame. The agent that hosts the directory feeds it.

- **Identity is bound to the connection.** The first connection that syncs a node id owns it
  until the node expires or says ``bye``; a sync or ``bye`` for that id from another connection
  (or another CURVE key) is refused and counted, so a node id read from a listing is useless to
  anyone else. One connection owns at most one node id.
- **Bounded.** Per node at most :data:`~.protocol.MAX_ANNOUNCEMENTS` announcements and
  :data:`~.protocol.MAX_WATCHED` watched keys (checked by the protocol); at most
  :data:`~.protocol.MAX_NODES` nodes, :data:`~.protocol.MAX_ENTRIES` announcements and
  :data:`~.protocol.MAX_DIRECTORY_BYTES` bytes of syncs in all, and the nodes of one network
  address at most :data:`ADDRESS_SHARE` of each, where one address is what one host can easily
  have (:func:`address_group`: every loopback address is one, IPv6 by /64). The last
  :data:`SMALL_RESERVE` of an address's share is kept for its nodes of few announcements
  (:data:`SMALL_NODE`), so one big application does not lock the small ones of its host out;
  the last :data:`RESERVE` of each limit is kept for addresses that hold little of it
  (:data:`NEWCOMER_SHARE`), so a host that comes after two others filled their shares still
  gets in. A sync that would pass a limit is refused and counted; what the node had before
  stays as it was.
- **Expiry runs on a timer** (:meth:`expire`, called by the host's loop), whether or not anyone
  watches or lists, and counts the directory's own delay: a node past its lifetime is dropped
  only once the directory has served :data:`GRACE_ROUNDS` requests per connection since the
  node's last sync (every connection's turn twice, which a live node's waiting sync gets), or at
  most :data:`MAX_GRACE` later. A directory that cannot keep up (two hundred processes starting
  at once on two cores: a sync waited up to 4 s) would otherwise drop live nodes whose syncs were
  still waiting to be read, and their endpoints would vanish from their watchers for a while.
- **A sync costs O(watched keys).** Each key's encoded endpoint list is kept until an announcement
  under that key changes (:meth:`_part`), so a watch sync is dictionary lookups and one join,
  however many nodes announce its keys: a 256-key sync of keys with 31 announcers each took 7 ms
  of the directory's thread when every sync sorted and encoded them again.
- **Warm-up.** A new directory (after a takeover) does not yet know every live node: its replies
  carry ``warming`` until one entry lifetime has passed, and agents then add endpoints without
  removing any (:meth:`~.watch.Watch.update`), so a failover never tells a node a live peer is gone.
- **Hints.** When a sync, a ``bye`` or expiry changes the endpoints of a key, the nodes watching
  that key are owed a ``changed`` hint (:meth:`due_hints`, sent by the host), so they sync at once
  instead of at their next poll. Only agents of protocol version 2 or later
  (:func:`~.protocol.agent_version`) are indexed as watchers, so an older agent is never sent one.
  A node is owed at most one hint (one flag, however many changes), gets at most one per
  :data:`HINT_INTERVAL` (changes in between are told by one hint at its end), and owes nothing
  once it syncs (its reply is newer than any hint). Hints only save time: a lost one leaves the
  node to its periodic sync.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
from collections import Counter
from typing import Callable, NamedTuple, Optional

from wrapyfi_like.exceptions import DecodeError
from wrapyfi_like.logs import RateLimitedLog, truncate
from wrapyfi_like.middlewares.zeromq.discovery import protocol
from wrapyfi_like.middlewares.zeromq.discovery.protocol import Bye, ListRequest, Sync

logger = logging.getLogger("wrapyfi_like.zeromq.discovery")
_log = RateLimitedLog(logger)

ENTRY_TTL = 4.0
"""Seconds a node's announcements live in the directory without a sync refreshing them (while
the directory keeps up; see :data:`GRACE_ROUNDS`)."""
GRACE_ROUNDS = 2
"""Requests per connection the directory serves after a node's last sync before it lets the node
expire. The host's reader serves connections in turn, one request each, so every connection whose
sync waits is served within one round; two allow for the node's own delay before it sends."""
MAX_GRACE = ENTRY_TTL
"""Seconds past its lifetime a node is kept at most for :data:`GRACE_ROUNDS` (a directory with
many idle or stalled connections and few requests): a dead node is listed at most this long more."""
ADDRESS_SHARE = 0.5
"""The share of each limit (nodes, announcements, bytes) the nodes of one network address may
use, so a flood of valid registrations from one host leaves room for the others (connections
without an address, over ipc, are bound by the whole only: no share, no :data:`RESERVE`)."""
RESERVE = 1 / 8
"""The share of each limit that only addresses holding at most :data:`NEWCOMER_SHARE` of it may
fill: two hosts that filled their shares (or one host, and others) still leave room for a new one."""
SMALL_NODE = 16
"""Announcements a node may hold and still use its address's :data:`SMALL_RESERVE` (a process with
a few topics): one host that fills its share with big nodes leaves room for its small ones."""
SMALL_RESERVE = 1 / 16
"""What of each limit, within an address's share, only nodes of at most :data:`SMALL_NODE`
announcements may fill (the last eighth of the share: 64 nodes, 1,024 announcements, 1 MiB). It
does not protect against a hostile process on the same host, which can announce as small nodes
too; it then needs 64 more connections."""
NEWCOMER_SHARE = 1 / 64
"""What an address may hold of a limit and still use the :data:`RESERVE` (at least one node,
one announcement, one byte): a node of :data:`~.protocol.MAX_ANNOUNCEMENTS`, from eight hosts at least."""


class Peer(NamedTuple):
    """Who sent a request: its connection's routing id, its CURVE public key (z85) if any, and the
    network address it connects from ("" if unknown, e.g. over ipc)."""

    routing_id: bytes
    user: Optional[str] = None
    address: str = ""

    @property
    def source(self) -> str:
        return self.routing_id.hex()


@functools.lru_cache(maxsize=4096)
def address_group(address: str) -> str:
    """The network address ``address`` counts as in the shares: every loopback address (127/8,
    ``::1``) is ``"loopback"`` (one process can connect from any of them, so they are one host),
    an IPv6 address is its /64 (what one host is given, and can pick addresses in at will), an
    IPv4-mapped IPv6 address is its IPv4 address; anything else (or "", no address) as it is."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "loopback"
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


HINT_INTERVAL = 0.25
"""Seconds between two hints to one node at least. The first change is told at once (what a
publisher waiting for its first listener needs); a burst of changes (a hundred processes
starting, a failover), or a peer whose endpoints change on every sync, costs each watcher at
most one hint, and so one sync, per interval: at 20 ms one flapping peer made every watcher of
its key sync 50 times a second."""
MAX_WATCHES = protocol.MAX_ENTRIES
"""Watched keys indexed for hints in all (each costs ~300 bytes of index, beyond the bytes of the
syncs, which the limits count); the nodes of one address index at most :data:`ADDRESS_SHARE` of
them, the last :data:`SMALL_RESERVE` only for nodes watching at most :data:`SMALL_NODE` keys. A
node whose watches do not fit is not indexed: it gets no hints and learns of changes at its next
poll, as before hints (counted in ``unhinted``)."""


class _Node:
    __slots__ = ("owner", "expiry", "turn", "announcements", "size", "since", "hints", "watched", "hinted")

    def __init__(self, owner: Peer, since: float) -> None:
        self.owner = owner
        self.since = since
        self.expiry = since
        self.turn = 0  # the directory's handled requests at its last sync
        self.announcements: tuple = ()
        self.size = 0
        self.hints = protocol.agent_version(owner.routing_id) >= 2
        self.watched: tuple[str, ...] = ()  # indexed in Directory._watchers; only if it takes hints
        self.hinted = float("-inf")  # when it was last sent a hint


class Directory:
    """The key → endpoints table; every request goes through :meth:`handle`."""

    def __init__(self, realm: str = "", clock: Callable[[], float] = time.monotonic) -> None:
        self.realm = realm
        self._clock = clock
        self._warm_after = clock() + ENTRY_TTL
        self._nodes: dict[str, _Node] = {}
        self._owned: dict[Peer, str] = {}  # connection -> the node id it owns
        self._by_key: dict[str, dict[str, tuple[str, ...]]] = {}  # key -> node id -> its endpoints
        self._parts: dict[str, bytes] = {}  # key -> its encoded reply entry (_part); dropped when it changes
        self._entries = 0
        self._bytes = 0
        self._by_address: dict[str, list[int]] = {}  # address -> [nodes, entries, bytes, watches]
        self._listing: Optional[bytes] = None  # cached encoded rows; None after any change
        self._watchers: dict[str, set[str]] = {}  # key -> ids of the nodes that watch it and take hints
        self._watches = 0  # (node, key) pairs in _watchers
        self._owed: set[str] = set()  # ids of the nodes owed a hint
        self._handled = 0  # requests handled, the directory's own clock for expiry (GRACE_ROUNDS)
        self.counters: Counter[str] = Counter()

    # -- requests -------------------------------------------------------------------------------

    def handle(self, peer: Peer, frame: bytes) -> Optional[bytes]:
        """The reply to ``frame`` from ``peer`` (None: no reply); never raises for bad input."""
        self._handled += 1
        try:
            request = protocol.decode_request(frame)
        except DecodeError as error:
            self.counters["malformed"] += 1
            _log.warning(peer.source, "malformed", "discovery: ignored a malformed request from peer %s: %s",
                         peer.source, truncate(error))
            return None
        if request.realm != self.realm:
            self.counters["refused_realm"] += 1
            _log.warning(peer.source, "realm", "discovery: refused peer %s of realm %r (this directory's: %r)",
                         peer.source, truncate(request.realm), self.realm)
            if isinstance(request, Bye):
                return None
            return protocol.refused(request.seq, f"this directory serves realm {self.realm!r} (user id/"
                                                 f"WRAPYFI_LIKE_DOMAIN), not {truncate(request.realm)!r}")
        if isinstance(request, Sync):
            return self._sync(peer, request, len(frame))
        if isinstance(request, Bye):
            self._bye(peer, request)
            return None
        return self._list(request)

    def _sync(self, peer: Peer, request: Sync, size: int) -> bytes:
        now = self._clock()
        node = self._nodes.get(request.node)
        problem = self._check_owner(peer, request.node, node)
        if problem is None:
            problem = self._check_room(peer, node, request, size)
        if problem is not None:
            kind, reason = problem
            self.counters[kind] += 1
            _log.warning(peer.source, kind, "discovery: refused a sync of node %s from peer %s: %s",
                         truncate(request.node), peer.source, reason)
            return protocol.refused(request.seq, reason)
        if node is None:
            node = self._nodes[request.node] = _Node(peer, now)
            self._owned[peer] = request.node
            self._share(peer)[0] += 1
        elif now > node.expiry:
            self.counters["renewed_late"] += 1  # kept past its lifetime (expire's grace): not dropped
        node.expiry = now + ENTRY_TTL
        node.turn = self._handled
        if node.announcements != request.announcements:
            self._replace(request.node, node, request.announcements)
        if node.hints and node.watched != request.watched:
            self._rewatch(request.node, node, request.watched)
        self._owed.discard(request.node)  # its reply tells it more than a hint would
        self._bytes += size - node.size
        self._share(peer)[2] += size - node.size
        node.size = size
        return protocol.synced_from_parts(request.seq, [self._part(key) for key in dict.fromkeys(request.watched)],
                                          warming=now < self._warm_after)

    def _check_owner(self, peer: Peer, node_id: str, node: Optional[_Node]) -> Optional[tuple[str, str]]:
        if node is not None and node.owner != peer:
            return "refused_identity", "this node id belongs to another connection"
        owned = self._owned.get(peer)
        if owned is not None and owned != node_id:
            return "refused_identity", "this connection already announces another node id"
        return None

    def _check_room(self, peer: Peer, node: Optional[_Node], request: Sync, size: int) -> Optional[tuple[str, str]]:
        """Why the sync does not fit (in all, or in the share of the peer's address), or None."""
        added_nodes = 0 if node is not None else 1
        added_entries = len(request.announcements) - (len(node.announcements) if node is not None else 0)
        added_bytes = size - (node.size if node is not None else 0)
        group = address_group(peer.address)
        share = self._by_address.get(group, [0, 0, 0, 0])
        for what, total, mine, added, limit in (
                ("nodes", len(self._nodes), share[0], added_nodes, protocol.MAX_NODES),
                ("announcements", self._entries, share[1], added_entries, protocol.MAX_ENTRIES),
                ("bytes", self._bytes, share[2], added_bytes, protocol.MAX_DIRECTORY_BYTES)):
            if added <= 0:
                continue
            if total + added > limit:
                return "refused_limit", f"the directory would hold more than {limit} {what}"
            if peer.address and mine + added > limit * ADDRESS_SHARE:
                return "refused_limit", (f"the nodes at {truncate(group, 64)} would hold more than "
                                         f"{ADDRESS_SHARE:.0%} of the directory's {limit} {what}")
            if (peer.address and len(request.announcements) > SMALL_NODE
                    and mine + added > limit * (ADDRESS_SHARE - SMALL_RESERVE)):
                return "refused_limit", (f"the rest of the share of {truncate(group, 64)} in the directory's {limit} "
                                         f"{what} is kept for nodes of at most {SMALL_NODE} announcements")
            if (peer.address and total + added > limit - int(limit * RESERVE)
                    and mine + added > max(int(limit * NEWCOMER_SHARE), 1)):
                return "refused_limit", (f"the last {RESERVE:.1%} of the directory's {limit} {what} is kept for "
                                         f"addresses holding at most {NEWCOMER_SHARE:.1%} of them")
        return None

    def _share(self, peer: Peer) -> list[int]:
        return self._by_address.setdefault(address_group(peer.address), [0, 0, 0, 0])

    def _bye(self, peer: Peer, request: Bye) -> None:
        node = self._nodes.get(request.node)
        if node is None:
            return
        if node.owner != peer:
            self.counters["refused_identity"] += 1
            _log.warning(peer.source, "refused_identity", "discovery: refused a bye for node %s from peer %s, "
                         "which does not own it", truncate(request.node), peer.source)
            return
        self._remove(request.node)

    def _list(self, request: ListRequest) -> bytes:
        if self._listing is None:  # encoded once per change: a burst of lists costs one encoding
            self._listing = protocol.encode([[key, endpoint, info, node_id] for node_id, node in self._nodes.items()
                                             for key, endpoint, info in node.announcements])
        return protocol.listing_from_rows(request.seq, self._listing)

    # -- state ----------------------------------------------------------------------------------

    def endpoints(self, key: str) -> list[str]:
        """The endpoints announced under ``key``, those of the longest-known nodes first, at most
        :data:`~.protocol.MAX_ENDPOINTS_PER_KEY`; never an empty endpoint."""
        by_node = self._by_key.get(key)
        if not by_node:
            return []
        found: list[str] = []
        for node_id in sorted(by_node, key=lambda n: self._nodes[n].since):
            for endpoint in by_node[node_id]:
                if endpoint and endpoint not in found:
                    found.append(endpoint)
                    if len(found) == protocol.MAX_ENDPOINTS_PER_KEY:
                        return found
        return found

    def _part(self, key: str) -> bytes:
        """``key`` and :meth:`endpoints` of it as a ``synced`` reply entry, encoded once per change
        of the key (a key nobody announces is not kept: watching costs no memory here)."""
        part = self._parts.get(key)
        if part is None:
            part = protocol.synced_part(key, self.endpoints(key))
            if key in self._by_key:
                self._parts[key] = part
        return part

    def due_hints(self) -> list[Peer]:
        """The connections to send a ``changed`` hint now; a node hinted less than
        :data:`HINT_INTERVAL` ago stays owed until :meth:`next_hint`."""
        if not self._owed:
            return []
        now = self._clock()
        due = [node_id for node_id in self._owed if self._nodes[node_id].hinted + HINT_INTERVAL <= now]
        for node_id in due:
            self._owed.discard(node_id)
            self._nodes[node_id].hinted = now
        self.counters["hints"] += len(due)
        return [self._nodes[node_id].owner for node_id in due]

    def next_hint(self) -> Optional[float]:
        """When :meth:`due_hints` has a hint to give next (this directory's clock), or None."""
        if not self._owed:
            return None
        return min(self._nodes[node_id].hinted for node_id in self._owed) + HINT_INTERVAL

    def expire(self, connections: int = 0) -> int:
        """Drop every node whose last sync is older than :data:`ENTRY_TTL` and that the directory
        has since served :data:`GRACE_ROUNDS` requests per connection of its host's (``connections``:
        those open now, live or not) without hearing from, or older than that and :data:`MAX_GRACE`;
        returns how many."""
        now = self._clock()
        owed = GRACE_ROUNDS * connections
        gone = [node_id for node_id, node in self._nodes.items()
                if node.expiry < now and (self._handled - node.turn >= owed or node.expiry + MAX_GRACE < now)]
        for node_id in gone:
            self._remove(node_id)
        self.counters["expired"] += len(gone)
        return len(gone)

    def statistics(self) -> dict[str, int]:
        """Nodes, entries and bytes held, and counts of what was refused, malformed (here, or
        ``refused_size`` by the host's reader before it reached us) or expired, the syncs that came
        after their node's lifetime and found it still listed (``renewed_late``: between two expiry
        runs, or kept by :meth:`expire`'s grace while the directory was behind), and the hints given (``hints``; ``hints_unsent``: those the host could not send, the watcher's connection being
        gone or full; ``unhinted``: syncs whose watches did not fit :data:`MAX_WATCHES`)."""
        return {"nodes": len(self._nodes), "entries": self._entries, "bytes": self._bytes,
                "malformed": self.counters["malformed"] + self.counters["refused_size"],
                **{name: self.counters[name] for name in
                   ("refused_identity", "refused_limit", "refused_realm", "expired", "renewed_late", "hints",
                    "hints_unsent", "unhinted")}}

    def _replace(self, node_id: str, node: _Node, announcements: tuple) -> None:
        before = _served(node.announcements)
        self._unindex(node_id, node)
        node.announcements = announcements
        self._entries += len(announcements)
        self._share(node.owner)[1] += len(announcements)
        grouped: dict[str, list[str]] = {}
        for key, endpoint, _info in announcements:
            grouped.setdefault(key, []).append(endpoint)
        for key, endpoints in grouped.items():
            self._by_key.setdefault(key, {})[node_id] = tuple(endpoints)
            self._parts.pop(key, None)
        self._listing = None
        after = _served(announcements)
        self._changed(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))

    def _changed(self, keys) -> None:
        """Owe a hint to every node that watches one of ``keys``."""
        for key in keys:
            watchers = self._watchers.get(key)
            if watchers:
                self._owed |= watchers

    def _rewatch(self, node_id: str, node: _Node, watched: tuple[str, ...]) -> None:
        """Index ``watched`` as the keys ``node`` is hinted about, if they fit :data:`MAX_WATCHES`."""
        share = self._share(node.owner)
        added = len(watched) - len(node.watched)
        share_left = ADDRESS_SHARE - (SMALL_RESERVE if len(watched) > SMALL_NODE else 0)
        if added > 0 and (self._watches + added > MAX_WATCHES
                          or node.owner.address and share[3] + added > MAX_WATCHES * share_left):
            self.counters["unhinted"] += 1
            _log.warning(node.owner.source, "unhinted", "discovery: node %s watches more keys than the hint "
                         "index has room for; it learns of changes at its polls", truncate(node_id))
            watched = ()
        self._watches += len(watched) - len(node.watched)
        share[3] += len(watched) - len(node.watched)
        for key in node.watched:
            watchers = self._watchers.get(key)
            if watchers is not None:
                watchers.discard(node_id)
                if not watchers:
                    del self._watchers[key]
        node.watched = watched
        for key in watched:
            self._watchers.setdefault(key, set()).add(node_id)

    def _unindex(self, node_id: str, node: _Node) -> None:
        for key in {key for key, _endpoint, _info in node.announcements}:
            self._parts.pop(key, None)
            by_node = self._by_key.get(key)
            if by_node is not None:
                by_node.pop(node_id, None)
                if not by_node:
                    del self._by_key[key]
        self._entries -= len(node.announcements)
        self._share(node.owner)[1] -= len(node.announcements)
        self._listing = None

    def _remove(self, node_id: str) -> None:
        node = self._nodes.pop(node_id)
        self._rewatch(node_id, node, ())
        self._owed.discard(node_id)
        self._unindex(node_id, node)
        self._changed(_served(node.announcements))
        self._bytes -= node.size
        share = self._share(node.owner)
        share[0] -= 1
        share[2] -= node.size
        if share[0] == 0:
            del self._by_address[address_group(node.owner.address)]
        if self._owned.get(node.owner) == node_id:
            del self._owned[node.owner]


def _served(announcements: tuple) -> dict[str, tuple[str, ...]]:
    """key -> the endpoints ``announcements`` give under it (what a watcher of the key is told)."""
    served: dict[str, tuple[str, ...]] = {}
    for key, endpoint, _info in announcements:
        if endpoint:
            served[key] = served.get(key, ()) + (endpoint,)
    return served
