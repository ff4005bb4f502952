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

import importlib.util
import json
import os
import queue
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import pytest
import zmq

if importlib.util.find_spec("wrapyfi") is None:  # not imported here: it takes seconds
    pytest.skip("the bench extra installs wrapyfi==0.5.0", allow_module_level=True)

from wrapyfi_like.middlewares.ports import free_port  # noqa: E402
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

    # request_timeout: a client started first waits for the server's process to start (Wrapyfi's
    # clients, which have no timeout, ignore the keyword, as they ignore every one they do not know)
    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Node", TOPIC, request_timeout=75)
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
# A child's first line comes after its imports: Wrapyfi's import torch alone took over 30 s on a
# loaded two-core machine. The wait ends as soon as the line arrives.
STARTUP_TIMEOUT = 75.0
_values: dict = {}
exec(VALUES, _values)  # the values and their description, as the children make them


def free_ports(n: int) -> list[int]:
    return [free_port() for _ in range(n)]


class Child:
    """A node process; its stdout lines arrive on a queue, read by a thread."""

    def __init__(self, script: Path, args: list, env: dict, log: Path) -> None:
        self._log = open(log, "w")
        self.proc = subprocess.Popen([sys.executable, str(script), *map(str, args)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, text=True, env=env)
        self.log = log
        self.lines: "queue.Queue[str]" = queue.Queue()
        self._started = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, prefix: str) -> str:
        timeout = LINE_TIMEOUT if self._started else STARTUP_TIMEOUT
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {prefix!r} line within {timeout} s; stderr:\n"
                                     f"{self.log.read_text()[-3000:]}") from None
            self._started = True
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


@pytest.mark.timeout(200)
@pytest.mark.parametrize("publisher,listener", PAIRS)
def test_pubsub_both_start_orders(nodes, publisher, listener):
    """Every message arrives, whichever side starts first (the other starts once the first
    prints that it is publishing, blocked in should_wait, or listening); and, between Wrapyfi and
    us, Image frames too."""
    image = [pubsub(nodes, publisher, listener, "listener", "image")] if "wrapyfi" in (publisher, listener) else []
    concurrently(pubsub(nodes, publisher, listener, "publisher"), pubsub(nodes, publisher, listener, "listener"),
                 *image)


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


@pytest.mark.timeout(200)
@pytest.mark.parametrize("server,client", PAIRS)
def test_request_reply_both_start_orders(nodes, server, client):
    """Two stacked returns: Wrapyfi makes two round trips per call, and so do we on its wire.
    Wrapyfi names the device's ports by role: the server's ROUTER is ``…_REQ_PORT`` and its DEALER
    ``…_REP_PORT``, while a client's ``…_REP_PORT`` is the ROUTER. A client started first waits
    for the device (Wrapyfi's for ever, ours within its request_timeout)."""
    concurrently(request_reply(nodes, server, client, "server"), request_reply(nodes, server, client, "client"))


# -- the switch ---------------------------------------------------------------------------------

def test_process_wide_switch_is_validated_and_names_the_variable(monkeypatch):
    from wrapyfi_like.connect.wire import transports

    monkeypatch.setenv("WRAPYFI_LIKE_WIRE", "wrapyfi")
    assert transports("zeromq", None, None)[0].__name__ == "wrapyfi_like.middlewares.wrapyfi_zeromq"
    assert transports("zeromq", "native", None)[0].__name__ == "wrapyfi_like.middlewares.zeromq"
    assert transports("inproc", None, None)[0].__name__ == "wrapyfi_like.middlewares.inproc"  # zeromq only
    # tools that build transports themselves (the CLI) stay on the native wire
    assert middleware_module("zeromq").__name__ == "wrapyfi_like.middlewares.zeromq"
    monkeypatch.setenv("WRAPYFI_LIKE_WIRE", "wrapyfy")
    with pytest.raises(ConfigurationError, match="WRAPYFI_LIKE_WIRE"):
        transports("zeromq", None, None)


