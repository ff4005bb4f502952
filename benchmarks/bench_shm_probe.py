"""Where one ``carrier="shm"`` message's one-way time goes, step by step, in a lock-step pair.

``python -m benchmarks.bench_shm_probe [--sizes 1,16] [--count 40]``: a sender and a receiver
process (as :mod:`benchmarks.bench_shm`), one message in flight; both stamp each step with
``time.perf_counter_ns`` (CLOCK_MONOTONIC on Linux, so the stamps of the two processes compare)
by wrapping the library's own functions in place, and the report gives, per size and path
(``publish``, ``loan``), the median time from the start of the send to the end of each step.
It is a diagnosis tool: the wrappers cost about a microsecond each, and it times nothing the
benchmark proper (bench_shm) does not.

Steps, sender: ``encode`` (the codec), ``split`` (finding the shared buffers), ``loan`` /
``copy`` / ``shm_send`` (inside ``Port.send``; ``shm_send`` only for a loan), ``notice`` and
``socket_send`` (around the ZeroMQ send of the notice), ``zmq_send`` (its bookkeeping done),
``return`` (publish returned). Receiver: ``queued`` (the notice parsed: queued by whoever reads,
or read whole by its waiting caller), ``woken`` (the caller's thread has it), ``room`` (the sample
received and its room notified to waiting publishers), ``take`` (the sample matched), ``view``
(its anchored read-only view), ``decode`` (the codec), ``delivered`` (listen returned, both
ends touched). Also the page faults per message on each side
(sender/receiver), after the warm-up.

Last, for comparison with the ``notice`` → ``queued`` step, raw pyzmq in the same pair: a
PUSH sends a message shaped like a notice (five small frames) to a PULL over ipc and over tcp,
one in flight (``raw_ipc``, ``raw_tcp``): ``return`` (the send call returned) and ``delivered``
(the PULL has it); and the same bytes written to a plain tcp socket by the sending thread and read
by a thread waiting in ``select`` (``plain_tcp``), which is what a notice would cost without
libzmq's I/O thread.
"""

from __future__ import annotations

import argparse
import json
import resource
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Callable

import numpy as np
import zmq

from benchmarks.bench_shm import receiver_process
from wrapyfi_like.middlewares.ports import free_port

MB = 1 << 20
WARMUP = 24
"""Unmeasured messages per size and path first (as :data:`benchmarks.bench_shm.WARMUP`)."""
now = time.perf_counter_ns
stamps: dict[str, int] = {}


def _stamped(name: str, function: Callable, before: str = "") -> Callable:
    def wrapper(*args, **kwargs):
        if before:
            stamps[before] = now()
        result = function(*args, **kwargs)
        stamps[name] = now()
        return result
    return wrapper


def _stamp(owner: object, attribute: str, name: str, before: str = "") -> None:
    """Wrap ``owner.attribute`` with :func:`_stamped`, if the library still has it (a step the
    code no longer has is left out of the report, not an error)."""
    function = getattr(owner, attribute, None)
    if function is not None:
        setattr(owner, attribute, _stamped(name, function, before))


def _instrument_port(shm) -> None:
    """``Port._send`` (one attempt to copy and send a sample) with a stamp after each of its
    steps (same calls as the library's)."""
    original_loaned = shm.Port.send_loaned

    def send(self, publisher, seq, buffers, offsets, total):
        sample = self._publisher.loan_slice_uninit(total)
        stamps["loan"] = now()
        shm._write_header(sample, publisher, seq)
        destination = np.frombuffer((shm.ctypes.c_uint8 * total).from_address(sample.payload_ptr), np.uint8)
        for buffer, offset in zip(buffers, offsets):
            destination[offset:offset + buffer.nbytes] = np.frombuffer(buffer, np.uint8)
        del destination
        stamps["copy"] = now()
        reached = sample.assume_init().send() == 1
        stamps["shm_send"] = now()
        return reached

    shm.Port._send = send
    shm.Port.send_loaned = _stamped("shm_send", original_loaned)
    _stamp(shm.Port, "loan", "loan")


RAW = ("raw_ipc", "raw_tcp")
NOTICE = [b"/bench/probe/0123\0", bytes(27), bytes(19), b"", bytes(28)]
"""A message of a notice's shape: topic, envelope, codec header, the empty frame in place of the
shared buffer, the reference frame."""


PLAIN = "plain_tcp"
"""The notice's bytes written to a plain tcp socket by the sending thread itself and read by a
thread waiting in ``select``: one thread wake-up, where a libzmq send costs two (its I/O thread,
then the reader)."""


def _accept(server: socket.socket) -> socket.socket:
    """The sender's plain connection (it connected before the first block)."""
    connection = server.accept()[0]
    server.close()
    return connection


def _read_notice(connection: socket.socket) -> None:
    """Wait in ``select`` as the intake does, then read the notice's bytes."""
    left = sum(len(frame) for frame in NOTICE)
    while left:
        select.select([connection], [], [])
        left -= len(connection.recv(left))


