"""CURVE: only consumers holding the producer's public key get data; the others never disturb it."""

import time

import pytest

from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.connect.publishers import Publisher
from wrapyfi_like.exceptions import ConfigurationError
from wrapyfi_like.security import generate_keypair, keypair

pytestmark = pytest.mark.timeout(60)

MESSAGES = 500  # fewer than a listener's queue holds: see docs/reliability.md on refused listeners


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_only_listeners_with_the_server_key_receive(topic, tmp_path):
    public_file, secret_file = generate_keypair(tmp_path)
    wrong_public, _ = keypair()
    good = Listener("Secure", topic, curve_server_key=str(public_file))
    keyless = Listener("Secure", topic, should_wait=False)
    wrong = Listener("Secure", topic, should_wait=False, curve_server_key=wrong_public)
    # "drop": the publisher is not told of refused handshakes, so it must not wait for their queues
    publisher = Publisher("Secure", topic, curve_secret_key=str(secret_file), wait_timeout=10,
                          backpressure="drop")
    try:
        wait_until(lambda: len(publisher._transport._watch.endpoints) == 3)
        for seq in range(MESSAGES):
            publisher.publish({"seq": seq})
        assert [good.listen()["seq"] for _ in range(MESSAGES)] == list(range(MESSAGES))
        assert keyless.listen() is None and wrong.listen() is None
    finally:
        for communicator in (publisher, good, keyless, wrong):
            communicator.close()


def test_a_listener_with_a_server_key_ignores_a_plain_publisher(topic, tmp_path):
    public_file, _ = generate_keypair(tmp_path)
    secure = Listener("Secure", topic, should_wait=False, curve_server_key=public_file)
    plain = Listener("Secure", topic)
    publisher = Publisher("Secure", topic, wait_timeout=10, backpressure="drop")
    try:
        wait_until(lambda: len(publisher._transport._watch.endpoints) == 2)
        for seq in range(MESSAGES):
            publisher.publish(seq)
        assert [plain.listen() for _ in range(MESSAGES)] == list(range(MESSAGES))
        assert secure.listen() is None
    finally:
        for communicator in (publisher, secure, plain):
            communicator.close()


def test_keys_come_from_the_environment_and_bad_keys_are_refused(topic, tmp_path, monkeypatch):
    public, secret = keypair()
    monkeypatch.setenv("WRAPYFI_ZEROMQ_CURVE_SECRET_KEY", secret)
    monkeypatch.setenv("WRAPYFI_ZEROMQ_CURVE_SERVER_KEY", public)
    listener = Listener("Secure", topic)
    publisher = Publisher("Secure", topic, wait_timeout=10)
    try:
        publisher.publish("sealed")
        assert listener.listen() == "sealed"
    finally:
        publisher.close(), listener.close()

    public_file, _ = generate_keypair(tmp_path)
    with pytest.raises(ConfigurationError, match="no secret key"):
        Publisher("Secure", topic, curve_secret_key=public_file)
    with pytest.raises(ConfigurationError, match="neither"):
        Listener("Secure", topic, curve_server_key="not a key")
