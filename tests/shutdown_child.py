"""A process that blocks in one of wrapyfi_like's waits, for tests/test_threads_shutdown.py.

``python shutdown_child.py CASE TOPIC [catch] [stray]``. For a blocking CASE it prints ``blocked``
once its main thread is inside a ZeroMQ wait (seen from a watcher thread, so the test can send
SIGINT at that moment); with ``catch`` it catches KeyboardInterrupt and prints ``interrupted``.
With ``stray`` the watcher thread, which does not block signals, then sends SIGINT to itself: a
Ctrl-C that the kernel gave to a thread other than the main one (as it may, to OpenBLAS's). The
``exit_*`` cases leave unsent messages behind and return, printing ``returning`` first.
"""

import signal
import sys
import threading
import time

import numpy as np

from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.connect.wrapper import MiddlewareCommunicator

# Ctrl-C raises KeyboardInterrupt, as in any program started from a terminal, even when the test
# run inherited SIGINT ignored (a shell starts background jobs so: `make test &`, nohup): Python
# keeps an inherited SIG_IGN, and every Ctrl-C test would see a child that hangs.
signal.signal(signal.SIGINT, signal.default_int_handler)

CASE, TOPIC = sys.argv[1], sys.argv[2]
CATCH, STRAY = "catch" in sys.argv[3:], "stray" in sys.argv[3:]
MEGABYTE = np.zeros(1 << 20, np.uint8)


class Node(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Node", "$topic", should_wait=True,
                                     publisher_kwargs=dict(queue_depth=1), listener_kwargs=dict(request_timeout=None))
    def blocking(self, topic, value=None):
        return value,

    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Node", "$topic", should_wait=True,
                                     publisher_kwargs=dict(backpressure="$policy", queue_depth=1))
    def leaving(self, topic, policy, value=None):
        return value,


def in_zeromq_wait(code) -> bool:
    """A poll, a wait for libzmq to release a sent buffer (pyzmq's MessageTracker), or a
    listener's blocking receive (a wait on its intake's queue)."""
    return ((code.co_name in ("poll", "select", "wait") and "zmq" in code.co_filename)
            or (code.co_name == "receive" and code.co_filename.endswith("intake.py")))


def report_when_blocked() -> None:
    """Print ``blocked`` once the main thread waits inside ZeroMQ (a condition, not a guess)."""
    main = threading.main_thread().ident
    while True:
        frame = sys._current_frames().get(main)
        while frame is not None:
            if in_zeromq_wait(frame.f_code):
                print("blocked", flush=True)
                if STRAY:
                    signal.pthread_kill(threading.get_ident(), signal.SIGINT)
                return
            frame = frame.f_back
        time.sleep(0.005)


def block() -> None:
    node = Node()
    unread = None
    if CASE == "publish_full":
        unread = Listener("Unread", TOPIC, carrier="ipc", queue_depth=1)  # never read
    node.activate_communication(Node.blocking, {"listen": "listen", "publish_wait": "publish",
                                                "publish_full": "publish", "request": "request"}[CASE])
    threading.Thread(target=report_when_blocked, daemon=True).start()
    while True:
        node.blocking(TOPIC, MEGABYTE)


def leave_unsent() -> None:
    unread = Listener("Unread", TOPIC, queue_depth=1)  # never read
    node = Node()
    node.activate_communication(Node.leaving, "publish")
    for _ in range(20):
        node.leaving(TOPIC, CASE.removeprefix("exit_"), MEGABYTE)
    print("returning", flush=True)


if CASE.startswith("exit_"):
    leave_unsent()
elif CATCH:
    try:
        block()
    except KeyboardInterrupt:
        print("interrupted", flush=True)
else:
    block()
