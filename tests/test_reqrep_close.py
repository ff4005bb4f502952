"""Nothing hangs on close: ``close()`` from any thread ends a request or a serve in flight.

Before, a client's ``close()`` from another thread waited for the lock its in-flight request
held (forever with ``request_timeout=None``), and interpreter exit, which closes every client,
hung with it. Each in-flight call must now raise :class:`ClosedError` within
:data:`WAKE_BOUND` seconds of ``close()``, on both middlewares, and a process whose daemon thread
waits in a request must exit.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from wrapyfi_like.connect.clients import Client
from wrapyfi_like.connect.formats import ValueFormat
from wrapyfi_like.connect.servers import Server
from wrapyfi_like.connect.wrapper import MiddlewareCommunicator
from wrapyfi_like.exceptions import ClosedError

pytestmark = pytest.mark.timeout(60)

WAKE_BOUND = 0.5
"""Seconds from ``close()`` to the in-flight call raising ClosedError."""
EXIT_BOUND = 2.0
"""Seconds from a program's last statement to its exit with a request in flight (0.5 s of that is
the linger queued messages get at exit)."""
MIDDLEWARES = ["zeromq", "inproc"]


def _server(topic: str, middleware: str) -> Server:
    return Server("Close", topic, value_formats=[ValueFormat()], middleware=middleware)


def _client(topic: str, middleware: str) -> Client:
    return Client("Close", topic, value_formats=[ValueFormat()], middleware=middleware, request_timeout=None)


def _closing_wakes(call, communicator, in_thread) -> float:
    """Seconds from ``communicator.close()`` (from this thread) until ``call`` (in flight on
    another thread) raised ClosedError."""
    started = time.monotonic()
    in_flight = in_thread(call)
    closer = None
    try:
        with pytest.raises(TimeoutError):
            in_flight.result(timeout=0.3)  # really waiting
        started = time.monotonic()
        closer = in_thread(communicator.close)
        with pytest.raises(ClosedError):
            in_flight.result(timeout=10)
        woke = time.monotonic() - started
        closer.result(timeout=10)  # close() itself returns too
        return woke
    finally:
        if closer is None:
            communicator.close()


@pytest.mark.parametrize("middleware", MIDDLEWARES)
def test_close_wakes_a_request_waiting_for_a_server(topic, middleware, in_thread):
    client = _client(topic, middleware)
    assert _closing_wakes(lambda: client.request((1,), {}), client, in_thread) < WAKE_BOUND


@pytest.mark.parametrize("middleware", MIDDLEWARES)
def test_close_wakes_a_request_waiting_for_its_reply(topic, middleware, in_thread):
    server, client = _server(topic, middleware), _client(topic, middleware)
    try:
        taken = in_thread(server.await_request)  # takes the request and never answers it
        woke = _closing_wakes(lambda: client.request((1,), {}), client, in_thread)
        assert taken.result(timeout=10).args == (1,)  # so the client was waiting for the reply
        assert woke < WAKE_BOUND
    finally:
        server.close()


@pytest.mark.parametrize("middleware", MIDDLEWARES)
def test_close_wakes_a_server_waiting_for_a_request(topic, middleware, in_thread):
    server = _server(topic, middleware)
    assert _closing_wakes(server.await_request, server, in_thread) < WAKE_BOUND


def test_closing_an_instance_wakes_its_request_in_flight(topic, in_thread):
    class Caller(MiddlewareCommunicator):
        @MiddlewareCommunicator.register("NativeObject", "zeromq", "Caller", topic, request_timeout=None)
        def call(self, x):
            return x,

    caller = Caller()
    caller.activate_communication(Caller.call, mode="request")
    assert _closing_wakes(lambda: caller.call(1), caller, in_thread) < WAKE_BOUND


EXIT_WITH_A_REQUEST_IN_FLIGHT = textwrap.dedent("""
    import sys, threading
    from wrapyfi_like.connect.clients import Client
    from wrapyfi_like.connect.formats import ValueFormat
    from wrapyfi_like.connect.servers import Server

    topic, wait_for = sys.argv[1], sys.argv[2]
    client = Client("Exit", topic, value_formats=[ValueFormat()], request_timeout=None)
    if wait_for == "reply":
        server = Server("Exit", topic, value_formats=[ValueFormat()])  # takes the request, never answers
        threading.Thread(target=client.request, args=((1,), {}), daemon=True).start()
        assert server.await_request().args == (1,)
    else:  # no server: the request waits for one
        started = threading.Event()
        threading.Thread(target=lambda: (started.set(), client.request((1,), {})), daemon=True).start()
        started.wait()
    print("in flight", flush=True)
""")


@pytest.mark.parametrize("wait_for", ["reply", "server"])
def test_interpreter_exit_with_a_request_in_flight_does_not_hang(topic, wait_for):
    child = subprocess.Popen([sys.executable, "-c", EXIT_WITH_A_REQUEST_IN_FLIGHT, topic, wait_for],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "in flight\n"
        exiting = time.monotonic()
        assert child.wait(timeout=10) == 0, child.stderr.read()
        assert time.monotonic() - exiting < EXIT_BOUND
    finally:
        child.kill()
        child.communicate()
