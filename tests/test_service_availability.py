"""A service stays available while one of its clients floods it and never reads its replies.

Three processes over real sockets on 127.0.0.1: a reply server, a hostile client (a raw DEALER
that sends junk, requests with a 1 MB codec id and valid requests for 64 KB replies, as fast as
the server takes them, and never reads a reply), and this test as the honest client. Before
servers stopped waiting to reply, every stuck reply held the server for 5 s and honest requests
timed out; now the honest client's round trips stay within :data:`HONEST_MAX_SECONDS`, and the
replies the hostile client never took are counted as dropped.

Run as a script, this module is one of those processes (``serve`` or ``flood``); the fuzz test in
``test_reqrep_fuzz.py`` uses the same server.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import msgpack
import pytest

pytestmark = pytest.mark.timeout(60)

MAX_SIZE = 2 * 1024 * 1024
"""The server's max_message_size: room for a 1 MB codec id, and oversized requests cheap to send."""
ECHO_SIZE = 64 * 1024
"""Bytes of each valid request the hostile client sends; the server echoes them back."""
FLOOD_BEFORE = 2000
"""Hostile requests sent before the honest round trips start: their replies are more than the
server's queue for the hostile client and its socket buffers hold (1000 replies before the fix)."""
HONEST_ROUND_TRIPS = 200
HONEST_MAX_SECONDS = 1.0
"""Bound on every honest round trip during the flood (each stuck reply cost 5 s before)."""
HONEST_MEDIAN_SECONDS = 0.1
"""Bound on the median honest round trip during the flood (about 1 ms without it)."""
SERVER_RSS_LIMIT = 200 << 20
"""Bound on the server's resident memory after the flood (1.2 GB before error replies were cut
and replies to a client that does not read were bounded)."""


# -- the processes --------------------------------------------------------------------------------

def _report(event: str, **fields) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def serve(topic: str) -> None:
    """Echo the first argument back until a request with ``"stop"``; then report the counts."""
    from wrapyfi_like.connect.formats import ValueFormat
    from wrapyfi_like.connect.servers import Server

    server = Server("Echo", topic, value_formats=[ValueFormat()], max_message_size=MAX_SIZE)
    _report("ready", endpoint=server._transport.endpoint, pid=os.getpid())
    while True:
        request = server.await_request()
        if len(request.args) == 1 and type(request.args[0]) is str and request.args[0] == "stop":
            server.reply(request, ["stopping"])
            _report("stopped", statistics=server.statistics())
            server.close()
            return
        try:
            server.reply(request, [request.args[0] if request.args else None])
        except Exception as error:  # as the reply mode does: the error goes back to the client
            server.reply_error(request, error)


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _codec_request(args: tuple) -> list[bytes]:
    from wrapyfi_like.encoding import Codec

    return [bytes(frame) for frame in Codec().encode((args, {}))]


def _huge_codec_id_header() -> bytes:
    """A request header naming a plugin codec id of 1 MB (extension 15, as in docs/wire.md)."""
    call = msgpack.ExtType(15, msgpack.packb(["x" * (1 << 20), 1, 2]))
    return b"\x93\x01" + msgpack.packb(0) + msgpack.packb(call)


def flood(endpoint: str) -> None:
    """Send requests forever without reading a reply; report how many every 500."""
    import zmq

    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVBUF, 4096)  # take as little as the kernel allows: never read
    socket.setsockopt(zmq.RCVHWM, 1)
    socket.connect(endpoint)
    # per 8 requests: one valid (its 64 KB reply fills the hostile's buffers fast), one with a
    # 1 MB codec id (a server that echoed it would fill them faster), six junk (many replies)
    bodies = [_codec_request((os.urandom(ECHO_SIZE),)), [_huge_codec_id_header()], *[[b"\x93\x01junk"]] * 6]
    sent = 0
    while True:
        body = bodies[sent % len(bodies)]
        socket.send_multipart([struct.pack("<Q", sent), *body])
        sent += 1
        if sent % 500 == 0:
            _report("flooding", sent=sent)