def test_wire_keyword_is_checked():
    with pytest.raises(ConfigurationError, match="did you mean 'wire'"):
        class Typo(MiddlewareCommunicator):
            @MiddlewareCommunicator.register("NativeObject", "zeromq", "Typo", "/typo", wrie="wrapyfi")
            def f(self):
                return 1,
    with pytest.raises(ConfigurationError, match="wire= must be one of native, wrapyfi"):
        class BadWire(MiddlewareCommunicator):  # at class definition
            @MiddlewareCommunicator.register("NativeObject", "zeromq", "BadWire", "/bad", wire="wrapyf")
            def f(self):
                return 1,
    with pytest.raises(ConfigurationError, match="of 'zeromq' only"):
        middleware_module("inproc", "wrapyfi")


def test_pickle_opt_in_only_on_wrapyfi_wire():
    from wrapyfi_like.connect.formats import ValueFormat
    with pytest.raises(ConfigurationError, match="Wrapyfi's wire only"):
        ValueFormat("NativeObject", wire="native", wrapyfi_allow_pickle=True)
    assert ValueFormat("NativeObject", wire="wrapyfi", wrapyfi_allow_pickle=True).wire_codec.allow_pickle


# -- our nodes on this wire, in one process --------------------------------------------------------

def test_our_nodes_with_the_kwarg_and_socket_kwargs():
    """``wire="wrapyfi"`` and the ``socket_*`` kwargs (no environment): pub/sub, request/reply
    with two returns, and an error raised by the served method coming back as RemoteError."""
    from wrapyfi_like.exceptions import RemoteError

    pub_port, sub_port, router, dealer = free_ports(4)
    sockets = dict(wire="wrapyfi", socket_pub_port=pub_port, socket_sub_port=sub_port,
                   socket_rep_port=router, socket_req_port=dealer)

    class Node(MiddlewareCommunicator):
        @MiddlewareCommunicator.register("NativeObject", "zeromq", "Node", "/kw/topic", should_wait=True,
                                         wait_timeout=20, **sockets)
        def exchange(self, v):
            return v,

        @MiddlewareCommunicator.register("NativeObject", "zeromq", "Node", "/kw/svc", request_timeout=20, **sockets)
        @MiddlewareCommunicator.register("NativeObject", "zeromq", "Node", "/kw/svc/2", **sockets)
        def add(self, a, b=0):
            if a < 0:
                raise ValueError("negative")
            return a + b, (a, b)

    publisher, listener, server, client = Node(), Node(), Node(), Node()
    publisher.activate_communication(Node.exchange, "publish")
    listener.activate_communication(Node.exchange, "listen")
    server.activate_communication(Node.add, "reply")
    client.activate_communication(Node.add, "request")
    try:
        heard = []
        thread = threading.Thread(target=lambda: heard.append(listener.exchange(None)), daemon=True)
        thread.start()
        publisher.exchange({"t": (1, (2, 3))})
        thread.join(20)
        assert heard == [[{"t": (1, (2, 3))}]]  # listen returns one item per decorator

        def serve(calls: int) -> None:
            for _ in range(calls):
                server.add(0)
        thread = threading.Thread(target=serve, args=(2,), daemon=True)
        thread.start()
        assert client.add(3, b=4) == [7, (3, 4)]
        with pytest.raises(RemoteError, match="negative"):
            client.add(-1)  # the server goes on serving within the same call
        assert client.add(5) == [5, (5, 0)]
        thread.join(20)
        assert not thread.is_alive()
    finally:
        for node in (publisher, listener, server, client):
            node.close()


