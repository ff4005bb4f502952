"""How a ``zero_copy="safe"`` publisher should give the caller its buffer back: measured.

``python -m benchmarks.ownership_probe --listeners 1,4 --sizes 64K,1M --carriers ipc,tcp``

One publisher process and N listener processes carry every *way* at once, on a topic each, and
alternate them block by block (the order flipping every block), so all ways meet the same state
of a loaded machine. The ways:

- ``tracked``: our publisher sending large buffers zero-copy and waiting on pyzmq's
  ``MessageTracker`` before ``send`` returns;
- ``copied``: our publisher copying them once into a frame libzmq owns (shared by every
  listener), returning without a wait;
- ``unsafe``: our publisher with ``zero_copy="unsafe"`` (no copy, no wait: not safe);
- ``pyzmq``: one PUB socket and a SUB per listener, ``copy=False`` untracked (the benchmark
  tables' baseline: not safe either);
- ``pyzmq_tracked``: the same with ``track=True`` and a wait on the tracker (pyzmq's own safe way);
- ``outlet``: our publisher as it is configured without CURVE (its own ZMTP outlets);
- ``libzmq_outlet``: the same publisher forced onto libzmq's ``DEALER`` outlets (the CURVE path
  without keys: ``COPY_BELOW``'s copy or tracked wait, libzmq's pipe and I/O thread);
- ``zmtp``: a plain blocking socket that speaks ZMTP to our listener itself (greeting, ``READY``
  as a DEALER, each message one ``sendmsg`` of frame heads and buffers; safe: the kernel has
  copied the buffers when ``sendmsg`` returns), reading the listener's acks back every 64 sends:
  the probe for a publisher without libzmq's I/O thread (issue 21).

``tracked`` and ``copied`` are our ``"block"`` publisher with its ownership step set by hand
(whatever ``COPY_BELOW`` would pick), so both can be measured at every size. A block is
``--messages`` sends flat out; its rate is over the time from its first send to every listener's
report of its last message. Per way: the median and every block's rate, the median and 90th
percentile of ``send``, and CPU µs per message of the publisher process and of one listener
process (all threads). With ``--profile``, also µs per message inside ``send``: the ownership
step (frame creation or copy), the sends to every listener, the tracker wait, waits for room and
ack reading. Each process has its own discovery (``WRAPYFI_ZEROMQ_DISCOVERY``), so runs never
meet each other's topics.
"""

from __future__ import annotations

import argparse
import select
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import zmq

from wrapyfi_like.middlewares.ports import free_port

WAYS = ("tracked", "copied", "unsafe", "pyzmq", "pyzmq_tracked", "zmtp", "outlet", "libzmq_outlet")
OUTLETS = {"outlet": "our own outlet (the default without CURVE)",
           "libzmq_outlet": "libzmq's DEALER outlet (the CURVE path, here without keys)"}
"""Our publisher as configured, or forced onto libzmq's outlet: old and new in one pair of processes."""
OURS = {"tracked": "_tracked", "copied": "_copied", "unsafe": "_shared"}
"""Our ways, by the publisher's ownership step (a function of the publisher module)."""
GREETING = b"greeting"
REPO = Path(__file__).resolve().parents[1]


def _endpoint(spec: dict, way: str) -> str:
    return f"ipc://{spec['workdir']}/{way}" if spec["carrier"] == "ipc" else f"tcp://127.0.0.1:{spec['ports'][way]}"


class _PyzmqSender:
    def __init__(self, spec: dict, way: str) -> None:
        self._track = way == "pyzmq_tracked"
        self._socket = zmq.Context.instance().socket(zmq.PUB)
        self._socket.setsockopt(zmq.SNDHWM, 0)  # the tables' baseline: never drops, as ours with "block"
        self._socket.bind(_endpoint(spec, way))

    def send(self, frames: list) -> None:
        if self._track:
            self._socket.send_multipart(frames, copy=False, track=True).wait()
        else:
            self._socket.send_multipart(frames, copy=False)

    def close(self) -> None:
        self._socket.close(linger=0)


