"""Driving discovery in tests: a :class:`~wrapyfi_like.middlewares.zeromq.discovery.directory.Directory`
directly (a clock the test moves, the ``clock`` and ``warm`` fixtures of conftest.py, and a sync
whose reply is decoded), or a real agent against a directory socket the test plays."""

import contextlib
import select
import time
from typing import Iterator

import zmq

from wrapyfi_like.middlewares.ports import free_port
from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent, protocol
from wrapyfi_like.middlewares.zeromq.discovery.protocol import Request, decode_reply
from wrapyfi_like.middlewares.zeromq.settings import ZeroMQSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sync(directory, peer, node, announcements=(), watched=(), seq=1):
    reply = directory.handle(peer, protocol.sync(seq, node, [list(a) for a in announcements], list(watched), ""))
    return decode_reply(reply)


@contextlib.contextmanager
def agent_with_fake_directory() -> Iterator[tuple[zmq.Socket, NodeAgent]]:
    """A ROUTER the test answers as the directory, bound first so the agent under test cannot
    host, and that agent."""
    address = f"tcp://127.0.0.1:{free_port()}"
    router = zmq.Context.instance().socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(address)
    agent = NodeAgent(zmq.Context.instance(), ZeroMQSettings("127.0.0.1", address, "/tmp", 0, "/0"))
    try:
        yield router, agent
    finally:
        agent.stop()
        router.close()


def next_sync(router: zmq.Socket) -> tuple[bytes, Request]:
    """The agent's next request to the fake directory, with the routing id to answer it on."""
    assert router.poll(5000), "the agent did not sync"
    routing_id, frame = router.recv_multipart()
    return routing_id, protocol.decode_request(frame)


def serve_until(host, condition, timeout=10.0):
    """Serve ``host`` (a ``ZmtpHost``) until ``condition()`` holds; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the host did not answer in time"
        select.select([host.fileno()], [], [], 0.05)
        host.serve(time.monotonic() + 0.05)
