"""Shared test set-up.

Every test session gets a discovery directory address of its own (inherited by the processes it
starts), so concurrent test runs on one machine, or a demo left running, never see each other's
topics.
"""

import os
import socket
import uuid

import pytest


def _free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


os.environ["WRAPYFI_ZEROMQ_DISCOVERY"] = f"tcp://127.0.0.1:{_free_tcp_port()}"
os.environ.pop("WRAPYFI_PLUGIN_PATHS", None)


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses."""
    return f"/test/{uuid.uuid4().hex[:12]}"
