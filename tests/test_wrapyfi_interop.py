"""Wrapyfi's wire, live: our nodes and unmodified Wrapyfi 0.5.0 nodes in separate processes.

Each node runs the same script with only the import line changed (``from wrapyfi.connect...`` or
``from wrapyfi_like.connect...``), the migration this wire exists for; our side is switched with
``WRAPYFI_LIKE_WIRE=wrapyfi`` and no code change. Every test picks its own free ports, given to
both sides through Wrapyfi's variables, so parallel runs do not meet. Waits are for a line a child
prints or for a condition, each bounded.

What Wrapyfi itself gets wrong, and the tests say so where it shows:

- its listener's ``listen()`` returns None at once when nothing is queued, even with
  ``should_wait=True``, so the Wrapyfi listener script polls it;
- its encoder marks tuples only at the top level and inside lists and dicts: a tuple inside a tuple
  arrives as a list (ours marks every tuple, and Wrapyfi's decoder reads them);
- its request/reply device ignores topics, and its clients wait for ever (no timeout).
"""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import zmq

pytest.importorskip("wrapyfi", reason="the bench extra installs wrapyfi==0.5.0")

from wrapyfi_like.connect.wrapper import MiddlewareCommunicator  # noqa: E402
from wrapyfi_like.exceptions import ConfigurationError  # noqa: E402
from wrapyfi_like.middlewares import middleware_module  # noqa: E402
from wrapyfi_like.middlewares.wrapyfi_zeromq import WireSession  # noqa: E402
from wrapyfi_like.middlewares.wrapyfi_zeromq.pubsub import (  # noqa: E402
    WrapyfiListenerTransport, WrapyfiPublisherTransport,
)

VALUES = '''
import datetime
import numpy as np


def value(i, kind):
    if kind == "image":
        return np.full((4, 6, 3), i, np.uint8)
    return {"i": i, "t": (1, (2, "x")), "s": {3}, "when": datetime.datetime(2025, 1, 2, 3, 4, 5),
            "arr": (np.arange(6).reshape(2, 3) + i).astype(">i4"), "f": [0.5, None, "a"]}


def describe(v):
    if isinstance(v, np.ndarray):
        return {"ndarray": [v.dtype.str, list(v.shape), v.tolist()]}
    if isinstance(v, tuple):
        return {"tuple": [describe(x) for x in v]}
    if isinstance(v, (set, frozenset)):
        return {"set": sorted(v)}
    if isinstance(v, datetime.datetime):
        return {"datetime": v.isoformat()}
    if isinstance(v, dict):
        return {"dict": {k: describe(x) for k, x in v.items()}}
    if isinstance(v, list):
        return [describe(x) for x in v]
    return v
'''

NODE = VALUES + '''
import json
import sys
import threading

from PACKAGE.connect.wrapper import MiddlewareCommunicator

ROLE, TOPIC, COUNT, KIND = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
IMAGE = dict(width=6, height=4, rgb=True) if KIND == "image" else {}


def say(*words):
    print(*words, flush=True)


class Node(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("Image" if KIND == "image" else "NativeObject", "zeromq", "Node", TOPIC,
                                     should_wait=True, **IMAGE)
    def exchange(self, v):
        return v,

    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Node", TOPIC)
    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Node", TOPIC + "/2")
    def add(self, a, b=0):
        return {"sum": a + b, "t": (a, b), "arr": np.arange(3, dtype=np.uint8)}, [a, b]


node = Node()
if ROLE == "pub":
    node.activate_communication(Node.exchange, "publish")
    say("publishing")
    for i in range(COUNT):
        node.exchange(value(i, KIND))
        say("sent", i)
    sys.stdin.readline()  # this process may host the broker: stay until the test has heard everything
elif ROLE == "sub":
    node.activate_communication(Node.exchange, "listen")
    say("listening")
    pause = threading.Event()
    for _ in range(COUNT):
        got = None
        while got is None:
            got, = node.exchange(None)
            if got is None:  # Wrapyfi's listen() returns None at once when nothing is queued: poll it
                pause.wait(0.005)
        say("got", json.dumps(describe(got), sort_keys=True))
elif ROLE == "server":
    node.activate_communication(Node.add, "reply")
    say("serving")
    for _ in range(COUNT):
        node.add(0)
        say("served")
    sys.stdin.readline()  # this process hosts the device
elif ROLE == "client":
    node.activate_communication(Node.add, "request")
    say("requesting")
    for i in range(COUNT):
        say("got", json.dumps(describe(node.add(i, b=2)), sort_keys=True))
'''

COUNT = 3
LINE_TIMEOUT = 30.0
_values: dict = {}
exec(VALUES, _values)  # the values and their description, as the children make them


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Child:
    """A node process; its stdout lines arrive on a queue, read by a thread."""

    def __init__(self, script: Path, args: list, env: dict, log: Path) -> None:
        self._log = open(log, "w")
        self.proc = subprocess.Popen([sys.executable, str(script), *map(str, args)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, text=True, env=env)
        self.log = log
        self.lines: "queue.Queue[str]" = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, prefix: str) -> str:
        deadline = time.monotonic() + LINE_TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {prefix!r} line within {LINE_TIMEOUT} s; stderr:\n"
                                     f"{self.log.read_text()[-3000:]}") from None
            if line.startswith(prefix):
                return line[len(prefix):].strip()

    def stop(self) -> None:
        """End the node: what it had to show was checked already, and Wrapyfi's exit is slow."""
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.proc.stdin.close()
        self._log.close()