class _PyzmqReceiver:
    def __init__(self, spec: dict, way: str) -> None:
        self._socket = zmq.Context.instance().socket(zmq.SUB)
        self._socket.setsockopt(zmq.RCVHWM, 0)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"")
        self._socket.connect(_endpoint(spec, way))

    def recv(self, timeout: float) -> Optional[list]:
        return self._socket.recv_multipart(copy=False) if self._socket.poll(timeout * 1000) else None

    def close(self) -> None:
        self._socket.close(linger=0)


class _ZmtpSender:
    """Plain sockets writing ZMTP frames to every listener of ``way``'s topic (found through discovery)."""

    def __init__(self, spec: dict, way: str) -> None:
        from wrapyfi_like.middlewares import envelope
        from wrapyfi_like.middlewares.zeromq import PublisherTransport, zmtp
        from wrapyfi_like.middlewares.zeromq.keys import topic_frame

        finder = PublisherTransport(f"/ownership-probe/{way}", carrier=spec["carrier"], should_wait=True)
        with finder._lock:
            finder._follow()
            finder._wait_for_listener()
            while len(finder._watch.endpoints) < spec["listeners"]:
                select.select([finder._watch.fileno()], [], [], 0.1)
            endpoints = sorted(finder._watch.endpoints)
        finder.close()
        self._sockets = [_zmtp_connect(endpoint) for endpoint in endpoints]
        self._head, self._id, self._seq = zmtp.frame_head, envelope.new_publisher_id(), 0
        self._pack, self._topic = envelope.pack, topic_frame(f"/ownership-probe/{way}")

    def send(self, frames: list) -> None:
        self._seq += 1
        head, parts = self._head, []
        message = [self._topic, self._pack(self._id, self._seq), *frames]
        last = len(message) - 1
        for index, frame in enumerate(message):
            view = memoryview(frame).cast("B")
            parts += (head(view.nbytes, index < last), view)
        for sock in self._sockets:
            sock.sendall(b"".join(parts)) if sum(len(p) for p in parts) < 4096 else _send_all(sock, parts)
            if self._seq % 64 == 0:
                try:
                    while sock.recv(65536, socket.MSG_DONTWAIT):
                        pass
                except BlockingIOError:
                    pass

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()


def _send_all(sock: socket.socket, parts: list) -> None:
    sent, total = sock.sendmsg(parts), sum(memoryview(part).nbytes for part in parts)
    while sent < total:
        sent += sock.send(b"".join(bytes(part) for part in parts)[sent:])


