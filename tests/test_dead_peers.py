"""Listeners that discovery lists but that are gone never count as a listener nor get messages.

Discovery is eventually consistent: a publisher created just after a listener closed (or was
killed) can still be told of it. Such a listener must not satisfy ``should_wait`` (the first
message would go nowhere), and messages published while it is gone must not wait to reach
whatever binds its port next.
"""

import os
import socket
import time

import pytest
import zmq

from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.connect.publishers import Publisher
from wrapyfi_like.encoding.codec import Codec
from wrapyfi_like.exceptions import WaitTimeout
from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent, list_directory, protocol
from wrapyfi_like.middlewares.zeromq.keys import listener_key, topic_frame

pytestmark = pytest.mark.timeout(60)


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.fixture
def refusing_endpoint():
    """A loopback endpoint that refuses every connection while the test runs: a socket holds its
    port bound and never listens. A port merely bound and closed again may be taken meanwhile (by
    another program, or by a connection to itself, which libzmq handshakes with), and the publisher
    would rightly see a live peer there."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield f"tcp://127.0.0.1:{holder.getsockname()[1]}"


def test_a_listed_but_closed_listener_is_not_waited_for_and_the_first_message_reaches_a_real_one(
        topic, refusing_endpoint):
    agent = NodeAgent.get()
    stale = agent.announce(listener_key(topic), refusing_endpoint, {})
    impatient = Publisher("Test", topic, wait_timeout=0.5)
    publisher = Publisher("Test", topic, wait_timeout=10)
    listener = None
    try:
        with pytest.raises(WaitTimeout, match="no listener"):
            impatient.publish("nobody is there")
        assert impatient._transport._outlets, "the stale endpoint was listed, so it was tried"

        listener = Listener("Test", topic)
        publisher.publish("first")  # waits for the real listener, not the stale one
        publisher.publish("second")
        assert listener.listen() == "first"
        assert listener.listen() == "second"
        assert publisher.dropped == 0
    finally:
        agent.withdraw(stale)
        for communicator in (impatient, publisher, listener):
            if communicator is not None:
                communicator.close()


def test_messages_published_while_a_listener_is_gone_never_reach_the_next_socket_on_its_port(topic):
    context = zmq.Context.instance()
    first = context.socket(zmq.ROUTER)  # what an outlet (a DEALER) connects to
    port = first.bind_to_random_port("tcp://127.0.0.1")
    endpoint = f"tcp://127.0.0.1:{port}"
    agent = NodeAgent.get()
    announcement = agent.announce(listener_key(topic), endpoint, {})
    publisher = Publisher("Test", topic, wait_timeout=10, backpressure="drop")
    second = None
    try:
        publisher.publish("to the first")
        assert first.poll(10_000)
        assert first.recv_multipart()[1] == topic_frame(topic)  # after the ROUTER's routing id
        first.close(linger=0)
        outlet = publisher._transport._outlets[endpoint]
        wait_until(lambda: outlet.check() >= 0 and not outlet.up)  # the publisher noticed the listener went away

        for _ in range(5):
            publisher.publish("while it is gone")
        assert publisher.dropped == 5, "each message for the gone listener is counted, none queued"

        second = context.socket(zmq.ROUTER)
        second.bind(endpoint)
        wait_until(lambda: outlet.check() >= 0 and outlet.up)  # reconnected to whatever binds the port now
        publisher.publish("to the second")
        assert second.poll(10_000)
        frames = second.recv_multipart()  # one connection keeps order: a stale message would come first
        # after routing id, topic and envelope
        assert Codec().decode([memoryview(frame) for frame in frames[3:]]) == "to the second"
    finally:
        agent.withdraw(announcement)
        publisher.close()
        if second is not None:
            second.close(linger=0)


def test_fake_and_malformed_entries_never_reach_a_publisher_beyond_the_endpoint_limit(topic):
    """Made-up listeners announced by a raw peer: a malformed endpoint is never handed out, and of
    1,100 well-formed fake ones a publisher is given at most MAX_ENDPOINTS_PER_KEY, the real
    (longest-known) listener first; publishing neither raises nor misses the real listener."""
    listener = Listener("Test", topic)
    wait_until(lambda: listener._transport.endpoint in {e.endpoint for e in list_directory()})
    address = os.environ["WRAPYFI_ZEROMQ_DISCOVERY"]
    realm = NodeAgent.get().realm
    fakes = []
    for node in range(5):
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(address)
        announcements = [[listener_key(topic), f"tcp://127.0.0.1:{20000 + node * 220 + n}", {}] for n in range(220)]
        sock.send(protocol.sync(0, f"fake-{node}", announcements, [], realm))
        fakes.append(sock)
    malformed = fakes[0]
    malformed.send(protocol.encode(["sync", 1, "fake-0", [[listener_key(topic), "tcp://127.0.0.1", {}]], [], realm]))
    publisher = Publisher("Test", topic, wait_timeout=10, backpressure="drop")
    try:
        for sock in fakes:
            assert sock.poll(5000), "the directory did not answer a fake node"
        wait_until(lambda: len(publisher._transport._watch.endpoints) == protocol.MAX_ENDPOINTS_PER_KEY)
        assert listener._transport.endpoint in publisher._transport._watch.endpoints
        assert "tcp://127.0.0.1" not in publisher._transport._watch.endpoints
        publisher.publish("to the real one")
        assert listener.listen() == "to the real one"
        assert len(publisher._transport._outlets) <= protocol.MAX_ENDPOINTS_PER_KEY
    finally:
        publisher.close()
        listener.close()
        for sock in fakes:
            sock.close()
