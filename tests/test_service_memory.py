"""A reply server and the discovery directory hold bounded memory whatever a peer sends.

A libzmq ROUTER bounds each frame but holds a multipart message whole until its last frame, so
an unfinished message of six frames, each under the limit, made a server hold six frames (and
the directory six per connection). Servers and the directory now read with our own ZMTP reader
(``zeromq/router.py``), which refuses such a message when the frame that breaks the limit
announces itself and throws the rest away as it arrives.

Separate processes over 127.0.0.1: a reply server (or a directory host), hostile raw ZMTP DEALER
connections written by this test, honest requests (or syncs) from this test. The peak memory of
the node (``VmHWM`` after resetting it through ``/proc/<pid>/clear_refs``) is read from /proc.
Run as a script, this module is one of the node processes (``serve`` or ``host``).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest


from test_service_availability import Process, rss_bytes
from wrapyfi_like.middlewares.ports import free_port
from wrapyfi_like.middlewares.zeromq import zmtp

pytestmark = pytest.mark.timeout(60)

MiB = 1 << 20
SERVER_LIMIT = 64 * MiB
"""The server's max_message_size."""
SERVER_FRAME = 40 * MiB
"""Each frame of the unfinished message to the server: under the limit alone, six are 240 MiB.
Above glibc's largest mmap threshold (32 MiB), so a frame let go is given back to the system
at once and the resident memory after the refusal shows what is still held."""
SERVER_PEAK_LIMIT = SERVER_FRAME + 16 * MiB
"""Bound on the server's peak growth: the frame it reads before the next one breaks the limit;
libzmq held all six (240 MiB)."""
DIRECTORY_FRAME = 1_000_000
"""Each frame of the unfinished messages to the directory: just under its 1 MiB request limit."""
DIRECTORY_CONNECTIONS = 24
"""Hostile connections to the directory, each with an unfinished 6-frame message: libzmq held
6 MB per connection, 144 MB in all."""
DIRECTORY_PEAK_LIMIT = 48 * MiB
"""Bound on the directory host's peak growth (each connection holds at most one frame at a time
while it is read; most are let go before the next connection is read)."""
HONEST_ROUNDS = 20


def serve(topic: str) -> None:
    """An echo server with max_message_size SERVER_LIMIT, until stdin closes."""
    import json
    import threading

    from wrapyfi_like.connect.formats import ValueFormat
    from wrapyfi_like.connect.servers import Server

    server = Server("Echo", topic, value_formats=[ValueFormat()], max_message_size=SERVER_LIMIT)

    def answer() -> None:
        while True:
            request = server.await_request()
            server.reply(request, [request.args[0]])

    threading.Thread(target=answer, daemon=True).start()
    print(json.dumps({"event": "ready", "endpoint": server._transport.endpoint}), flush=True)
    sys.stdin.read()
    print(json.dumps({"event": "stopped", "statistics": server.statistics()}), flush=True)


def host(key: str) -> None:
    """Host the directory (WRAPYFI_ZEROMQ_DISCOVERY is this process's own) and announce ``key``
    until stdin closes; then report the directory's counters."""
    import json

    from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent, list_directory

    agent = NodeAgent.get()
    agent.announce(key, "tcp://127.0.0.1:9", {})
    list_directory(timeout=10)  # answered once a directory is up: on a fresh address, ours
    assert agent.directory is not None, "this process did not host the directory"
    print(json.dumps({"event": "ready"}), flush=True)
    sys.stdin.read()
    print(json.dumps({"event": "stopped", "statistics": agent.directory.statistics()}), flush=True)


# -- helpers --------------------------------------------------------------------------------------

def hostile_dealer(endpoint: str) -> socket.socket:
    """A raw connection that completes a ZMTP handshake as a DEALER."""
    host, port = endpoint[len("tcp://"):].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=20)
    sock.sendall(zmtp.GREETING + zmtp.ready(b"DEALER"))
    return sock


def send_unfinished(sock: socket.socket, heads: list[bytes], frame_size: int, frames: int = 6) -> None:
    """``heads`` then ``frames`` frames of ``frame_size`` bytes, every one flagged MORE: the message never ends."""
    for head in heads:
        sock.sendall(zmtp.frame_head(len(head), True) + head)
    chunk = bytes(frame_size)
    for _ in range(frames):
        sock.sendall(zmtp.frame_head(frame_size, True))
        sock.sendall(chunk)


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def stop(node: Process) -> dict:
    node.process.stdin.close()
    counts = node.wait_for("stopped")["statistics"]
    node.process.wait(10)
    return counts


