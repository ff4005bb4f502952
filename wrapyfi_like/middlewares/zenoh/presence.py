"""Who is on which topic, told through zenoh liveliness tokens (what ``wrapyfi-like topics`` lists).

Every zenoh publisher, listener and server declares one token while it lives; zenoh removes it
when the transport closes or its process dies (within its lease, 10 s by default, at once when the
process's links close). A token's key is::

    [<domain>/]@wrapyfi_like/<kind>/<base64url(JSON {"topic": ..., "info": {...}})>

``@wrapyfi_like`` is a verbatim chunk: zenoh matches it only literally, so no user subscriber or
wildcard (``**``) ever sees our tokens, and user topics (which cannot start with ``@``) never
collide with them. The domain prefix is the one data keys get (none for domain 0), so a listing
shows only its own domain. The topic and the participant's info (class name, data type, pid,
host, zenoh id) travel encoded in one chunk, because a topic chunk starting with ``@`` would be
verbatim too and hide the token from the listing.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any, NamedTuple, Optional

from wrapyfi_like.logs import RateLimitedLog
from wrapyfi_like.middlewares.zenoh.session import zenoh_module

logger = logging.getLogger("wrapyfi_like.zenoh.presence")
_log = RateLimitedLog(logger)

PREFIX = "@wrapyfi_like"
KINDS = ("publisher", "listener", "server")
MAX_TOKEN_TEXT = 4096
"""Longest encoded chunk read back from a token; a longer one (not ours) is skipped."""


class Presence(NamedTuple):
    """One live participant as its token tells it."""

    kind: str
    topic: str
    info: dict


def prefix(domain: int) -> str:
    return PREFIX if domain == 0 else f"{domain}/{PREFIX}"


def token_key(domain: int, kind: str, topic: str, info: Optional[dict], zid: str) -> str:
    """The liveliness key announcing ``kind`` on ``topic`` with ``info`` (plus pid, host, zid)."""
    described = {**(info or {}), "pid": os.getpid(), "host": socket.gethostname(), "zid": zid,
                 "id": uuid.uuid4().hex[:12]}  # two participants of one topic and process differ
    text = json.dumps({"topic": topic, "info": described}, separators=(",", ":"), default=str)
    chunk = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
    return f"{prefix(domain)}/{kind}/{chunk}"


def declare(zenoh_session: Any, domain: int, kind: str, topic: str, info: Optional[dict]) -> Any:
    """Declare the token of one transport on its zenoh session; the caller undeclares it on close."""
    key = token_key(domain, kind, topic, info, str(zenoh_session.zid()))
    return zenoh_session.liveliness().declare_token(key)


def parse(key: str, domain: int) -> Optional[Presence]:
    """The participant a token key describes, or None (logged) if it is not one of ours."""
    head = prefix(domain) + "/"
    kind, _, chunk = key[len(head):].partition("/") if key.startswith(head) else ("", "", "")
    try:
        if kind not in KINDS or not chunk or len(chunk) > MAX_TOKEN_TEXT:
            raise ValueError("not a wrapyfi_like token")
        value = json.loads(base64.urlsafe_b64decode(chunk + "=" * (-len(chunk) % 4)))
        topic, info = value["topic"], value["info"]
        if not isinstance(topic, str) or not isinstance(info, dict):
            raise ValueError("topic or info of the wrong type")
    except (ValueError, KeyError, TypeError) as error:
        _log.warning("token", "malformed", "skipped a liveliness token that is not a wrapyfi_like "
                     "announcement: %s", error)
        return None
    return Presence(kind, topic, info)


def wait_for_peer(zenoh_session: Any, timeout: float) -> bool:
    """Wait until the session has a link to another peer or a router; False after ``timeout``.

    Zenoh has no event for a new link in Python, so the session's link list is checked every
    10 ms until the deadline.
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        info = zenoh_session.info
        if list(info.peers_zid()) or list(info.routers_zid()):
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        pause.wait(min(0.01, left))



class Watch:
    """The live participants of ``domain``, kept up to date from zenoh's liveliness tokens.

    Zenoh has no directory to ask: a token reaches a session once it has a link to the token's
    owner (gossip links every peer of a host within moments of the first one), and the tokens that
    existed before arrive then too (``history``). So a listing is what a watch heard so far.
    """

    def __init__(self, zenoh_session: Any, domain: int) -> None:
        self.session = zenoh_session
        self._put = zenoh_module().SampleKind.PUT
        self._domain = domain
        self._lock = threading.Lock()
        self._live: dict[str, Presence] = {}
        # indirect=False: the default runs the callback on a non-daemon thread that Python joins at
        # exit before atexit closes the session, so Ctrl-C would not end the process
        self._subscriber = zenoh_session.liveliness().declare_subscriber(
            f"{prefix(domain)}/**", zenoh_module().handlers.Callback(self._on_sample, indirect=False), history=True)

    def _on_sample(self, sample: Any) -> None:
        key = str(sample.key_expr)
        with self._lock:
            if sample.kind != self._put:
                self._live.pop(key, None)
                return
        presence = parse(key, self._domain)
        if presence is not None:
            with self._lock:
                self._live[key] = presence

    def snapshot(self) -> list[Presence]:
        with self._lock:
            return list(self._live.values())

    def close(self) -> None:
        try:
            self._subscriber.undeclare()
        except Exception as error:  # already gone with its session
            logger.debug("presence watch: undeclare: %s", error)