# -- helpers for the tests ------------------------------------------------------------------------

class Process:
    """A node running as a process (``script``: this module unless given); its JSON events
    arrive in order."""

    def __init__(self, *args: str, stderr_path: Path, script: str = __file__) -> None:
        self._stderr = open(stderr_path, "w")
        self.process = subprocess.Popen([sys.executable, script, *args], stdout=subprocess.PIPE,
                                        stderr=self._stderr, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self._events: list[dict] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            with self._changed:
                self._events.append(json.loads(line))
                self._changed.notify_all()
        with self._changed:
            self._events.append({"event": "exited"})
            self._changed.notify_all()

    def wait_for(self, event: str, timeout: float = 20.0, **at_least: int) -> dict:
        """The first event named ``event`` whose fields are at least ``at_least``."""
        def found() -> Optional[dict]:
            for item in self._events:
                if item["event"] == event and all(item.get(key, 0) >= value for key, value in at_least.items()):
                    return item
            return None
        with self._changed:
            assert self._changed.wait_for(lambda: found() or self._events[-1:] == [{"event": "exited"}], timeout), \
                f"no {event} {at_least} within {timeout} s"
            item = found()
        assert item is not None, f"the process exited (code {self.process.wait(5)}) before {event} {at_least}"
        return item

    def last(self, event: str) -> dict:
        with self._changed:
            return [item for item in self._events if item["event"] == event][-1]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        self._stderr.close()


def honest_client(topic: str, timeout: float = 5.0):
    from wrapyfi_like.connect.clients import Client
    from wrapyfi_like.connect.formats import ValueFormat

    return Client("Echo", topic, value_formats=[ValueFormat()], request_timeout=timeout, max_message_size=MAX_SIZE)


def round_trips(client, count: int) -> list[float]:
    """Seconds per honest round trip; each reply is checked."""
    rng = random.Random(1)
    times = []
    for _ in range(count):
        payload = rng.randbytes(1024)
        start = time.monotonic()
        reply, = client.request((payload,), {})
        times.append(time.monotonic() - start)
        assert reply == payload
    return times


def stop_server(client, server: Process) -> dict:
    assert client.request(("stop",), {}) == ["stopping"]
    counts = server.wait_for("stopped")["statistics"]
    assert server.process.wait(10) == 0
    return counts


# -- the test -------------------------------------------------------------------------------------

def test_a_client_that_floods_and_never_reads_does_not_delay_honest_clients(topic, tmp_path):
    server = Process("serve", topic, stderr_path=tmp_path / "server.err")
    hostile = None
    client = honest_client(topic)
    try:
        endpoint = server.wait_for("ready")["endpoint"]
        round_trips(client, 5)  # connected and warm
        hostile = Process("flood", endpoint, stderr_path=tmp_path / "hostile.err")
        hostile.wait_for("flooding", sent=FLOOD_BEFORE)
        times = round_trips(client, HONEST_ROUND_TRIPS)
        flooded, rss = hostile.last("flooding")["sent"], rss_bytes(server.process.pid)
        print(f"honest round trips under flood: median {statistics.median(times) * 1e3:.2f} ms, "
              f"max {max(times) * 1e3:.1f} ms; hostile sent >= {flooded}; server RSS {rss >> 20} MiB")
        assert hostile.process.poll() is None, "the hostile client stopped flooding"
        hostile.stop()
        counts = stop_server(client, server)
        print(f"server {counts}")
        assert rss < SERVER_RSS_LIMIT
        assert max(times) < HONEST_MAX_SECONDS
        assert statistics.median(times) < HONEST_MEDIAN_SECONDS
        assert counts["dropped"] > 0  # the replies the hostile client never read: counted
        assert counts["malformed"] > 0 and counts["errors"] > 0
        assert client.statistics()["timeouts"] == 0
    finally:
        client.close()
        for process in (hostile, server):
            if process is not None:
                process.stop()


if __name__ == "__main__":
    {"serve": serve, "flood": flood}[sys.argv[1]](*sys.argv[2:])
