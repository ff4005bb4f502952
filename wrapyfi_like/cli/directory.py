"""What the discovery directory knows, grouped by topic: who publishes, listens to or serves it."""

from __future__ import annotations

from collections import defaultdict
from typing import NamedTuple, Optional

from wrapyfi_like.middlewares.zeromq.discovery import DirectoryEntry, list_directory
from wrapyfi_like.middlewares.zeromq.keys import listener_key, publisher_key
from wrapyfi_like.middlewares.zeromq.reqrep import service_key

_KEY_PREFIXES = {
    "publisher": publisher_key(""),
    "listener": listener_key(""),
    "server": service_key("x")[:-1],
}


class Participant(NamedTuple):
    """One publisher, listener or server of a topic, as announced to discovery."""

    kind: str
    topic: str
    endpoint: str
    info: dict


def split_key(key: str) -> Optional[tuple[str, str]]:
    """``(kind, topic)`` of a discovery key, or None for a kind this tool does not know."""
    for kind, prefix in _KEY_PREFIXES.items():
        if key.startswith(prefix):
            return kind, key[len(prefix):]
    return None


def participants(entries: Optional[list[DirectoryEntry]] = None) -> dict[str, list[Participant]]:
    """Topic → its participants, sorted by topic; asks the directory unless given its entries."""
    by_topic: dict[str, list[Participant]] = defaultdict(list)
    for entry in list_directory() if entries is None else entries:
        split = split_key(entry.key)
        if split is not None:
            kind, topic = split
            by_topic[topic].append(Participant(kind, topic, entry.endpoint, entry.info))
    return {topic: sorted(by_topic[topic], key=lambda p: (p.kind, p.endpoint)) for topic in sorted(by_topic)}


def pubsub_topics(by_topic: dict[str, list[Participant]]) -> dict[str, str]:
    """Every publish/listen topic of ``by_topic`` with its data type (as its participants announced it)."""
    found: dict[str, str] = {}
    for topic, members in by_topic.items():
        types = [p.info.get("data_type") for p in members if p.kind != "server" and p.info.get("data_type")]
        if any(p.kind != "server" for p in members):
            found[topic] = types[0] if types else "NativeObject"
    return found
