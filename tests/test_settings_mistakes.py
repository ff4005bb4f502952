"""Configuration mistakes surface at once, as one line naming the variable; a topic typo is warned.

Before: a bad ``WRAPYFI_ZEROMQ_DISCOVERY`` killed the discovery thread and every node waited in
silence; a foreign ``WRAPYFI_ZEROMQ_SOCKET_IP`` raised a raw ZMQError; a topic misspelt by one
letter left publisher and listener waiting for each other without a word.
"""

import logging
import subprocess
import sys
import threading
import time
import uuid

import pytest

from wrapyfi_like.connect.clients import Client
from wrapyfi_like.connect.formats import ValueFormat
from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.connect.publishers import Publisher
from wrapyfi_like.exceptions import ConfigurationError
from wrapyfi_like.middlewares.zeromq.discovery import list_directory, waiting
from wrapyfi_like.middlewares.zeromq.keys import listener_key, publisher_key
from wrapyfi_like.middlewares.zeromq.reqrep import service_key
from wrapyfi_like.middlewares.zeromq.settings import ZeroMQSettings
from node_processes import Node, event_is

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("value, reason", [
    ("127.0.0.1:7700", "must start with tcp://"),
    ("tcp://127.0.0.1", r"must be tcp://<host>:<port>"),
    ("tcp://127.0.0.1:99999", "port 99999 is not in 1–65535"),
    ("udp://127.0.0.1:7700", "only tcp:// is supported"),
])
def test_a_bad_discovery_address_names_the_variable(monkeypatch, topic, value, reason):
    monkeypatch.setenv("WRAPYFI_ZEROMQ_DISCOVERY", value)
    with pytest.raises(ConfigurationError, match=f"WRAPYFI_ZEROMQ_DISCOVERY={value!r}: .*{reason}") as error:
        ZeroMQSettings.from_environment()
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigurationError, match="WRAPYFI_ZEROMQ_DISCOVERY"):
        Listener("Bad", topic)