def _faults() -> int:
    """Page faults of this process so far (minor: a first touch of a mapped page)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def receiver(spec: dict) -> None:
    from wrapyfi_like.connect.listeners import Listener
    from wrapyfi_like.middlewares.zeromq import shm

    listener = Listener("Probe", spec["topic"], carrier="shm")
    transport = listener._transport
    _stamp(transport._intake, "_deliver", "queued")
    _stamp(transport._intake, "_read_direct", "queued")  # a notice read whole by its waiting caller
    _stamp(transport._intake, "receive", "woken")
    _stamp(shm.Inbox, "_notify_room", "room")
    _stamp(shm.Inbox, "take", "take")
    _stamp(shm.Inbox, "views", "view")
    _stamp(listener._format, "decode", "decode")
    ack = zmq.Context.instance().socket(zmq.PUSH)
    ack.connect(spec["ack"])
    raw = {path: zmq.Context.instance().socket(zmq.PULL) for path in RAW}
    for path, pull in raw.items():
        pull.bind(spec[path])
    plain = socket.create_server(("127.0.0.1", spec["plain_port"]))
    ack.send_json({"ready": True})
    for size, path, warmup, count in spec["blocks"]:
        if path == PLAIN:
            plain = _accept(plain)
        for _ in range(count):
            if path == PLAIN:
                _read_notice(plain)
                stamps["delivered"] = now()
                ack.send_json({"stamps": dict(stamps), "faults": _faults()})
                stamps.clear()
                continue
            if path in raw:
                raw[path].recv_multipart(copy=False)
                stamps["delivered"] = now()
                ack.send_json({"stamps": dict(stamps), "faults": _faults()})
                stamps.clear()
                continue
            array = listener.listen()
            array[0], array[-1]
            stamps["delivered"] = now()
            del array
            message = dict(stamps)
            stamps.clear()  # before the ack: the next message may be queued at once
            ack.send_json({"stamps": message, "faults": _faults()})
    listener.close()


def sender(spec: dict) -> dict:
    from wrapyfi_like.connect.publishers import Publisher
    from wrapyfi_like.middlewares.zeromq import publisher as publisher_module
    from wrapyfi_like.middlewares.zeromq import shm, zmtp_outlet

    with receiver_process("benchmarks.bench_shm_probe", spec) as (context, ack, child):
        publisher = Publisher("Probe", spec["topic"], carrier="shm", wait_timeout=30)
        _stamp(publisher._format, "encode", "encode")
        _stamp(publisher_module, "split", "split")
        _stamp(zmtp_outlet.ZmtpOutlet, "try_send", "socket_send", before="notice")
        _instrument_port(shm)
        transport = publisher._transport
        _stamp(transport, "_send_to", "zmq_send")
        raw = {}
        for path in RAW:
            raw[path] = context.socket(zmq.PUSH)
            raw[path].connect(spec[path])
        plain = socket.create_connection(("127.0.0.1", spec["plain_port"]))
        plain.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        notice = b"".join(NOTICE)
        report = []
        for size, path, warmup, count in spec["blocks"]:
            payload = np.ones(size, np.uint8)
            steps: dict[str, list[float]] = {}
            faults = {"sender": 0, "receiver": 0}
            for index in range(count):
                before = _faults()
                stamps.clear()
                start = stamps["start"] = now()
                if path == PLAIN:
                    plain.sendall(notice)
                elif path in raw:
                    raw[path].send_multipart(NOTICE)
                elif path == "loan":
                    with publisher.loan((size,), np.uint8) as array:
                        array[0] = array[-1] = 1
                else:
                    publisher.publish(payload)
                stamps["return"] = now()
                sent, sender_faults = dict(stamps), _faults() - before
                reply = ack.recv_json()
                received = reply["stamps"]
                if index < warmup:
                    receiver_faults = reply["faults"]
                    continue
                faults["sender"] += sender_faults
                faults["receiver"] += reply["faults"] - receiver_faults
                receiver_faults = reply["faults"]
                for name, value in {**sent, **received}.items():
                    steps.setdefault(name, []).append((value - start) / 1e3)
            measured = count - warmup
            report.append({"size_mb": size // MB, "path": path,
                           "faults_per_message": {side: n / measured for side, n in faults.items()},
                           "steps": {name: statistics.median(values) for name, values in
                                     sorted(steps.items(), key=lambda item: statistics.median(item[1]))}})
        publisher.close()
        child.wait(timeout=60)
        return {"report": report, "stats": publisher.stats()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,16")
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=WARMUP, help="unmeasured messages first, per block")
    parser.add_argument("--role", choices=["sender", "receiver"])
    parser.add_argument("--spec")
    options = parser.parse_args()
    if options.role == "receiver":
        return receiver(json.loads(options.spec))
    if options.role == "sender":
        return print(json.dumps(sender(json.loads(options.spec))))
    workdir = tempfile.mkdtemp(prefix="bench-shm-probe-")
    blocks = [(int(size) * MB, path, options.warmup, options.warmup + options.count)
              for size in options.sizes.split(",") for path in ("publish", "loan")]
    blocks += [(0, path, options.warmup, options.warmup + options.count) for path in RAW + (PLAIN,)]
    spec = {"topic": f"/bench/probe/{uuid.uuid4().hex[:8]}", "ack": f"ipc://{workdir}/ack.sock", "blocks": blocks,
            "raw_ipc": f"ipc://{workdir}/raw.sock", "raw_tcp": f"tcp://127.0.0.1:{free_port()}",
            "plain_port": free_port()}
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_shm_probe", "--role", "sender",
                           "--spec", json.dumps(spec)], stdout=subprocess.PIPE, check=True, timeout=600)
    result = json.loads(done.stdout)
    for entry in result["report"]:
        steps = "  ".join(f"{name} {value:.0f}" for name, value in entry["steps"].items())
        faults = "/".join(f"{value:.1f}" for value in entry["faults_per_message"].values())
        size = f"{entry['size_mb']:>3} MB" if entry["path"] not in RAW + (PLAIN,) else "notice"
        print(f"{size} {entry['path']:<8} page faults {faults}; µs from start: {steps}")
    print(json.dumps(result["stats"]))


if __name__ == "__main__":
    main()
