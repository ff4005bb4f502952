"""Topics as zenoh key expressions: ``/a/b`` is the key ``a/b`` (Wrapyfi's mapping), checked at
construction so a topic can never turn into a wildcard or a key zenoh refuses later.

Zenoh keys are chunk-exact (``a/b`` never matches ``a/bc`` or ``a/b/c``), which is already our
exact-topic rule; but ``*``, ``$``, ``#``, ``?``, empty chunks and a leading ``@`` (zenoh's admin
space) change a key's meaning, so such topics raise :class:`ConfigurationError`. One collision
remains and is documented: ``/a/b``, ``a/b`` and ``a/b/`` are the same zenoh key.
"""

from __future__ import annotations

from wrapyfi_like.exceptions import ConfigurationError
from wrapyfi_like.limits import check_topic

FORBIDDEN = "*$#?"


def topic_key(topic: str, domain: int = 0) -> str:
    """The zenoh key of ``topic``; domain 0 adds no prefix (so keys equal Wrapyfi's), another
    domain prefixes its number as rmw_zenoh does, so domains never hear each other."""
    check_topic(topic)
    key = topic.strip("/")
    if not key or any(not chunk for chunk in key.split("/")):
        raise ConfigurationError(
            f"topic {topic!r} has an empty part; zenoh key expressions cannot contain empty chunks ('a//b')")
    bad = sorted({char for char in key if char in FORBIDDEN})
    if bad:
        raise ConfigurationError(
            f"topic {topic!r}: zenoh key expressions cannot contain {' '.join(bad)} "
            "(they are wildcards or reserved)")
    if key.startswith("@"):
        raise ConfigurationError(f"topic {topic!r}: a leading '@' is zenoh's admin space")
    return key if domain == 0 else f"{domain}/{key}"
