"""Topic frames and discovery keys of publish/listen: what publishers and listeners agree on."""

from __future__ import annotations

from wrapyfi_like.limits import check_topic


def topic_frame(topic: str) -> bytes:
    """The topic frame of ``topic``'s messages; checks the topic (:func:`wrapyfi_like.limits.check_topic`)."""
    return check_topic(topic)


def listener_key(topic: str) -> str:
    """The discovery key listeners of ``topic`` announce under; never equal to another kind's key."""
    return "\0listener " + topic


def publisher_key(topic: str) -> str:
    """The discovery key publishers of ``topic`` announce under (for listings; nobody connects to it)."""
    return "\0publisher " + topic