def test_client_recovers_after_a_timeout():
    """A REQ that timed out cannot send again; the transport makes a new one, so the next request
    works once a server is there."""
    router, dealer = free_ports(2)
    session = WireSession()
    wire = middleware_module("zeromq", "wrapyfi")
    try:
        client = wire.ClientTransport("/rr/late", session=session, socket_rep_port=router)
        with pytest.raises(Exception) as error:
            client.request([b"[[1], {}]"], 0.3)
        assert type(error.value).__name__ == "WaitTimeout"
        server = wire.ServerTransport("/rr/late", session=session, socket_rep_port=router, socket_req_port=dealer)
        replies = []
        thread = threading.Thread(target=lambda: replies.append(client.request([b"2"], 20)), daemon=True)
        thread.start()
        ticket, frames = server.recv(20)
        assert bytes(frames[0]) == b"2"
        server.send(ticket, [b"3"])
        thread.join(20)
        assert [bytes(frame) for frame in replies[0]] == [b"3"]
        assert client.statistics()["timeouts"] == 1
    finally:
        session.close()


# -- the broker and the listener's exact topics ------------------------------------------------------

def _monitor(context: zmq.Context, xpub: str) -> zmq.Socket:
    monitor = context.socket(zmq.SUB)
    monitor.setsockopt(zmq.SUBSCRIBE, b"ZEROMQ/CONNECTIONS")
    monitor.connect(xpub)
    return monitor


def _counts(monitor: zmq.Socket, until: Callable[[dict], bool]) -> dict:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if monitor.poll(100):
            counts = json.loads(monitor.recv_multipart()[1])
            if until(counts):
                return counts
    raise AssertionError("the broker did not report the expected counts within 20 s")


def test_broker_counts_go_up_and_down_and_are_rebroadcast():
    pub_port, sub_port = free_ports(2)
    session = WireSession()
    context = zmq.Context()
    xpub = f"tcp://127.0.0.1:{pub_port}"
    try:
        WrapyfiPublisherTransport("/bc/other", should_wait=False, session=session,
                                  socket_pub_port=pub_port, socket_sub_port=sub_port)  # starts the broker
        subs = []
        for _ in range(2):
            subs.append(context.socket(zmq.SUB))
            subs[-1].setsockopt(zmq.SUBSCRIBE, b"/bc/t")
            subs[-1].connect(xpub)
        monitor = _monitor(context, xpub)
        # the subscriptions happened before this monitor listened: only a re-broadcast tells it
        assert _counts(monitor, lambda c: c.get("/bc/t") == 2)["/bc/t"] == 2
        subs.pop().close(linger=0)
        _counts(monitor, lambda c: c.get("/bc/t") == 1)
        subs.pop().close(linger=0)
        _counts(monitor, lambda c: c.get("/bc/t") == 0)
        monitor.close(linger=0)
    finally:
        context.destroy(linger=0)
        session.close()


def test_listener_skips_prefix_matches_and_counts_them():
    """The broker matches prefixes: a listener of /px/a hears /px/ab, and must not return it."""
    pub_port, sub_port = free_ports(2)
    session = WireSession()
    ports = dict(socket_pub_port=pub_port, socket_sub_port=sub_port, session=session)
    try:
        short = WrapyfiListenerTransport("/px/a", **ports)
        WrapyfiPublisherTransport("/px/a", wait_timeout=20, **ports).send([b"1"])  # /px/a is subscribed now
        assert bytes(short.recv(20)[0]) == b"1"
        longer = WrapyfiListenerTransport("/px/ab", **ports)
        WrapyfiPublisherTransport("/px/ab", wait_timeout=20, **ports).send([b"2"])
        assert bytes(longer.recv(20)[0]) == b"2"
        deadline = time.monotonic() + 20
        while short.statistics()["malformed"] == 0 and time.monotonic() < deadline:
            assert short.recv(0.1) is None
        assert short.statistics()["malformed"] == 1 and short.statistics()["received"] == 1
    finally:
        session.close()


