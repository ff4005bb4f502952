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


def blocks_sigint(thread_id: int) -> bool:
    with open(f"/proc/self/task/{thread_id}/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return bool(int(fields["SigBlk"], 16) & SIGINT_BIT)


def thread_name(thread_id: int) -> str:
    """Python's name for a Python thread, else the operating system's (libzmq's, zenoh's)."""
    for thread in threading.enumerate():
        if thread.native_id == thread_id:
            return f"{thread.name} {type(thread).__name__}"
    with open(f"/proc/self/task/{thread_id}/comm") as comm:
        return comm.read().strip()


def main() -> None:
    senders, receivers, server = Node(), Node(), Node()
    for method in (Node.blocking, Node.latest, Node.over_zenoh):
        receivers.activate_communication(method, "listen")
        senders.activate_communication(method, "publish")
    server.activate_communication(Node.service, "reply")
    senders.activate_communication(Node.service, "request")
    megabyte = np.ones(1 << 20, np.uint8)  # sent zero-copy: pyzmq's frame collector starts
    for method in (Node.blocking, Node.latest, Node.over_zenoh):
        done = threading.Thread(target=lambda: receivers.__getattribute__(method.__name__)(), daemon=True)
        done.start()
        while done.is_alive():
            getattr(senders, method.__name__)(megabyte)
            done.join(0.05)
    for _ in range(20):  # unread by a listener with room for one: the newest is held, its flusher starts
        senders.latest(megabyte)
    serving = threading.Thread(target=server.service, daemon=True)
    serving.start()
    reply = senders.service(7)
    assert reply == [7], reply
    serving.join(10)
    main_id = threading.main_thread().native_id
    names = {}
    for task in os.listdir("/proc/self/task"):
        if int(task) != main_id and int(task) != threading.get_native_id():
            try:
                names[f"{thread_name(int(task))} ({task})"] = blocks_sigint(int(task))
            except FileNotFoundError:
                continue  # it ended since the listing (a finished listen's thread): it takes no signal
    print(json.dumps(names), flush=True)
    MiddlewareCommunicator.close_all_instances()


main()
