"""Fixed ports for firewalls and containers: ``bind_port=`` and ``WRAPYFI_LIKE_BIND_PORTS``.

Each test binds ports it found free a moment before; a port taken in between by another program
would fail a test loudly (a clear ConfigurationError), never hang it.
"""

import socket
import time
import uuid

import pytest

from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.connect.publishers import Publisher
from wrapyfi_like.connect.wrapper import MiddlewareCommunicator
from wrapyfi_like.exceptions import ConfigurationError
from wrapyfi_like.middlewares.ports import free_ports
from wrapyfi_like.middlewares.zeromq.discovery import list_directory
from wrapyfi_like.middlewares.zeromq.keys import listener_key
from wrapyfi_like.middlewares.zeromq.reqrep import service_key
from node_processes import Node, event_is

pytestmark = pytest.mark.timeout(60)


def announced(topic: str, endpoint: str, timeout: float = 10.0) -> bool:
    """Wait until the directory lists ``endpoint`` as a listener of ``topic``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e.key == listener_key(topic) and e.endpoint == endpoint for e in list_directory()):
            return True
    return False


def test_a_fixed_port_is_bound_and_announced(topic):
    port = free_ports(1)
    listener = Listener("Fixed", topic, bind_port=port)
    try:
        assert listener._transport.endpoint == f"tcp://127.0.0.1:{port}"
        assert announced(topic, f"tcp://127.0.0.1:{port}")
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", port))  # really bound
    finally:
        listener.close()


def test_a_range_is_used_in_order_and_a_full_range_is_a_clear_error(topic, monkeypatch):
    first = free_ports(3)
    monkeypatch.setenv("WRAPYFI_LIKE_BIND_PORTS", f"{first}-{first + 2}")
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", first))
    blocker.listen()
    listeners = []
    try:
        listeners.append(Listener("Ranged", topic))
        listeners.append(Listener("Ranged", topic + "/2"))
        ports = [int(each._transport.endpoint.rsplit(":", 1)[1]) for each in listeners]
        assert ports == [first + 1, first + 2]  # the taken first port was skipped
        with pytest.raises(ConfigurationError, match=f"WRAPYFI_LIKE_BIND_PORTS={first}-{first + 2}: every port is in use"):
            Listener("Ranged", topic + "/3")
    finally:
        blocker.close()
        for each in listeners:
            each.close()


def test_a_taken_port_names_the_port_and_the_kwarg(topic):
    port = free_ports(1)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        with pytest.raises(ConfigurationError, match=f"bind_port={port}: port {port} is already in use"):
            Listener("Taken", topic, bind_port=port)


@pytest.mark.parametrize("bad", ["0", "70000", "abc", "7900-7800", "78oo"])
def test_a_bad_port_variable_names_the_variable(topic, monkeypatch, bad):
    monkeypatch.setenv("WRAPYFI_LIKE_BIND_PORTS", bad)
    with pytest.raises(ConfigurationError, match="WRAPYFI_LIKE_BIND_PORTS=.*give a port or a range"):
        Listener("Bad", topic)


@pytest.mark.parametrize("bad", [0, 65536, "7800", True])
def test_a_bad_port_kwarg_is_refused(topic, bad):
    with pytest.raises(ConfigurationError, match="bind_port=.*1–65535"):
        Listener("Bad", topic, bind_port=bad)


def test_an_ipc_listener_cannot_take_a_port(topic):
    with pytest.raises(ConfigurationError, match="bind_port=7800 needs carrier='tcp'"):
        Listener("Ipc", topic, carrier="ipc", bind_port=7800)


def test_a_publisher_in_another_process_reaches_a_fixed_port(topic):
    port = free_ports(1)
    listener = Listener("Fixed", topic, bind_port=port)
    publisher = Node("publish", topic, "--count", "3")
    try:
        assert [listener.listen()["seq"] for _ in range(3)] == [0, 1, 2]
        publisher.wait_for(event_is("done"))
    finally:
        publisher.stop()
        listener.close()


def test_a_listener_in_another_process_takes_its_port_from_the_variable(topic):
    port = free_ports(1)
    listener = Node("listen", topic, "--count", "1", env={"WRAPYFI_LIKE_BIND_PORTS": f"{port}-{port}"})
    publisher = Publisher("Fixed", topic, wait_timeout=30)
    try:
        assert listener.wait_for(event_is("ready"))["endpoint"] == f"tcp://127.0.0.1:{port}"
        publisher.publish({"seq": 7, "pid": 0})
        listener.wait_for(event_is("got", seq=7))
    finally:
        publisher.close()
        listener.stop()


def test_every_interface_is_bound_and_the_announced_address_is_reachable(topic, monkeypatch):
    """0.0.0.0 binds all interfaces; what is announced is an address peers can connect to."""
    first = free_ports(3)  # one port per listener: libzmq frees a closed listener's port later, not at close()
    for port, everywhere in ((first, "0.0.0.0"), (first + 1, "*")):  # ZeroMQ's spelling too
        monkeypatch.setenv("WRAPYFI_ZEROMQ_SOCKET_IP", everywhere)
        listener = Listener("Everywhere", topic, bind_port=port)
        try:
            assert listener._transport.endpoint == f"tcp://127.0.0.1:{port}"  # the route to the directory
        finally:
            listener.close()
    monkeypatch.setenv("WRAPYFI_ZEROMQ_ANNOUNCE_IP", "127.0.0.2")  # as a Docker host's address would be
    port = first + 2
    listener = Listener("Everywhere", topic, bind_port=port)
    publisher = Node("publish", topic, "--count", "1")
    try:
        assert listener._transport.endpoint == f"tcp://127.0.0.2:{port}"
        assert listener.listen()["seq"] == 0  # the publisher connected to the announced address
    finally:
        publisher.stop()
        listener.close()


def test_register_takes_bind_port_for_listeners_and_servers(topic, in_thread):
    port = free_ports(2)

    class Fixed(MiddlewareCommunicator):
        @MiddlewareCommunicator.register("NativeObject", "zeromq", "Fixed", topic, bind_port=port)
        def stream(self, value=None):
            return value,

        @MiddlewareCommunicator.register("NativeObject", "zeromq", "Fixed", topic + "/service",
                                         publisher_kwargs=dict(bind_port=port + 1))
        def double(self, value=0):
            return value * 2,

    server = Fixed()
    server.activate_communication(Fixed.double, mode="reply")
    served = in_thread(lambda: server.double())
    client = Fixed()
    client.activate_communication(Fixed.double, mode="request")
    try:
        assert list(client.double(21)) == [42]
        served.result(timeout=20)
        assert any(e.key == service_key(topic + "/service") and e.endpoint == f"tcp://127.0.0.1:{port + 1}"
                   for e in list_directory())
    finally:
        server.close()
        client.close()

    listener = Fixed()
    listener.activate_communication(Fixed.stream, mode="listen")
    publisher = Fixed()
    publisher.activate_communication(Fixed.stream, mode="publish")  # bind_port means nothing here
    try:
        sent = in_thread(lambda: publisher.stream(f"{uuid.uuid4()}"))
        (got,) = listener.stream()
        assert got == sent.result(timeout=20)[0]
        assert announced(topic, f"tcp://127.0.0.1:{port}")
    finally:
        listener.close()
        publisher.close()


def test_middlewares_without_ports_ignore_bind_port(topic):
    listener = Listener("Inproc", topic, middleware="inproc", bind_port=1)  # 1 would need root on tcp
    listener.close()