def test_publisher_wait_is_bounded():
    from wrapyfi_like.exceptions import WaitTimeout

    pub_port, sub_port = free_ports(2)
    session = WireSession()
    try:
        publisher = WrapyfiPublisherTransport("/bound/t", wait_timeout=0.3, session=session,
                                              socket_pub_port=pub_port, socket_sub_port=sub_port)
        with pytest.raises(WaitTimeout, match="no listener"):
            publisher.send([b"1"])
    finally:
        session.close()


@pytest.mark.timeout(200)
def test_wrapyfi_publisher_started_after_its_listener_does_not_hang(nodes):
    """Wrapyfi's monitor reports counts only on a subscription event, so a Wrapyfi ``should_wait``
    publisher started after its listener subscribed waits for ever on Wrapyfi's broker. Ours
    re-broadcasts the counts: here the listener (a raw SUB) is counted before the publisher starts."""
    env = pubsub_env()
    pub_port, sub_port = int(env["WRAPYFI_ZEROMQ_SOCKET_PUB_PORT"]), int(env["WRAPYFI_ZEROMQ_SOCKET_SUB_PORT"])
    session = WireSession()
    context = zmq.Context()
    try:
        WrapyfiPublisherTransport("/late/other", should_wait=False, session=session,
                                  socket_pub_port=pub_port, socket_sub_port=sub_port)  # our broker
        listener = context.socket(zmq.SUB)
        listener.setsockopt(zmq.SUBSCRIBE, b"/late/t")
        listener.connect(f"tcp://127.0.0.1:{pub_port}")
        _counts(_monitor(context, f"tcp://127.0.0.1:{pub_port}"), lambda c: c.get("/late/t") == 1)
        publisher = nodes("wrapyfi", "pub", "/late/t", **env)
        publisher.expect(f"sent {COUNT - 1}")
        assert listener.poll(20_000)
        assert listener.recv_multipart()[0] == b"/late/t"
    finally:
        context.destroy(linger=0)
        session.close()


@pytest.mark.parametrize("setting", [dict(carrier="ipc"), dict(curve_secret_key="k"), dict(backpressure="drop"),
                                     dict(backpressure="latest")])
def test_settings_this_wire_cannot_honour_are_refused(setting):
    session = WireSession()
    try:
        with pytest.raises(ConfigurationError, match="native wire|tcp only"):
            WrapyfiPublisherTransport("/refused/t", should_wait=False, session=session, **setting)
    finally:
        session.close()


def test_listener_announces_itself_until_its_first_message():
    """Behind a broker that does not repeat counts (Wrapyfi's), a Wrapyfi publisher that starts
    after our listener would not see it; so the listener says ``{topic: 1}`` itself, until its
    first message. Here the test's own sockets play the broker."""
    pub_port, sub_port = free_ports(2)
    session = WireSession()
    context = zmq.Context()
    try:
        front = context.socket(zmq.XPUB)  # where listeners connect
        front.bind(f"tcp://127.0.0.1:{pub_port}")
        back = context.socket(zmq.XSUB)  # where publishers (and announcements) arrive
        back.bind(f"tcp://127.0.0.1:{sub_port}")
        back.send(b"\x01ZEROMQ/CONNECTIONS")
        listener = WrapyfiListenerTransport("/ann/t", session=session, socket_pub_port=pub_port,
                                            socket_sub_port=sub_port)
        for _ in range(2):  # repeated, not only once
            assert back.poll(20_000)
            assert back.recv_multipart() == [b"ZEROMQ/CONNECTIONS", b'{"/ann/t": 1}']
        assert front.poll(20_000) and front.recv() == b"\x01/ann/t"
        front.send_multipart([b"/ann/t", b"1"])
        assert bytes(listener.recv(20)[0]) == b"1"
        while back.poll(0):
            back.recv_multipart()  # sent before the message arrived
        assert not back.poll(1200)  # and nothing for more than two announcement periods after it
    finally:
        context.destroy(linger=0)
        session.close()


