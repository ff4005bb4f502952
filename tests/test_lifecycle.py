"""An instance's communicators end with it: close() from any thread wakes its calls, a collected
instance withdraws its announcements, close_instance() closes one instance by address."""

import gc
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.connect.wrapper import MiddlewareCommunicator
from wrapyfi_like.exceptions import ClosedError
from wrapyfi_like.testing import inproc_middleware

pytestmark = pytest.mark.timeout(60)

WAKE_BOUND = 0.5
"""Seconds within which close() must end a call waiting in another thread (issue 17.7)."""


class Node(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Node", "$topic", should_wait=True,
                                     publisher_kwargs=dict(queue_depth=1))
    def exchange(self, topic, value=None):
        return value,

    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Node", "$topic", should_wait=False)
    def poll(self, topic):
        return None,

    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Node", "$0", should_wait=True)
    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Node", "$1", should_wait=True)
    def pair(self, first_topic, second_topic, value=None):
        return value, value


@pytest.fixture(autouse=True)
def in_memory():
    with inproc_middleware() as bus:
        yield bus
    MiddlewareCommunicator.close_all_instances()


def seconds_to_wake(call, close, started: threading.Event) -> float:
    """Run ``call`` in a thread, close once it waits, and return how long it took to end with
    ClosedError after the close."""
    outcome = []
    ended = threading.Event()

    def run():
        started.wait()
        try:
            call()
            outcome.append("returned")
        except ClosedError:
            outcome.append("closed")
        ended.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.set()
    wait_until_waiting(thread)
    closed_at = time.monotonic()
    close()
    assert ended.wait(10), "the call never ended"
    assert outcome == ["closed"]
    return time.monotonic() - closed_at


def wait_until_waiting(thread: threading.Thread, timeout: float = 10.0) -> None:
    """Return once ``thread`` waits on a condition (its call is blocked inside the middleware)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = sys._current_frames().get(thread.ident)
        while frame is not None:
            if frame.f_code.co_name == "wait" and "threading" in frame.f_code.co_filename \
                    and frame.f_back is not None and "wrapyfi_like" in frame.f_back.f_code.co_filename:
                return
            frame = frame.f_back
        time.sleep(0.002)  # polling a condition with a deadline, not waiting a fixed time
    pytest.fail("the call never started waiting")


@pytest.mark.parametrize("mode", ["listen", "publish_waiting_for_a_listener", "publish_into_a_full_queue",
                                  "stacked_listen"])
def test_close_from_another_thread_wakes_a_waiting_call_within_half_a_second(topic, mode):
    node = Node()
    if mode == "listen":
        node.activate_communication(Node.exchange, "listen")
        call = lambda: node.exchange(topic)
    elif mode == "publish_waiting_for_a_listener":
        node.activate_communication(Node.exchange, "publish")
        call = lambda: node.exchange(topic, 1)
    elif mode == "publish_into_a_full_queue":
        Listener("Unread", topic)  # exists, never reads
        node.activate_communication(Node.exchange, "publish")
        node.exchange(topic, 0)  # fills its queue (queue_depth=1)
        call = lambda: node.exchange(topic, 1)
    else:
        node.activate_communication(Node.pair, "listen")
        call = lambda: node.pair(topic + "/a", topic + "/b")
    assert seconds_to_wake(call, node.close, threading.Event()) < WAKE_BOUND


def test_close_instance_closes_the_instance_at_that_address_only(topic):
    first, second = Node(), Node()
    for node in (first, second):
        node.activate_communication(Node.exchange, "listen")
    MiddlewareCommunicator.close_instance(hex(id(first)))
    assert first.exchange(topic, "runs") == ("runs",)  # closed: the method runs normally again
    assert "exchange" in second.stats()
    with pytest.raises(ValueError, match="no open MiddlewareCommunicator"):
        MiddlewareCommunicator.close_instance("0x0")
    MiddlewareCommunicator.close_instance()  # None: every instance, as in Wrapyfi
    assert second.stats() == {}


def test_a_collected_instance_closes_its_communicators(topic, in_memory):
    node = Node()
    node.activate_communication(Node.poll, "listen")
    assert node.poll(topic) == [None]  # builds its listener
    assert in_memory.topics() == [topic]
    del node
    gc.collect()
    assert in_memory.topics() == []  # its listener left the bus with it


CHILD = """
import gc, json, sys, time
from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.connect.wrapper import MiddlewareCommunicator
from wrapyfi_like.middlewares.zeromq.discovery import list_directory

TOPIC = sys.argv[1]

class Node(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Node", TOPIC, should_wait=False)
    def exchange(self, value=None):
        return value,

def listed():
    return any(TOPIC in entry.key for entry in list_directory())

def becomes(expected):
    deadline = time.monotonic() + 10
    while listed() != expected and time.monotonic() < deadline:
        time.sleep(0.02)  # polling the directory with a deadline: announcements sync asynchronously
    return listed()

node = Node()
node.activate_communication(Node.exchange, "listen")
node.exchange()  # builds the listener, which announces itself
report = {"listed_while_alive": becomes(True)}
del node
gc.collect()
report["listed_after_collection"] = becomes(False)
print(json.dumps(report), flush=True)
"""


def test_a_garbage_collected_instance_withdraws_its_listener_from_discovery(topic):
    """Over ZeroMQ, in a process of its own: after ``del instance; gc.collect()`` the directory no
    longer lists its listener (before, it kept its announcement until the process ended)."""
    result = subprocess.run([sys.executable, "-c", CHILD, topic], capture_output=True, text=True, timeout=45,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {"listed_while_alive": True,
                                                          "listed_after_collection": False}
