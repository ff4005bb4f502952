"""A process that uses every kind of background thread wrapyfi_like starts, then reports which
of its threads would take a SIGINT, for tests/test_signals_main_thread.py.

``python signal_threads_child.py TOPIC`` prints one JSON object: thread name → whether that
thread blocks SIGINT, for every thread of the process but the main one.
"""

import json
import os
import signal
import sys
import threading
from typing import Optional

import numpy as np

from wrapyfi_like.connect.wrapper import MiddlewareCommunicator

TOPIC = sys.argv[1]
SIGINT_BIT = 1 << (signal.SIGINT - 1)


class Node(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Node", TOPIC + "/block", should_wait=True)
    def blocking(self, value=None):
        return value,

    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Node", TOPIC + "/latest", should_wait=True,
                                     publisher_kwargs=dict(backpressure="latest", queue_depth=1),
                                     listener_kwargs=dict(queue_depth=1))
    def latest(self, value=None):
        return value,

    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Node", TOPIC + "/service")
    def service(self, value=None):
        return value,

    @MiddlewareCommunicator.register("NativeObject", "zenoh", "Node", TOPIC + "/zenoh", should_wait=True)
    def over_zenoh(self, value=None):
        return value,


def blocks_sigint(thread_id: int) -> Optional[bool]:
    """Whether that thread blocks SIGINT; None if it has ended meanwhile."""
    try:
        with open(f"/proc/self/task/{thread_id}/status") as status:
            fields = dict(line.split(":", 1) for line in status)
    except FileNotFoundError:
        return None
    return bool(int(fields["SigBlk"], 16) & SIGINT_BIT)


def thread_name(thread_id: int) -> str:
    """Python's name for a Python thread, else the operating system's (libzmq's, zenoh's)."""
    for thread in threading.enumerate():
        if thread.native_id == thread_id:
            return f"{thread.name} {type(thread).__name__}"
    try:
        with open(f"/proc/self/task/{thread_id}/comm") as comm:
            return comm.read().strip()
    except FileNotFoundError:
        return "(ended)"


def start_own_thread(target) -> threading.Thread:
    """A thread of this script's (not the library's): it does not block signals, and is left out."""
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    OWN_THREADS.add(thread.native_id)
    return thread


OWN_THREADS = {threading.main_thread().native_id}


def main() -> None:
    senders, receivers, server = Node(), Node(), Node()
    for method in (Node.blocking, Node.latest, Node.over_zenoh):
        receivers.activate_communication(method, "listen")
        senders.activate_communication(method, "publish")
    server.activate_communication(Node.service, "reply")
    senders.activate_communication(Node.service, "request")
    megabyte = np.ones(1 << 20, np.uint8)
    # pyzmq's frame collector: started by a CURVE publisher (its libzmq outlets send zero-copy); ours write
    # ZMTP themselves and never start it, so it is started here as such a publisher would
    from wrapyfi_like.middlewares.zeromq.publisher import _start_frame_collector
    _start_frame_collector()
    for method in (Node.blocking, Node.latest, Node.over_zenoh):
        done = start_own_thread(getattr(receivers, method.__name__))
        while done.is_alive():
            getattr(senders, method.__name__)(megabyte)
            done.join(0.05)
    for _ in range(20):  # unread by a listener with room for one: the newest is held, its flusher starts
        senders.latest(megabyte)
    serving = start_own_thread(server.service)
    reply = senders.service(7)
    assert reply == [7], reply
    serving.join(10)
    names = {}
    for task in map(int, os.listdir("/proc/self/task")):
        if task not in OWN_THREADS and (blocked := blocks_sigint(task)) is not None:
            names[f"{thread_name(task)} ({task})"] = blocked
    print(json.dumps(names), flush=True)
    MiddlewareCommunicator.close_all_instances()


main()