def test_our_envelope_rides_last_and_counts_losses():
    """Our publishers add the envelope as the last frame (Wrapyfi's listeners read frames by
    position and ignore it: the interop tests above show it); our listeners count the gaps,
    skip repeats, and take a Wrapyfi publisher's messages (no envelope) as they come. The test's
    own sockets play the broker and the publishers."""
    from wrapyfi_like.middlewares import envelope

    pub_port, sub_port = free_ports(2)
    session = WireSession()
    context = zmq.Context()
    try:
        front = context.socket(zmq.XPUB)
        front.bind(f"tcp://127.0.0.1:{pub_port}")
        listener = WrapyfiListenerTransport("/env/t", session=session, socket_pub_port=pub_port,
                                            socket_sub_port=sub_port)
        while front.recv() != b"\x01/env/t":
            pass  # the listener's subscription has arrived

        ports = free_ports(2)
        publisher = WrapyfiPublisherTransport("/env/p", wait_timeout=20, session=session,
                                              socket_pub_port=ports[0], socket_sub_port=ports[1])  # our broker
        raw = context.socket(zmq.SUB)
        raw.setsockopt(zmq.SUBSCRIBE, b"/env/p")
        raw.connect(f"tcp://127.0.0.1:{ports[0]}")
        group = envelope.Group(b"calls-of", 7)  # a stacked method's call: its parts share it
        publisher.send([b"1"])
        publisher.send([b"2"], group)
        assert raw.poll(20_000)
        sent = [raw.recv_multipart() for _ in range(2)]
        assert [frames[:2] for frames in sent] == [[b"/env/p", b"1"], [b"/env/p", b"2"]]
        assert [envelope.unpack(frames[2])[1::2] for frames in sent] == [(1, None), (2, group)]

        me = envelope.new_publisher_id()
        for seq, payload in ((1, b"a"), (3, b"b"), (3, b"b"), (0, b"wrapyfi")):
            stamp = [envelope.pack(me, seq)] if seq else []  # seq 0: a Wrapyfi publisher's, no envelope
            front.send_multipart([b"/env/t", payload, *stamp])
        assert bytes(listener.recv(20)[0]) == b"a" and listener.last_envelope.seq == 1
        assert bytes(listener.recv(20)[0]) == b"b" and listener.last_envelope.seq == 3
        assert bytes(listener.recv(20)[0]) == b"wrapyfi" and listener.last_envelope is None  # the repeat skipped
        counts = listener.statistics()
        assert (counts["received"], counts["missed"], counts["duplicate"]) == (3, 1, 1)
    finally:
        context.destroy(linger=0)
        session.close()


def test_stacked_parts_stay_together_between_our_nodes():
    """The envelope's call group: a listener of a method with two decorators returns the two
    parts of one call together, as on the native wire."""
    pub_port, sub_port = free_ports(2)
    sockets = dict(wire="wrapyfi", socket_pub_port=pub_port, socket_sub_port=sub_port)

    class Pair(MiddlewareCommunicator):
        @MiddlewareCommunicator.register("NativeObject", "zeromq", "Pair", "/pair/a", should_wait=True,
                                         wait_timeout=20, **sockets)
        @MiddlewareCommunicator.register("NativeObject", "zeromq", "Pair", "/pair/b", should_wait=True,
                                         wait_timeout=20, **sockets)
        def both(self, i):
            return {"a": i}, {"b": i}

    sender, receiver = Pair(), Pair()
    sender.activate_communication(Pair.both, "publish")
    receiver.activate_communication(Pair.both, "listen")
    try:
        heard = []
        listening = threading.Thread(target=lambda: heard.extend(receiver.both(None) for _ in range(3)), daemon=True)
        listening.start()
        for i in range(3):
            sender.both(i)
        listening.join(20)
        assert heard == [[{"a": i}, {"b": i}] for i in range(3)]
    finally:
        sender.close()
        receiver.close()
