"""Shared test set-up.

Every test session gets a discovery directory address and a zenoh rendezvous port of its own
(inherited by the processes it starts), so concurrent test runs on one machine, or a demo left
running, never see each other's topics.
"""

import os
import threading
import uuid
from concurrent.futures import Future

import pytest

from wrapyfi_like.middlewares.ports import free_port


os.environ["WRAPYFI_ZEROMQ_DISCOVERY"] = f"tcp://127.0.0.1:{free_port()}"
os.environ["WRAPYFI_ZENOH_PORT"] = str(free_port())
os.environ.pop("WRAPYFI_PLUGIN_PATHS", None)


@pytest.fixture
def private_discovery() -> dict:
    """Environment for node processes that share a discovery directory of their own, so the
    directory's host is always one of them and never the test process."""
    return {"WRAPYFI_ZEROMQ_DISCOVERY": f"tcp://127.0.0.1:{free_port()}"}


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses."""
    return f"/test/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def in_thread():
    """Run a function on a daemon thread and get a Future of its result.

    In one process, a publisher that waits for a listener must not be the thread that would later
    serve that listener; daemon threads keep a failed test from hanging the run at exit.
    """

    def submit(function) -> Future:
        future: Future = Future()

        def run():
            try:
                future.set_result(function())
            except BaseException as error:
                future.set_exception(error)

        threading.Thread(target=run, daemon=True).start()
        return future

    return submit


@pytest.fixture
def clock():
    """A clock a directory test moves by hand (tests/directory_state.py)."""
    from directory_state import Clock
    return Clock()


@pytest.fixture
def warm(clock):
    """A discovery directory past its warm-up, on ``clock``."""
    from wrapyfi_like.middlewares.zeromq.discovery.directory import ENTRY_TTL, Directory
    directory = Directory("", clock)
    clock.now += ENTRY_TTL + 0.1
    return directory
