"""An outlet's ipc connection gets a send buffer that holds a large message.

libzmq sets ``ZMQ_SNDBUF`` on tcp connections only, so an ipc connection kept the kernel's
~200 KB, and libzmq writes to a Unix socket again only when at most a quarter of its buffer is in
flight: a ``zero_copy="safe"`` publisher's wait for libzmq to let go of a 1 MB buffer lasted
until its slowest listener had read all but ~50 KB of it. With 4 MiB asked for (8 MiB granted),
a 1 MB message is written out at once.
"""

import os
import socket
import time

import pytest
import zmq

from wrapyfi_like.middlewares.zeromq.outlets import IPC_SEND_BUFFER, Outlet, _widen_send_buffer

pytestmark = pytest.mark.timeout(30)

WMEM_MAX = int(open("/proc/sys/net/core/wmem_max").read()) if os.path.exists("/proc/sys/net/core/wmem_max") else 0
DEFAULT_BUFFER = int(open("/proc/sys/net/core/wmem_default").read()) if WMEM_MAX else 0


def _send_buffers_of_connections_to(path: str) -> list[int]:
    """SO_SNDBUF of every Unix socket of this process connected to ``path`` (inspected through a
    duplicate of each descriptor, so libzmq's own are never touched)."""
    sizes = []
    for name in os.listdir("/proc/self/fd"):
        try:
            duplicate = os.dup(int(name))
        except OSError:
            continue
        try:
            sock = socket.socket(fileno=duplicate)
        except OSError:
            os.close(duplicate)
            continue
        with sock:
            try:
                if sock.family == socket.AF_UNIX and sock.getpeername() == path:
                    sizes.append(sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))
            except OSError:
                pass
    return sizes


@pytest.mark.skipif(WMEM_MAX <= DEFAULT_BUFFER, reason="the kernel caps send buffers at their default "
                                                       "(net.core.wmem_max): nothing to widen to")
def test_an_outlets_ipc_connection_gets_a_send_buffer_for_large_messages(tmp_path):
    context = zmq.Context.instance()
    path = f"{tmp_path}/listener.sock"
    peer = context.socket(zmq.DEALER)
    peer.setsockopt(zmq.LINGER, 0)
    peer.bind(f"ipc://{path}")
    outlet = Outlet(context, f"ipc://{path}", queue_depth=1000, linger_ms=0)
    try:
        assert not outlet.tuned
        deadline = time.monotonic() + 10
        while not (outlet.up and outlet.tuned):  # the publisher reads this news before each send
            assert time.monotonic() < deadline, "the outlet's connection did not complete within 10 s"
            outlet.monitor.poll(100)
            outlet.check()
        assert _send_buffers_of_connections_to(path) == [2 * min(IPC_SEND_BUFFER, WMEM_MAX)]
    finally:
        outlet.close(0)
        peer.close()


def test_a_tcp_outlet_needs_no_widening_and_a_stale_descriptor_is_left_alone():
    context = zmq.Context.instance()
    outlet = Outlet(context, "tcp://127.0.0.1:9", queue_depth=10, linger_ms=0)
    assert outlet.tuned  # libzmq's ZMQ_SNDBUF (and the kernel's autotuning) cover tcp
    outlet.close(0)
    read, write = os.pipe()  # a number reused by something that is no socket
    try:
        _widen_send_buffer(read)  # must neither raise nor close it
        os.fstat(read)  # still open: borrowed, never closed
    finally:
        os.close(read)
        os.close(write)
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        _widen_send_buffer(left.fileno())
        if WMEM_MAX:  # Linux reports twice what it was asked for, capped at wmem_max
            assert left.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * min(IPC_SEND_BUFFER, WMEM_MAX)
        left.sendall(b"still usable")
        assert right.recv(64) == b"still usable"


CHILD_WITHOUT_ASYNCIO = """
import sys
from wrapyfi_like.middlewares.zeromq import ListenerTransport, PublisherTransport
listener = ListenerTransport("/outlets/asyncio", carrier="ipc")
publisher = PublisherTransport("/outlets/asyncio", carrier="ipc", should_wait=True, wait_timeout=20)
publisher.send([b"\\x93\\x01\\x00\\xc0"])
assert listener.recv(20.0) is not None, "nothing arrived"
publisher.close(), listener.close()
print("asyncio" in sys.modules)
"""


def test_outlets_read_their_monitor_without_importing_asyncio(private_discovery):
    """Start-up cost: ``zmq.utils.monitor`` imports asyncio, 20 ms of every process's launch; an
    outlet reads its monitor's events itself, through connect, handshake and a send."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", CHILD_WITHOUT_ASYNCIO], capture_output=True, text=True, timeout=25,
                         env={**os.environ, **private_discovery})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False", "asyncio was imported"
