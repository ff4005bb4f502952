"""The zenoh sessions of one process, and the one place that imports zenoh.

``eclipse-zenoh`` is an optional extra: :func:`zenoh_module` imports it when a zenoh transport is
built, so ``import wrapyfi_like`` never loads it and a missing extra is a
:class:`ConfigurationError` that names it, raised at construction.

A :class:`ZenohSession` holds one shared zenoh session (publishers, servers, clients) and opens a
session of its own for every listener. Why: zenoh delivers a link's messages in order on one
task, so a listener whose queue is full stops every other subscriber of the same session from
receiving anything from that peer (measured: the other topic got 1 of 200 messages). With a
session per listener, a slow listener only holds back the publishers sending to it, as a
ZeroMQ SUB socket does.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from types import ModuleType
from typing import Any, Optional

from wrapyfi_like.background import signals_blocked
from wrapyfi_like.exceptions import ConfigurationError, TransportError, map_exceptions
from wrapyfi_like.middlewares.ports import free_port
from wrapyfi_like.middlewares.zenoh import settings

logger = logging.getLogger("wrapyfi_like.zenoh")

EXTRA = "from the wrapyfi_like checkout: pip install -c constraints.txt -e '.[zenoh]'"


RX_WORKERS = 16
"""Threads zenoh receives with (its default is 2). A listener whose inbox is full holds one of them
until it has room (that is how "block" pushes back), so with zenoh's default two full listeners
would stop every other listener of the process. Set ``ZENOH_RUNTIME`` yourself to choose."""


def zenoh_module() -> ModuleType:
    """The ``zenoh`` module, or :class:`ConfigurationError` naming the extra that provides it."""
    os.environ.setdefault("ZENOH_RUNTIME", f"(rx: (worker_threads: {RX_WORKERS}))")  # read at zenoh's first use
    try:
        import zenoh
    except ImportError as error:
        raise ConfigurationError(
            f"the zenoh middleware needs eclipse-zenoh, which is not installed: {EXTRA}") from error
    return zenoh


def errors() -> dict[type[BaseException], type[Exception]]:
    """The mapping for :func:`~wrapyfi_like.exceptions.map_exceptions`: zenoh's one error type."""
    return {zenoh_module().ZError: TransportError}


class ZenohSession:
    """What the zenoh transports of a process share: the configuration and one zenoh session."""

    def __init__(self) -> None:
        self._zenoh = zenoh_module()
        self._lock = threading.Lock()
        self._shared: Optional[Any] = None
        self._closed = False
        self.domain = settings.domain()
        settings.entries()  # a bad environment fails here, at construction
        self._local = f"tcp/127.0.0.1:{free_port()}"

    def open(self) -> Any:
        """A new zenoh session for one listener or publisher, linked to the shared one (the caller closes it)."""
        self.shared()
        return self._open(joining=True)

    def _open(self, joining: bool) -> Any:
        with map_exceptions(errors(), "opening a zenoh session"), signals_blocked():  # zenoh's threads start here
            return self._zenoh.open(settings.config(self._zenoh, self._local, joining))

    def shared(self) -> Any:
        """The process's shared zenoh session, opened on first use."""
        with self._lock:
            if self._closed:
                raise ConfigurationError("the zenoh middleware session is closed")
            if self._shared is None:
                self._shared = self._open(joining=False)
            return self._shared

    def close(self) -> None:
        with self._lock:
            self._closed = True
            shared, self._shared = self._shared, None
        if shared is not None:
            close_quietly(shared, "the shared zenoh session")


def close_quietly(session: Any, what: str) -> None:
    """Close a zenoh session; zenoh may time out closing a busy one, which is logged, not raised."""
    try:
        session.close()
    except Exception as error:  # zenoh.ZError ("close operation timed out") at exit is not the caller's problem
        logger.warning("closing %s: %s", what, error)


_current: Optional[ZenohSession] = None
_current_lock = threading.Lock()


def current_session() -> ZenohSession:
    """The process's :class:`ZenohSession`, created on first use and closed at exit."""
    global _current
    zenoh_module()  # checked on every construction, so a missing extra is always reported
    with _current_lock:
        if _current is None:
            _current = ZenohSession()
            atexit.register(_current.close)
        return _current
