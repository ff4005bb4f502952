"""CURVE: consumers need the producer's public key *and* an allowed key of their own; the others
never receive, announce or disturb anything."""

import os
import subprocess
import sys
import threading
import time

import pytest

from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.connect.publishers import Publisher
from wrapyfi_like.exceptions import ConfigurationError, WaitTimeout
from wrapyfi_like.middlewares.ports import free_port
from wrapyfi_like.middlewares.zeromq import curve
from wrapyfi_like.middlewares.zeromq.discovery import list_directory, protocol
from wrapyfi_like.middlewares.zeromq import ClientTransport as ZeroMQClientTransport
from wrapyfi_like.middlewares.zeromq import ServerTransport as ZeroMQServerTransport
from wrapyfi_like.security import generate_keypair, keypair
from node_processes import Node, event_is

pytestmark = pytest.mark.timeout(60)

MESSAGES = 3000  # more than a refused listener's queue would hold: it must be no destination at all


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def consumer(monkeypatch, client_secret, make):
    """Create a consumer whose own CURVE key is ``client_secret`` (None: a fresh one per socket)."""
    if client_secret is None:
        monkeypatch.delenv(curve.CLIENT_KEY_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(curve.CLIENT_KEY_VARIABLE, client_secret)
    return make()


def test_only_allowed_listeners_receive_knowing_the_public_key_is_not_enough(topic, monkeypatch):
    server_public, server_secret = keypair()
    allowed_public, allowed_secret = keypair()
    _, unlisted_secret = keypair()
    wrong_server, _ = keypair()
    monkeypatch.setenv(curve.ALLOWED_VARIABLE, allowed_public)
    good = consumer(monkeypatch, allowed_secret, lambda: Listener("Secure", topic, curve_server_key=server_public))
    public_only = consumer(monkeypatch, None, lambda: Listener("Secure", topic, should_wait=False,
                                                               curve_server_key=server_public))
    unlisted = consumer(monkeypatch, unlisted_secret, lambda: Listener("Secure", topic, should_wait=False,
                                                                       curve_server_key=server_public))
    wrong = consumer(monkeypatch, allowed_secret, lambda: Listener("Secure", topic, should_wait=False,
                                                                   curve_server_key=wrong_server))
    keyless = Listener("Secure", topic, should_wait=False)
    # the default policy ("block"): refused listeners must not make it wait
    publisher = Publisher("Secure", topic, curve_secret_key=server_secret, wait_timeout=10)
    refused_before = curve.authenticator(publisher._transport._context).refused
    try:
        wait_until(lambda: len(publisher._transport._watch.endpoints) == 5)
        received = []
        listening = threading.Thread(target=lambda: received.extend(good.listen()["seq"] for _ in range(MESSAGES)))
        listening.start()
        for seq in range(MESSAGES):
            publisher.publish({"seq": seq})
        listening.join(timeout=30)
        assert received == list(range(MESSAGES))
        for refused in (public_only, unlisted, wrong, keyless):
            assert refused.listen() is None
        assert publisher.dropped == 0
        # the two listeners with the right server key but no allowed key of their own were refused by ZAP
        assert curve.authenticator(publisher._transport._context).refused - refused_before >= 2
    finally:
        for communicator in (publisher, good, public_only, unlisted, wrong, keyless):
            communicator.close()


def test_a_listener_with_a_server_key_ignores_a_plain_publisher(topic, tmp_path):
    public_file, _ = generate_keypair(tmp_path)
    secure = Listener("Secure", topic, should_wait=False, curve_server_key=public_file)
    plain = Listener("Secure", topic)
    publisher = Publisher("Secure", topic, wait_timeout=10)
    try:
        wait_until(lambda: len(publisher._transport._watch.endpoints) == 2)
        received = []
        listening = threading.Thread(target=lambda: received.extend(plain.listen() for _ in range(MESSAGES)))
        listening.start()
        for seq in range(MESSAGES):
            publisher.publish(seq)
        listening.join(timeout=30)
        assert received == list(range(MESSAGES))
        assert secure.listen() is None
    finally:
        for communicator in (publisher, secure, plain):
            communicator.close()


def test_only_allowed_clients_get_replies(topic, monkeypatch):
    server_public, server_secret = keypair()
    allowed_public, allowed_secret = keypair()
    monkeypatch.setenv(curve.ALLOWED_VARIABLE, allowed_public)
    server = ZeroMQServerTransport(topic, curve_secret_key=server_secret)
    client = lambda: ZeroMQClientTransport(topic, curve_server_key=server_public)  # noqa: E731
    allowed = consumer(monkeypatch, allowed_secret, client)
    intruder = consumer(monkeypatch, None, client)

    def serve():
        ticket, frames = server.recv(10)
        server.send(ticket, [bytes(frames[0]) + b"!"])

    serving = threading.Thread(target=serve, daemon=True)
    serving.start()
    try:
        with pytest.raises(WaitTimeout):
            intruder.request([b"let me in"], timeout=1.5)
        assert [bytes(f) for f in allowed.request([b"hello"], timeout=10)] == [b"hello!"]
        serving.join(timeout=10)
    finally:
        for transport in (intruder, allowed, server):
            transport.close()


def test_keys_and_allow_lists_come_from_the_environment_and_bad_ones_are_refused(topic, tmp_path, monkeypatch):
    public, secret = keypair()
    monkeypatch.setenv("WRAPYFI_ZEROMQ_CURVE_SECRET_KEY", secret)
    monkeypatch.setenv("WRAPYFI_ZEROMQ_CURVE_SERVER_KEY", public)
    listener = Listener("Secure", topic)  # holds the secret key, so its own pair is allowed
    publisher = Publisher("Secure", topic, wait_timeout=10)
    try:
        publisher.publish("sealed")
        assert listener.listen() == "sealed"
    finally:
        publisher.close(), listener.close()

    folder = tmp_path / "allowed"
    client_public_file, client_secret_file = generate_keypair(folder, "client")
    os.rename(client_secret_file, tmp_path / "client.key_secret")  # the folder holds public keys only
    assert curve.allowed_keys(str(folder)) == {curve._read_key(client_public_file, secret=False, name="t")}
    assert curve.allowed_keys(f" {public} , {keypair()[0]}") >= {public.encode()}
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigurationError, match="no \\*.key files"):
        curve.allowed_keys(str(tmp_path / "empty"))
    with pytest.raises(ConfigurationError, match="neither"):
        curve.allowed_keys("not a key")
    monkeypatch.setattr(curve, "MAX_ALLOWED_KEYS", 2)
    with pytest.raises(ConfigurationError, match="names 3 keys; the limit is 2"):  # never cut silently
        curve.allowed_keys(",".join(keypair()[0] for _ in range(3)))

    public_file, _ = generate_keypair(tmp_path)
    with pytest.raises(ConfigurationError, match="no secret key"):
        Publisher("Secure", topic, curve_secret_key=public_file)
    with pytest.raises(ConfigurationError, match="neither"):
        Listener("Secure", topic, curve_server_key="not a key")