def test_a_publisher_fails_at_construction_not_with_a_silent_hang():
    """A fresh process: the discovery thread is never started with a bad address."""
    script = ("from wrapyfi_like.connect.publishers import Publisher\n"
              "Publisher('Node', '/mistakes/publisher')\n"
              "print('built')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "WRAPYFI_ZEROMQ_DISCOVERY": "udp://127.0.0.1:7700"})
    assert done.returncode != 0 and "built" not in done.stdout
    assert ("ConfigurationError: WRAPYFI_ZEROMQ_DISCOVERY='udp://127.0.0.1:7700': only tcp:// is supported"
            in done.stderr)


def test_a_socket_ip_of_another_machine_names_the_variable(monkeypatch, topic):
    monkeypatch.setenv("WRAPYFI_ZEROMQ_SOCKET_IP", "192.0.2.1")  # TEST-NET-1: never a local address
    with pytest.raises(ConfigurationError,
                       match=r"WRAPYFI_ZEROMQ_SOCKET_IP='192.0.2.1' is not an address of this machine") as error:
        Listener("Foreign", topic)
    assert "\n" not in str(error.value)


def test_a_socket_ip_that_is_no_address_names_the_variable(monkeypatch, topic):
    monkeypatch.setenv("WRAPYFI_ZEROMQ_SOCKET_IP", "no-such-interface0")
    with pytest.raises(ConfigurationError, match=r"WRAPYFI_ZEROMQ_SOCKET_IP='no-such-interface0': cannot bind"):
        Listener("Foreign", topic)


def test_an_unknown_default_middleware_fails_when_the_class_is_defined_even_behind_a_reference():
    script = (
        "from wrapyfi_like.connect.wrapper import MiddlewareCommunicator\n"
        "class Sensor(MiddlewareCommunicator):\n"
        "    @MiddlewareCommunicator.register('NativeObject', '$mware', 'Sensor', '/mistakes/mware')\n"
        "    def read(self, mware=None):\n"
        "        return 1,\n"
        "print('defined')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "WRAPYFI_DEFAULT_MWARE": "zeromk"})
    assert done.returncode == 1 and "defined" not in done.stdout
    assert "WRAPYFI_DEFAULT_MWARE: unknown middleware 'zeromk'; did you mean 'zeromq'?" in done.stderr


def _listed(key: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(entry.key == key for entry in list_directory()):
        assert time.monotonic() < deadline, f"{key!r} was never listed"


class Warnings(logging.Handler):
    """The discovery logger's warnings, with a wait on a condition for the one a test expects."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.changed:
            self.messages.append(record.getMessage())
            self.changed.notify_all()

    def wait_for(self, needle: str, timeout: float = 10.0) -> str:
        with self.changed:
            assert self.changed.wait_for(lambda: any(needle in m for m in self.messages), timeout), \
                f"no warning about {needle!r}: {self.messages}"
            return next(m for m in self.messages if needle in m)


@pytest.fixture
def warnings(monkeypatch):
    monkeypatch.setattr(waiting, "WAIT_WARNING", 1.0)
    handler = Warnings()
    logger = logging.getLogger("wrapyfi_like.zeromq.discovery")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def test_a_listener_without_publisher_names_the_similar_topic_that_has_one(warnings):
    base = f"/mistakes/{uuid.uuid4().hex[:8]}"
    publisher = Node("publish", f"{base}/temperature", "--count", "1")
    listener = None
    try:
        publisher.wait_for(event_is("ready"))
        _listed(publisher_key(f"{base}/temperature"))
        listener = Listener("Typo", f"{base}/temprature", should_wait=False)
        message = warnings.wait_for(f"listener of '{base}/temprature'")
        assert f"has found no publisher in 1 s; did you mean '{base}/temperature'?" in message
    finally:
        publisher.stop()
        if listener is not None:
            listener.close()


def test_a_publisher_without_listener_names_the_similar_topic_that_has_one(warnings):
    base = f"/mistakes/{uuid.uuid4().hex[:8]}"
    listener = Node("listen", f"{base}/camera/left", "--count", "1")
    publisher = None
    try:
        listener.wait_for(event_is("ready"))
        _listed(listener_key(f"{base}/camera/left"))
        publisher = Publisher("Typo", f"{base}/camera/lef", should_wait=False)
        message = warnings.wait_for(f"publisher of '{base}/camera/lef'")
        assert f"has found no listener in 1 s; did you mean '{base}/camera/left'?" in message
    finally:
        listener.stop()
        if publisher is not None:
            publisher.close()


def test_a_peer_that_exists_and_a_closed_communicator_are_never_warned(warnings, topic):
    listener = Listener("Paired", topic, should_wait=False)
    publisher = Publisher("Paired", topic, should_wait=False)
    closed = Listener("Closed", topic + "/closed", should_wait=False)
    closed.close()
    lonely = Listener("Lonely", topic + "/lonely", should_wait=False)  # due last: its warning ends the wait
    try:
        warnings.wait_for(f"'{topic}/lonely'")
        about = [f"listener of '{topic}' ", f"publisher of '{topic}' ", f"listener of '{topic}/closed' "]
        assert [m for m in warnings.messages if m.startswith(tuple(about))] == []
    finally:
        listener.close(), publisher.close(), lonely.close()


def test_a_client_without_server_names_the_similar_service_that_has_one(warnings):
    base = f"/mistakes/{uuid.uuid4().hex[:8]}"
    server = Node("reply", f"{base}/add_two")
    client = None
    try:
        server.wait_for(event_is("ready"))
        _listed(service_key(f"{base}/add_two"))
        client = Client("Typo", f"{base}/add_tow", value_formats=[ValueFormat("NativeObject")])
        message = warnings.wait_for(f"client of '{base}/add_tow'")
        assert f"has found no server in 1 s; did you mean '{base}/add_two'?" in message
    finally:
        server.stop()
        if client is not None:
            client.close()
