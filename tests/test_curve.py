"""CURVE: only consumers holding the producer's public key get data; the others never disturb it."""

import threading
import time

import pytest

from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.connect.publishers import Publisher
from wrapyfi_like.exceptions import ConfigurationError
from wrapyfi_like.security import generate_keypair, keypair

pytestmark = pytest.mark.timeout(60)

MESSAGES = 3000  # more than a refused listener's queue would hold: it must be no destination at all


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
    # the default policy ("block"): refused listeners must not make it wait
    publisher = Publisher("Secure", topic, curve_secret_key=str(secret_file), wait_timeout=10)
    try:
        wait_until(lambda: len(publisher._transport._watch.endpoints) == 3)
        received = []
        listening = threading.Thread(target=lambda: received.extend(good.listen()["seq"] for _ in range(MESSAGES)))
        listening.start()
        for seq in range(MESSAGES):
            publisher.publish({"seq": seq})
        listening.join(timeout=30)
        assert received == list(range(MESSAGES))
        assert keyless.listen() is None and wrong.listen() is None
        assert publisher.dropped == 0
    finally:
        for communicator in (publisher, good, keyless, wrong):
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