class NodeProcess(Process):
    """A :class:`Process` of this module whose stdin stays open until :func:`stop`."""

    def __init__(self, *args: str, stderr_path: Path, env: dict) -> None:
        import subprocess
        import threading

        self._stderr = open(stderr_path, "w")
        self.process = subprocess.Popen([sys.executable, __file__, *args], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self._stderr, text=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1", **env})
        self._events = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()


# -- the tests ------------------------------------------------------------------------------------

def test_an_unfinished_message_of_six_big_frames_to_a_server_is_refused_with_memory_bounded(topic, tmp_path):
    from wrapyfi_like.connect.clients import Client
    from wrapyfi_like.connect.formats import ValueFormat
    from wrapyfi_like.middlewares.zeromq.reqrep import REQUEST_ID

    server = NodeProcess("serve", topic, stderr_path=tmp_path / "server.err", env={})
    client = Client("Echo", topic, value_formats=[ValueFormat()], request_timeout=10, max_message_size=SERVER_LIMIT)
    hostile = []
    try:
        endpoint = server.wait_for("ready")["endpoint"]
        assert client.request(("warm",), {}) == ["warm"]
        pid = server.process.pid
        before = rss_bytes(pid)
        reset_peak(pid)
        hostile.append(hostile_dealer(endpoint))
        send_unfinished(hostile[-1], [REQUEST_ID.pack(0)], SERVER_FRAME)
        for index in range(HONEST_ROUNDS):  # honest requests are answered with the hostile messages open
            assert client.request((f"honest {index}",), {}) == [f"honest {index}"]
        peak, after = peak_bytes(pid) - before, rss_bytes(pid) - before
        print(f"server: RSS {before / MiB:.0f} MiB before; peak +{peak / MiB:.1f} MiB, after +{after / MiB:.1f} MiB "
              f"(6 x {SERVER_FRAME / MiB:.0f} MiB unfinished)")
        assert peak < SERVER_PEAK_LIMIT
        assert after < 8 * MiB
        for sock in hostile:
            sock.close()
        counts = stop(server)
        assert counts["malformed"] == 1  # the unfinished message: refused once, counted
        assert counts["received"] == 1 + HONEST_ROUNDS
    finally:
        client.close()
        for sock in hostile:
            sock.close()
        server.stop()


def test_unfinished_messages_to_the_directory_are_refused_with_memory_bounded_and_syncs_go_on(tmp_path, monkeypatch):
    import zmq

    from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent, list_directory
    from wrapyfi_like.middlewares.zeromq.settings import ZeroMQSettings

    address = f"tcp://127.0.0.1:{free_port()}"
    monkeypatch.setenv("WRAPYFI_ZEROMQ_DISCOVERY", address)
    key = "/test/directory-memory"
    node = NodeProcess("host", key, stderr_path=tmp_path / "host.err", env={"WRAPYFI_ZEROMQ_DISCOVERY": address})
    hostile = []
    agent = None
    try:
        node.wait_for("ready")
        pid = node.process.pid
        before = rss_bytes(pid)
        reset_peak(pid)
        for _ in range(DIRECTORY_CONNECTIONS):
            hostile.append(hostile_dealer(address))
            send_unfinished(hostile[-1], [], DIRECTORY_FRAME)
        agent = NodeAgent(zmq.Context.instance(), ZeroMQSettings.from_environment())  # an honest node: it syncs
        watch = agent.watch(key)
        deadline = time.monotonic() + 10
        while not watch.endpoints:
            assert time.monotonic() < deadline, "the honest node's sync was not answered"
            zmq.select([watch.fileno()], [], [], 0.1)
        for _ in range(HONEST_ROUNDS):  # honest listings too
            assert [entry.key for entry in list_directory(address)] == [key]
        peak, after = peak_bytes(pid) - before, rss_bytes(pid) - before
        print(f"directory: RSS {before / MiB:.0f} MiB before; peak +{peak / MiB:.1f} MiB, after +{after / MiB:.1f} "
              f"MiB ({DIRECTORY_CONNECTIONS} connections, 6 x {DIRECTORY_FRAME / 1e6:.0f} MB unfinished each)")
        assert peak < DIRECTORY_PEAK_LIMIT
        assert after < 8 * MiB
        counts = stop(node)
        assert counts["malformed"] == DIRECTORY_CONNECTIONS
    finally:
        if agent is not None:
            agent.stop()
        for sock in hostile:
            sock.close()
        node.stop()


if __name__ == "__main__":
    {"serve": serve, "host": host}[sys.argv[1]](*sys.argv[2:])
