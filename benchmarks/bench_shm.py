"""``carrier="shm"`` against raw pyzmq PUSH/PULL over ipc, paired in one run.

``python -m benchmarks.bench_shm [--quick]``. One sender and one receiver process carry both
paths, block by block in alternating order, so both meet the same state of the shared machine:
ours is a wrapyfi_like ``Publisher``/``Listener`` pair with ``carrier="shm"`` sending a numpy
array (codec, envelope and all), the baseline sends the array's buffer zero-copy over an ipc
socket and wraps the received frame with ``np.frombuffer``. The receiver touches the first and last
element of each array and lets it go.

- one-way latency: one message in flight; the receiver acks (on a side channel) with the monotonic
  time after wrap and touch; latency = that time − the time taken before ``publish``/``send``.
- ``shm_loan`` (latency only): the array is filled in place with ``Publisher.loan`` (two elements
  written: a producer that computes into the loan), so nothing is copied on either side.
- every size starts with :data:`WARMUP` unmeasured messages on each path.
- throughput: a block of messages flat out (queue depth 4 on both paths); the receiver acks the time
  after the last one.

The ratios are the verdict (issue 21: ≥ 2.5× throughput at 16 MB, ≥ 4× at 64 MB, ≤ 0.4× one-way
latency at ≥ 1 MB); absolute numbers are what this machine happened to do.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import numpy as np
import zmq

MB = 1 << 20
SIZES = (1 * MB, 16 * MB, 64 * MB)
DEPTH = 4
WARMUP = 24
"""Unmeasured messages per size and path first: twice the chunks a shm publisher port cycles
through (``12 × slot``), so no measured message pays first-touch page faults."""


def now_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def plan(quick: bool) -> list[tuple[int, str, str, int]]:
    """``(size, path, mode, count)`` blocks, the same on both sides; paths alternate per round."""
    rounds = 2 if quick else 3
    blocks = []
    for size in SIZES:
        for path in ("shm", "zmq_ipc"):  # touch every chunk of the segments and socket buffers first
            blocks.append((size, path, "warmup", WARMUP))
        latency_count = max(5, int((40 if quick else 80) * MB / max(size, 4 * MB)))
        throughput_count = max(6, int((256 if quick else 640) * MB / size))
        for round_ in range(rounds):
            paths = ("shm", "zmq_ipc") if round_ % 2 == 0 else ("zmq_ipc", "shm")
            for mode, count in (("latency", latency_count), ("throughput", throughput_count)):
                for path in paths:
                    blocks.append((size, path, mode, count))
            blocks.append((size, "shm_loan", "latency", latency_count))
    return blocks


def receiver(spec: dict) -> None:
    from wrapyfi_like.connect.listeners import Listener

    listener = Listener("BenchShm", spec["topic"], carrier="shm", queue_depth=DEPTH)
    context = zmq.Context.instance()
    pull = context.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, DEPTH)
    pull.bind(spec["raw"])
    ack = context.socket(zmq.PUSH)
    ack.connect(spec["ack"])
    ack.send_json({"ready": True})
    for size, path, mode, count in plan(spec["quick"]):
        for _ in range(count):
            if path != "zmq_ipc":
                array = listener.listen()
            else:
                array = np.frombuffer(pull.recv(copy=False).buffer, np.uint8)
            array[0], array[-1]  # touch: the data is there
            del array
            if mode == "latency":
                ack.send(now_ns().to_bytes(8, "little"))
        if mode != "latency":
            ack.send(now_ns().to_bytes(8, "little"))
    ack.send_json({"stats": listener.stats()})
    listener.close()


def sender(spec: dict, results: list) -> dict:
    from wrapyfi_like.connect.publishers import Publisher

    context = zmq.Context.instance()
    ack = context.socket(zmq.PULL)
    ack.bind(spec["ack"])
    ack.recv_json()
    publisher = Publisher("BenchShm", spec["topic"], carrier="shm", wait_timeout=30, queue_depth=DEPTH)
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, DEPTH)
    push.connect(spec["raw"])
    payloads = {size: np.ones(size, np.uint8) for size in SIZES}
    for size, path, mode, count in plan(spec["quick"]):
        payload = payloads[size]
        send = {"shm": publisher.publish, "shm_loan": lambda value: loaned(publisher, value.nbytes),
                "zmq_ipc": lambda value: push.send(value, copy=False)}[path]
        if mode == "warmup":
            for _ in range(count):
                send(payload)
            ack.recv()
        elif mode == "latency":
            for _ in range(count):
                start = now_ns()
                send(payload)
                results.append((size, path, mode, (int.from_bytes(ack.recv(), "little") - start) / 1e3))
        else:
            start = now_ns()
            for _ in range(count):
                send(payload)
            elapsed = (int.from_bytes(ack.recv(), "little") - start) / 1e9
            results.append((size, path, mode, count * size / elapsed / 1e9))
    stats = ack.recv_json()["stats"]
    publisher_stats = publisher.stats()
    publisher.close()
    return {"listener": stats, "publisher": publisher_stats}


def loaned(publisher, nbytes: int) -> None:
    """A producer that computed its array in the loan: only two elements are written here."""
    with publisher.loan((nbytes,), np.uint8) as array:
        array[0] = array[-1] = 1


def summarize(results: list) -> list[dict]:
    rows = []
    for size in SIZES:
        row = {"size": f"{size // MB} MB"}
        for mode, unit in (("latency", "us"), ("throughput", "GB/s")):
            values = {path: [value for s, p, m, value in results if s == size and p == path and m == mode]
                      for path in ("shm", "zmq_ipc")}
            medians = {path: statistics.median(values[path]) for path in values}
            row[f"{mode}_shm_{unit}"] = round(medians["shm"], 1 if unit == "us" else 2)
            row[f"{mode}_zmq_ipc_{unit}"] = round(medians["zmq_ipc"], 1 if unit == "us" else 2)
            row[f"{mode}_ratio"] = round(medians["shm"] / medians["zmq_ipc"], 2)
        loans = [value for s, p, m, value in results if s == size and p == "shm_loan"]
        row["latency_shm_loan_us"] = round(statistics.median(loans), 1)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--role", choices=["receiver"])
    parser.add_argument("--spec")
    options = parser.parse_args()
    if options.role == "receiver":
        return receiver(json.loads(options.spec))
    workdir = tempfile.mkdtemp(prefix="bench-shm-")
    spec = {"topic": f"/bench/shm/{uuid.uuid4().hex[:8]}", "quick": options.quick,
            "raw": f"ipc://{workdir}/raw.sock", "ack": f"ipc://{workdir}/ack.sock"}
    child = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_shm", "--role", "receiver",
                              "--spec", json.dumps(spec)], env=os.environ.copy())
    results: list = []
    try:
        counts = sender(spec, results)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    print(json.dumps({"rows": summarize(results), "counts": counts}, indent=1))


if __name__ == "__main__":
    main()