def test_discovery_is_curve_and_refuses_unlisted_keys(topic):
    """Separate processes: the directory host and a publisher hold the secret key, the listener an
    allowed client key; an intruder that knows only the public key can neither read nor announce."""
    import zmq

    server_public, server_secret = keypair()
    client_public, client_secret = keypair()
    address = f"tcp://127.0.0.1:{free_port()}"
    producer_env = {"WRAPYFI_ZEROMQ_DISCOVERY": address, curve.SECRET_KEY_VARIABLE: server_secret,
                    curve.ALLOWED_VARIABLE: client_public}
    consumer_env = {"WRAPYFI_ZEROMQ_DISCOVERY": address, curve.SERVER_KEY_VARIABLE: server_public,
                    curve.CLIENT_KEY_VARIABLE: client_secret}
    host = Node("idle", env=producer_env)
    nodes = [host]
    intruder = zmq.Context.instance().socket(zmq.DEALER)
    intruder.setsockopt(zmq.LINGER, 0)
    try:
        host.wait_for(event_is("ready"))
        intruder.curve_serverkey = server_public.encode()
        intruder.curve_publickey, intruder.curve_secretkey = zmq.curve_keypair()
        intruder.connect(address)
        fake = [["\0listener " + topic, "tcp://127.0.0.1:9", {}]]
        intruder.send(protocol.sync(0, "intruder", fake, ["\0listener " + topic], "/0"))

        listener = Node("listen", topic, env=consumer_env)
        publisher = Node("publish", topic, "--count", "5", env=producer_env)
        nodes += [listener, publisher]
        for seq in range(5):
            listener.wait_for(event_is("got", seq=seq))
        assert not intruder.poll(500), "an unlisted key got an answer from the directory"

        listing = _listing_as(address, consumer_env)
        assert [e.endpoint for e in listing if e.key == "\0listener " + topic] == [listener.seen[0]["endpoint"]]
        assert "tcp://127.0.0.1:9" not in {e.endpoint for e in listing}
        with pytest.raises(WaitTimeout):
            list_directory(address, timeout=0.5)  # a plain tool gets nothing from a CURVE directory
    finally:
        intruder.close()
        for node in nodes:
            node.stop()


def _listing_as(address, env):
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        return list_directory(address, timeout=5)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


EXIT_SCRIPT = """
import atexit, os, zmq
context = zmq.Context.instance()
atexit.register(lambda: print("terminated" if context.closed else "not terminated"))  # runs last
from wrapyfi_like.connect.publishers import Publisher
publisher = Publisher("Exit", "/curve/exit", should_wait=False)
publisher.publish(1)
"""


def test_a_curve_process_still_terminates_its_context_at_exit(tmp_path):
    """The ZAP handler's socket is closed at exit, so the context terminates (which is what
    delivers messages still queued when a script ends)."""
    _, server_secret = keypair()
    env = {**os.environ, "WRAPYFI_ZEROMQ_DISCOVERY": f"tcp://127.0.0.1:{free_port()}", curve.SECRET_KEY_VARIABLE: server_secret}
    result = subprocess.run([sys.executable, "-c", EXIT_SCRIPT], env=env, capture_output=True, text=True, timeout=30)
    assert result.stdout == "terminated\n", result.stderr