def _zmtp_connect(endpoint: str) -> socket.socket:
    from wrapyfi_like.middlewares.zeromq import outlets, zmtp

    if endpoint.startswith("ipc://"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, outlets.IPC_SEND_BUFFER)
        sock.connect(endpoint[len("ipc://"):])
    else:
        host, port = endpoint[len("tcp://"):].rsplit(":", 1)
        sock = socket.create_connection((host, int(port)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(zmtp.GREETING + zmtp.ready(b"DEALER"))
    got = b""
    while len(got) < zmtp.GREETING_SIZE + 2 or len(got) < zmtp.GREETING_SIZE + 2 + got[zmtp.GREETING_SIZE + 1]:
        got += sock.recv(4096)
    return sock


class _NoCurve:
    """Keys that are none: a publisher given these uses libzmq's outlets without CURVE."""

    def apply(self, socket: zmq.Socket) -> None:
        pass


def _outlet_sender(spec: dict, way: str) -> Any:
    from wrapyfi_like.middlewares.zeromq import PublisherTransport, publisher

    transport = PublisherTransport(f"/ownership-probe/{way}", carrier=spec["carrier"], should_wait=True)
    if way == "libzmq_outlet":
        transport._keys = _NoCurve()
        transport._own, transport._finish_rests, transport._hold = publisher._copied_or_tracked, False, list
        publisher._start_frame_collector()
    return transport


def _ours_sender(spec: dict, way: str) -> Any:
    from wrapyfi_like.middlewares.zeromq import PublisherTransport, publisher

    transport = PublisherTransport(f"/ownership-probe/{way}", carrier=spec["carrier"], should_wait=True,
                                   zero_copy="unsafe" if way == "unsafe" else "safe")
    transport._own = getattr(publisher, OURS[way])  # the step measured, whatever the size
    return transport


def _ours_receiver(spec: dict, way: str) -> Any:
    from wrapyfi_like.middlewares.zeromq import ListenerTransport

    return ListenerTransport(f"/ownership-probe/{way}", carrier=spec["carrier"])


def _profile() -> dict[str, float]:
    """Seconds spent in each part of our publisher's ``send``, summed while the probe runs."""
    from wrapyfi_like.middlewares.zeromq import outlets, publisher, zmtp_outlet

    spent: dict[str, float] = {}

    def timed(name: str, function: Callable) -> Callable:
        def measured(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - started
        return measured

    for outlet in (outlets.Outlet, zmtp_outlet.ZmtpOutlet):
        outlet.try_send = timed("sends", outlet.try_send)
        outlet.read_acks = timed("acks", outlet.read_acks)
    cls = publisher.ZeroMQPublisherTransport
    cls._wait_for_trackers = timed("tracker wait", cls._wait_for_trackers)
    cls._wait_for_room = timed("room wait", cls._wait_for_room)
    cls._write_rests = timed("rest writes", cls._write_rests)
    for name in OURS.values():
        setattr(publisher, name, timed("ownership step", getattr(publisher, name)))
    return spent


def _order(spec: dict, block: int) -> list[str]:
    return spec["ways"] if block % 2 == 0 else spec["ways"][::-1]


def run_sender(spec: dict) -> dict:
    spent = _profile() if spec["profile"] else {}
    reports = zmq.Context.instance().socket(zmq.PULL)
    reports.bind(spec["reports"])
    senders = {way: _ours_sender(spec, way) if way in OURS else _ZmtpSender(spec, way) if way == "zmtp"
               else _outlet_sender(spec, way) if way in OUTLETS else _PyzmqSender(spec, way) for way in spec["ways"]}
    payload = np.arange(spec["size"] // 4, dtype=np.float32)
    for way, sender in senders.items():  # until every listener has one: every connection is complete
        ready: set[int] = set()
        while len(ready) < spec["listeners"]:
            sender.send([GREETING, payload])
            while reports.poll(100):
                ready.add(json.loads(reports.recv())["listener"])
    rates: dict[str, list[float]] = {way: [] for way in senders}
    sends: dict[str, list[float]] = {way: [] for way in senders}
    cpu: dict[str, list[tuple[float, float]]] = {way: [] for way in senders}
    parts: dict[str, dict[str, list[float]]] = {way: {} for way in senders}
    header = b"h" * 40
    for block in range(spec["blocks"]):
        for way in _order(spec, block):
            send, count = senders[way].send, spec["messages"]
            spent.clear()
            cpu_started, started = time.process_time(), time.perf_counter()
            for _ in range(count):
                before = time.perf_counter()
                send([header, payload])
                sends[way].append(time.perf_counter() - before)
            listener_cpu = sum(json.loads(reports.recv())["cpu_s"] for _ in range(spec["listeners"]))
            rates[way].append(count / (time.perf_counter() - started))
            cpu[way].append(((time.process_time() - cpu_started) / count, listener_cpu / spec["listeners"] / count))
            for part, seconds in spent.items():
                parts[way].setdefault(part, []).append(seconds / count)
    for sender in senders.values():
        sender.close()
    reports.close(linger=0)
    return {way: {"msgs_per_s": statistics.median(rates[way]), "blocks": [round(rate) for rate in rates[way]],
                  "send_median_us": 1e6 * statistics.median(sends[way]),
                  "send_p90_us": 1e6 * sorted(sends[way])[int(0.9 * len(sends[way]))],
                  "cpu_us_publisher": 1e6 * statistics.median(c[0] for c in cpu[way]),
                  "cpu_us_listener": 1e6 * statistics.median(c[1] for c in cpu[way]),
                  "profile_us": {part: 1e6 * statistics.median(values) for part, values in parts[way].items()}}
            for way in senders}


def run_listener(spec: dict) -> dict:
    reports = zmq.Context.instance().socket(zmq.PUSH)
    reports.connect(spec["reports"])
    receivers = {way: _ours_receiver(spec, way) if way in OURS or way in OUTLETS or way == "zmtp"
                 else _PyzmqReceiver(spec, way) for way in spec["ways"]}
    me = spec["listener"]
    for way, receiver in receivers.items():
        while (frames := receiver.recv(60)) is None or bytes(frames[0]) != GREETING:
            if frames is None:
                raise RuntimeError(f"no greeting on {way} within 60 s")
        reports.send(json.dumps({"listener": me}).encode())
    for block in range(spec["blocks"]):
        for way in _order(spec, block):
            cpu_started, got = time.process_time(), 0
            while got < spec["messages"]:
                frames = receivers[way].recv(60)
                if frames is None:
                    raise RuntimeError(f"{way}: {got} of {spec['messages']} messages within 60 s")
                if bytes(frames[0]) != GREETING:  # greetings sent before every listener had one
                    got += 1
            reports.send(json.dumps({"listener": me, "cpu_s": time.process_time() - cpu_started}).encode())
    for receiver in receivers.values():
        receiver.close()
    reports.close(linger=2000)
    return {}


def probe(listeners: int, size: int, carrier: str, ways: list[str], blocks: int, messages: int,
          profile: bool) -> dict:
    """One run: a publisher process and ``listeners`` listener processes carrying ``ways``."""
    with tempfile.TemporaryDirectory(prefix="wl-ownership-") as workdir:
        spec = {"listeners": listeners, "size": size, "carrier": carrier, "ways": ways, "blocks": blocks,
                "messages": messages, "profile": profile, "workdir": workdir,
                "reports": f"ipc://{workdir}/reports", "ports": {way: free_port() for way in ways}}
        env = dict(os.environ, WRAPYFI_ZEROMQ_DISCOVERY=f"tcp://127.0.0.1:{free_port()}",
                   WRAPYFI_ZEROMQ_IPC_DIR=workdir)
        command = [sys.executable, "-m", "benchmarks.ownership_probe", "--role"]
        processes = [subprocess.Popen(command + [json.dumps({**spec, "role": "listener", "listener": index})],
                                      cwd=REPO, env=env, stdout=subprocess.DEVNULL) for index in range(listeners)]
        sender = subprocess.run(command + [json.dumps({**spec, "role": "sender"})], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=600)
        for process in processes:
            process.wait(timeout=60)
        if sender.returncode:
            raise RuntimeError(f"the publisher process failed: {sender.stderr[-2000:]}")
        return json.loads(sender.stdout.splitlines()[-1])


def _size(text: str) -> int:
    units = {"K": 1024, "M": 1024 * 1024}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--listeners", default="1,4", help="listener processes per run, e.g. 1,4,8")
    parser.add_argument("--sizes", default="64K,1M", help="payload sizes, e.g. 64K,256K,1M")
    parser.add_argument("--carriers", default="ipc,tcp")
    parser.add_argument("--ways", default="tracked,copied,unsafe,pyzmq,pyzmq_tracked")
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--messages", type=int, default=100, help="messages per block")
    parser.add_argument("--profile", action="store_true", help="also time the parts of our publisher's send")
    args = parser.parse_args()
    if args.role:
        spec = json.loads(args.role)
        result = (run_sender if spec["role"] == "sender" else run_listener)(spec)
        sys.stdout.write(json.dumps(result) + "\n")
        return
    ways = args.ways.split(",")
    unknown = set(ways) - set(WAYS)
    if unknown:
        parser.error(f"unknown ways {sorted(unknown)}; choose from {', '.join(WAYS)}")
    for carrier in args.carriers.split(","):
        for size in map(_size, args.sizes.split(",")):
            for listeners in map(int, args.listeners.split(",")):
                result = probe(listeners, size, carrier, ways, args.blocks, args.messages, args.profile)
                print(f"== {size // 1024} KiB, {listeners} listener(s), {carrier}")
                for way, row in result.items():
                    parts = ", ".join(f"{part} {us:.0f}" for part, us in row["profile_us"].items())
                    print(f"  {way:14s} {row['msgs_per_s']:7.0f} msg/s  send {row['send_median_us']:6.0f} µs "
                          f"(p90 {row['send_p90_us']:.0f})  CPU µs/msg publisher {row['cpu_us_publisher']:.0f}, "
                          f"listener {row['cpu_us_listener']:.0f}  blocks {row['blocks']}"
                          + (f"\n  {'':14s} µs/msg in send: {parts}" if parts else ""))


if __name__ == "__main__":
    main()