@pytest.fixture
def nodes(tmp_path):
    """Start nodes: ``start("wrapyfi" | "ours", role, topic, kind, **env)``; all stopped at the end."""
    scripts = {}
    for package, name in (("wrapyfi", "wrapyfi"), ("ours", "wrapyfi_like")):
        scripts[package] = tmp_path / f"{package}_node.py"
        scripts[package].write_text(NODE.replace("PACKAGE", name))
    children = []
    lock = threading.Lock()

    def start(package: str, role: str, topic: str, kind: str = "native", **env: str) -> Child:
        environment = {**os.environ, **env,
                       # Wrapyfi's broker and monitor in threads, so they end with the child
                       "WRAPYFI_ZEROMQ_PROXY_BROKER_SPAWN": "thread",
                       "WRAPYFI_ZEROMQ_PUBSUB_MONITOR_LISTENER_SPAWN": "thread"}
        if package == "ours":
            environment["WRAPYFI_LIKE_WIRE"] = "wrapyfi"
        with lock:
            log = tmp_path / f"{package}-{role}-{len(children)}.log"
            children.append(child := Child(scripts[package], [role, topic, COUNT, kind], environment, log))
        return child

    yield start
    for child in children:
        child.stop()


def expected(i: int, kind: str, sender: str) -> str:
    description = json.dumps(_values["describe"](_values["value"](i, kind)), sort_keys=True)
    if sender == "wrapyfi":  # Wrapyfi's encoder sends a tuple inside a tuple as a list
        description = description.replace('{"tuple": [2, "x"]}', '[2, "x"]')
    return description


def pubsub_env() -> dict:
    pub, sub = free_ports(2)
    return {"WRAPYFI_ZEROMQ_SOCKET_PUB_PORT": str(pub), "WRAPYFI_ZEROMQ_SOCKET_SUB_PORT": str(sub)}


PAIRS = [("wrapyfi", "ours"), ("ours", "wrapyfi"), ("ours", "ours")]


def concurrently(*scenarios) -> None:
    """Run independent scenarios (each on its own ports) at once: a Wrapyfi process spends
    seconds importing and waiting in its own sleeps, so they overlap well; any failure is raised."""
    with ThreadPoolExecutor(len(scenarios)) as pool:
        for future in [pool.submit(scenario) for scenario in scenarios]:
            future.result()


def pubsub(nodes, publisher: str, listener: str, first: str, kind: str = "native") -> Callable[[], None]:
    def scenario() -> None:
        env = pubsub_env()
        topic = f"/interop/{kind}/{publisher}-{listener}-{first}"
        if first == "publisher":
            pub = nodes(publisher, "pub", topic, kind, **env)
            pub.expect("publishing")  # waiting for a listener (should_wait)
            sub = nodes(listener, "sub", topic, kind, **env)
        else:
            sub = nodes(listener, "sub", topic, kind, **env)
            sub.expect("listening")
            pub = nodes(publisher, "pub", topic, kind, **env)
        for i in range(COUNT):
            assert sub.expect("got") == expected(i, kind, publisher), (publisher, listener, first)
        pub.expect(f"sent {COUNT - 1}")
    return scenario


@pytest.mark.timeout(90)
@pytest.mark.parametrize("publisher,listener", PAIRS)
def test_pubsub_both_start_orders(nodes, publisher, listener):
    """Every message arrives, whichever side starts first (the other starts once the first
    prints that it is publishing, blocked in should_wait, or listening)."""
    concurrently(pubsub(nodes, publisher, listener, "publisher"), pubsub(nodes, publisher, listener, "listener"))


@pytest.mark.timeout(90)
def test_image_both_directions(nodes):
    concurrently(pubsub(nodes, "wrapyfi", "ours", "listener", "image"),
                 pubsub(nodes, "ours", "wrapyfi", "listener", "image"))


def _reply(a: int, b: int) -> str:
    return json.dumps([{"dict": {"arr": {"ndarray": ["|u1", [3], [0, 1, 2]]}, "sum": a + b,
                                 "t": {"tuple": [a, b]}}}, [a, b]], sort_keys=True)


def request_reply(nodes, server: str, client: str, first: str) -> Callable[[], None]:
    def scenario() -> None:
        router, dealer = free_ports(2)
        server_env = {"WRAPYFI_ZEROMQ_SOCKET_REQ_PORT": str(router), "WRAPYFI_ZEROMQ_SOCKET_REP_PORT": str(dealer)}
        client_env = {"WRAPYFI_ZEROMQ_SOCKET_REP_PORT": str(router)}
        topic = f"/interop/rr/{server}-{client}-{first}"
        if first == "server":
            srv = nodes(server, "server", topic, **server_env)
            srv.expect("serving")
            cli = nodes(client, "client", topic, **client_env)
        else:
            cli = nodes(client, "client", topic, **client_env)
            cli.expect("requesting")
            srv = nodes(server, "server", topic, **server_env)
        for i in range(COUNT):
            assert cli.expect("got") == _reply(i, 2), (server, client, first)
        srv.expect("served")
    return scenario


@pytest.mark.timeout(90)
@pytest.mark.parametrize("server,client", PAIRS)
def test_request_reply_both_start_orders(nodes, server, client):
    """Two stacked returns: Wrapyfi makes two round trips per call, and so do we on its wire.
    Wrapyfi names the device's ports by role: the server's ROUTER is ``…_REQ_PORT`` and its DEALER
    ``…_REP_PORT``, while a client's ``…_REP_PORT`` is the ROUTER. A client started first waits
    for the device (Wrapyfi's for ever, ours within its request_timeout)."""
    concurrently(request_reply(nodes, server, client, "server"), request_reply(nodes, server, client, "client"))
