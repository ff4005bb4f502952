"""Which system a command looks at: ``--mware zeromq`` (the default) or ``--mware zenoh``.

A :class:`System` answers the one question the tools ask besides joining a topic: who is on which
topic. ZeroMQ asks its discovery directory; zenoh has no directory, so it watches the liveliness
tokens every zenoh publisher, listener and server declares
(:mod:`wrapyfi_like.middlewares.zenoh.presence`) and lists what it heard.
"""

from __future__ import annotations

import argparse
import threading
import time

from wrapyfi_like.cli.directory import Participant, participants
from wrapyfi_like.exceptions import WaitTimeout

MWARES = ("zeromq", "zenoh")


def add_mware_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mware", choices=MWARES, default="zeromq",
                        help="the middleware whose topics to use (default zeromq)")


class System:
    """Who is on which topic in the system of one middleware; :meth:`close` when done."""

    def describe(self) -> str:
        """One line naming the system asked, so a user who sees nothing knows where they looked."""
        raise NotImplementedError

    def participants(self, timeout: float) -> dict[str, list[Participant]]:
        """Topic → its participants, sorted; :class:`WaitTimeout` if nobody answers within ``timeout``."""
        raise NotImplementedError

    def host(self) -> None:
        """Make sure participants announced later are found (``record --all``)."""

    def close(self) -> None:
        """Let go of what the system held open."""


class ZeroMQSystem(System):
    def describe(self) -> str:
        from wrapyfi_like.middlewares.zeromq.settings import ZeroMQSettings

        settings = ZeroMQSettings.from_environment()
        return f"domain {settings.domain} (discovery {settings.discovery})"

    def participants(self, timeout: float) -> dict[str, list[Participant]]:
        from wrapyfi_like.middlewares.zeromq.discovery import list_directory

        return participants(list_directory(timeout=timeout))

    def host(self) -> None:
        from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent

        NodeAgent.get()  # host a directory if none runs yet, so topics announced later are found


class ZenohSystem(System):
    """The first listing waits for a link to a peer or router, then listens to liveliness for the
    rest of ``timeout``; later listings return at once with what the watch heard since."""

    def __init__(self) -> None:
        from wrapyfi_like.middlewares.zenoh.presence import Watch
        from wrapyfi_like.middlewares.zenoh.session import current_session

        session = current_session()
        self._domain = session.domain
        self._watch = Watch(session.shared(), session.domain)
        self._listened = False

    def describe(self) -> str:
        from wrapyfi_like.middlewares.zenoh import settings

        entries = settings.entries()
        return (f"domain {self._domain} (zenoh {entries['mode']}, connect "
                f"{', '.join(entries['connect/endpoints'])})")

    def participants(self, timeout: float) -> dict[str, list[Participant]]:
        from wrapyfi_like.middlewares.zenoh.presence import wait_for_peer

        if not self._listened:
            deadline = time.monotonic() + timeout
            if not wait_for_peer(self._watch.session, timeout):
                raise WaitTimeout(f"no zenoh peer or router reachable within {timeout:g} s")
            threading.Event().wait(max(0.0, deadline - time.monotonic()))  # tokens of peers that gossip links
            self._listened = True
        by_topic: dict[str, list[Participant]] = {}
        for presence in self._watch.snapshot():
            endpoint = f"zenoh {presence.info.get('zid', '?')}"
            by_topic.setdefault(presence.topic, []).append(
                Participant(presence.kind, presence.topic, endpoint, presence.info))
        return {topic: sorted(by_topic[topic], key=lambda p: (p.kind, p.endpoint, str(p.info.get("id"))))
                for topic in sorted(by_topic)}

    def close(self) -> None:
        self._watch.close()


def system(mware: str) -> System:
    return ZenohSystem() if mware == "zenoh" else ZeroMQSystem()

