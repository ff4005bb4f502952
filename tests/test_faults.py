"""Faults over real sockets: nodes are processes that get SIGKILLed and restarted.

Every test gives its nodes a discovery address of their own, so the directory's host is always
one of them and never the test process.
"""

import socket
import time

import pytest

from node_processes import Node, event_is

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def nodes(private_discovery):
    """Start nodes sharing a private discovery address; every one still running is stopped after."""
    env = private_discovery
    started = []

    class Nodes:
        discovery = env["WRAPYFI_ZEROMQ_DISCOVERY"]

        @staticmethod
        def start(*args: str, shared_discovery: bool = False) -> Node:
            """``shared_discovery``: use the test session's discovery, as the test process does."""
            node = Node(*args, env=None if shared_discovery else env)
            started.append(node)
            return node

    yield Nodes
    for node in started:
        node.stop()


def got_from(node: Node):
    return lambda event: event["event"] == "got" and event["pid"] == node.process.pid


def test_listener_receives_from_a_restarted_publisher_within_a_second(topic, nodes):
    listener = nodes.start("listen", topic)
    listener.wait_for(event_is("ready"))
    first = nodes.start("publish", topic, "--rate", "100")
    listener.wait_for(got_from(first))
    first.kill()

    second = nodes.start("publish", topic, "--rate", "100")
    sending = second.wait_for(event_is("sending"))
    got = listener.wait_for(got_from(second))
    assert got["seq"] == 0, "the new publisher's first message was lost"
    assert got["t"] - sending["t"] < 1.0


def test_publisher_goes_on_when_its_listener_is_killed_and_restarted(topic, nodes):
    first_listener = nodes.start("listen", topic)
    first_listener.wait_for(event_is("ready"))
    publisher = nodes.start("publish", topic, "--every", "100")  # flat out: its queue fills at once
    first_listener.wait_for(got_from(publisher))
    first_listener.kill()
    at_kill = publisher.wait_for(event_is("sent"))["seq"]

    second_listener = nodes.start("listen", topic)
    got = second_listener.wait_for(got_from(publisher))
    assert got["seq"] > at_kill
    publisher.wait_for(lambda event: event["event"] == "sent" and event["seq"] > got["seq"] + 1000)
    assert publisher.process.poll() is None


def test_nodes_keep_connections_and_recover_discovery_when_its_host_dies(topic, nodes):
    host = nodes.start("idle")
    host.wait_for(event_is("ready"))
    _wait_until_listening(nodes.discovery)
    listener = nodes.start("listen", topic)
    listener.wait_for(event_is("ready"))
    publisher = nodes.start("publish", topic, "--rate", "50")
    listener.wait_for(got_from(publisher))

    host.kill()
    killed_at = time.time()
    # the existing connection carries on, without a gap while the directory moves
    last = listener.wait_for(lambda event: event["event"] == "got" and event["t"] > killed_at + 2.0)
    received = [event["seq"] for event in listener.seen if event["event"] == "got"]
    assert received == list(range(received[0], last["seq"] + 1))

    # and discovery works again: the publisher finds a listener that starts now
    late_listener = nodes.start("listen", topic)
    late_listener.wait_for(got_from(publisher))


def test_request_to_a_dead_server_times_out_and_a_restarted_server_answers(topic, nodes):
    from wrapyfi_like.connect.wrapper import MiddlewareCommunicator
    from wrapyfi_like.exceptions import WaitTimeout

    class Echo(MiddlewareCommunicator):
        @MiddlewareCommunicator.register("NativeObject", "zeromq", "Echo", topic, request_timeout=2.0)
        def echo(self, value):
            return {"value": value},

    server = nodes.start("reply", topic, shared_discovery=True)
    server.wait_for(event_is("ready"))
    client = Echo()
    client.activate_communication(Echo.echo, mode="request")
    try:
        (answer,) = client.echo(1)
        assert answer["value"] == 1 and answer["pid"] == server.process.pid
        server.kill()
        with pytest.raises(WaitTimeout):
            client.echo(2)

        restarted = nodes.start("reply", topic, shared_discovery=True)
        restarted.wait_for(event_is("ready"))
        for value in range(3, 8):  # none may go to the dead server, still listed in discovery
            (answer,) = client.echo(value)
            assert answer == {"value": value, "pid": restarted.process.pid}
    finally:
        client.close()


def _wait_until_listening(address: str, timeout: float = 10.0) -> None:
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
