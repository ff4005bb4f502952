"""Fan-out: one publisher and N listeners, each its own process, ours against raw pyzmq PUB/SUB.

``python -m benchmarks.run`` runs these cases after the one-to-one ones (``--cases fan-out``
selects only them). One run starts a sender process and N listener processes that carry both
paths, alternating, like :mod:`benchmarks.peer`'s paired runs:

- ``ours``: a decorated method in publish mode and N in listen mode (the publisher connects one
  DEALER socket to each listener and sends every message to each);
- ``ours_unsafe``: the same with ``zero_copy="unsafe"`` (1 MB only), which returns without
  waiting until libzmq has written the caller's buffer to every listener: the gap to ``ours``
  is what the default ownership guarantee costs;
- ``baseline``: one pyzmq PUB socket and N SUB sockets, the same ``[msgpack header, payload]``
  frames as the one-to-one baseline, sent once with ``copy=False`` (libzmq hands the same buffer
  to every subscriber). Its high-water marks are off: a PUB at its mark drops silently, and the
  comparison is of speed with every message delivered, as ours (``backpressure="block"``) does.

Every listener acks each message of the lock-step phase and reports each flat-out block; a
message counts as delivered only when *every* listener got it. Throughput is a block's messages
over the time from its first send to the last listener's last arrival (``CLOCK_MONOTONIC`` is one
clock on the host); one-way latency is from the send to the last listener's decode; missing
messages are counted per listener by sequence number. Each process's CPU time over the
flat-out blocks (all its threads, libzmq's I/O thread included) is reported per message.

``python -m benchmarks.fanout '<json spec>'`` is one process of a run (role ``sender`` or
``listener``); the driver is :func:`run_fanout`.
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Optional

import zmq

from benchmarks.cases import KB, MB, Case, human_size, make_payload
from benchmarks.paths import RECONNECT_IVL_MS, OursReceiver, OursSender, _from_frames, _socket, _to_frames
from benchmarks.peer import alternating, flat_out_block, now_ns, receive_flat_out

GREETING_INTERVAL_MS = 100
"""How often the sender repeats message 0 until every listener has it: a SUB socket only gets
messages once its subscription reached the PUB, and our publisher only sends to listeners that
discovery has reported, so one first message would not reach every listener."""
BLOCKS, BLOCKS_QUICK = 8, 2

logger = logging.getLogger("benchmarks")


@dataclass(frozen=True)
class FanoutCase:
    """``listeners`` listener processes receiving a float32 array of ``size`` bytes."""

    listeners: int
    size: int

    @property
    def name(self) -> str:
        return f"fan-out x{self.listeners} {human_size(self.size)} float32"  # never matched by --cases "float32 1 KB"

    @property
    def case(self) -> Case:
        return Case("numpy", self.size)

    def counts(self, quick: bool) -> tuple[int, int]:
        """Flat-out and lock-step messages per path: the one-to-one case's budget spread over the
        listeners (each listener receives every message, so the bytes moved stay about the same)."""
        flat_out, lock_step = self.case.counts(quick)
        share = max(1, self.listeners // 2)
        return max(12 * (BLOCKS_QUICK if quick else BLOCKS), flat_out // share), max(8, lock_step // (2 * share))


def fanout_cases(quick: bool) -> list[FanoutCase]:
    return [FanoutCase(listeners, size) for listeners in ((4,) if quick else (4, 8)) for size in (KB, MB)]


# --- the two paths -------------------------------------------------------------------------------

class PubSender:
    """The baseline's publisher: one PUB socket, bound, every message sent once."""

    def __init__(self, case: Case, endpoints: dict) -> None:
        self._case = case
        self._socket = _socket(zmq.PUB)
        self._socket.setsockopt(zmq.SNDHWM, 0)
        self._socket.bind(endpoints["data"])

    def send(self, sequence: int, payload: Any) -> None:
        self._socket.send_multipart(_to_frames(self._case, sequence, payload), copy=False)

    def close(self) -> None:
        self._socket.close()


class SubReceiver:
    """The baseline's listener: one SUB socket subscribed to everything."""

    def __init__(self, case: Case, endpoints: dict) -> None:
        self._case = case
        self._socket = _socket(zmq.SUB)
        self._socket.setsockopt(zmq.RCVHWM, 0)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"")
        self._socket.connect(endpoints["data"])

    def recv(self) -> tuple[Optional[int], Any]:
        return _from_frames(self._case, self._socket.recv_multipart(copy=False))

    def close(self) -> None:
        self._socket.close()


class OursUnsafeSender(OursSender):
    """Ours with ``zero_copy="unsafe"``: returns without waiting for libzmq to let go of the
    caller's buffer, as the baseline does; the difference to ``ours`` is what ownership costs."""

    publisher_kwargs = {"zero_copy": "unsafe"}


SENDERS = {"ours": OursSender, "ours_unsafe": OursUnsafeSender, "baseline": PubSender}
RECEIVERS = {"ours": OursReceiver, "ours_unsafe": OursReceiver, "baseline": SubReceiver}
UNSAFE_FROM = 64 * KB
"""``ours_unsafe`` runs only where it differs from ``ours``: below this, buffers are copied anyway."""


# --- the processes -------------------------------------------------------------------------------

def run_sender(spec: dict, case: Case) -> dict:
    payload = make_payload(case)
    acks = zmq.Context.instance().socket(zmq.PULL)
    acks.setsockopt(zmq.LINGER, 0)
    acks.bind(spec["ack"])
    senders = {path: SENDERS[path](case, spec["endpoints"][path]) for path in spec["paths"]}
    for path in spec["paths"]:
        greet(senders[path], payload, acks, spec["listeners"])
    latencies: dict[str, list[int]] = {path: [] for path in senders}
    for sequence, path in alternating(spec["paths"], spec["lock_step"]):
        sent = now_ns()
        senders[path].send(sequence, payload)
        arrivals = [acks.recv_json()["at"] for _ in range(spec["listeners"])]
        latencies[path].append(max(arrivals) - sent)
    blocks: dict[str, list[dict]] = {path: [] for path in senders}
    for index, path in alternating(spec["paths"], spec["blocks"]):
        cpu = time.process_time()
        started = now_ns()
        sequences = flat_out_block(spec, index)
        for sequence in sequences:
            senders[path].send(sequence, payload)
        reports = sorted((acks.recv_json() for _ in range(spec["listeners"])), key=lambda report: report["listener"])
        blocks[path].append({"messages": len(sequences), "started_ns": started,
                             "sender_cpu_s": time.process_time() - cpu,
                             "listener_cpu_s": sum(report["cpu_s"] for report in reports),
                             "last_ns": max(report["last_ns"] for report in reports),
                             "missing": [report["missing"] for report in reports]})
    for sender in senders.values():
        sender.close()
    acks.close()
    return {"latencies_ns": latencies, "blocks": blocks}


def greet(sender: Any, payload: Any, acks: zmq.Socket, listeners: int) -> None:
    """Send message 0 every :data:`GREETING_INTERVAL_MS` until every listener has acked it."""
    ready: set[int] = set()
    while len(ready) < listeners:
        sender.send(0, payload)
        while acks.poll(GREETING_INTERVAL_MS):
            ready.add(acks.recv_json()["listener"])


def run_listener(spec: dict, case: Case) -> dict:
    acks = zmq.Context.instance().socket(zmq.PUSH)
    acks.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
    acks.setsockopt(zmq.LINGER, 2000)
    acks.connect(spec["ack"])
    me = spec["listener"]
    receivers = {path: RECEIVERS[path](case, spec["endpoints"][path]) for path in spec["paths"]}
    for path in spec["paths"]:
        receivers[path].recv()
        acks.send_json({"listener": me})
    for sequence, path in alternating(spec["paths"], spec["lock_step"]):
        while receivers[path].recv()[0] != sequence:
            pass  # a greeting repeated before every listener had one
        acks.send_json({"listener": me, "at": now_ns()})
    for index, path in alternating(spec["paths"], spec["blocks"]):
        cpu = time.process_time()
        report = receive_flat_out(receivers[path], list(flat_out_block(spec, index)))
        acks.send_json({**report, "listener": me, "cpu_s": time.process_time() - cpu})
    for receiver in receivers.values():
        receiver.close()
    acks.close()
    return {}


# --- the driver ----------------------------------------------------------------------------------

def run_fanout(fanout: FanoutCase, paths: list[str], transport: str, quick: bool, workdir: str) -> dict:
    """One run of ``fanout`` carrying ``paths`` alternately: ``{path: metrics}`` or ``{"error": …}``."""
    from benchmarks.run import Peer, address, collect, endpoints, peer_environment

    flat_out, lock_step = fanout.counts(quick)
    blocks = BLOCKS_QUICK if quick else BLOCKS
    spec = {"case": fanout.case.to_dict(), "paths": paths, "listeners": fanout.listeners, "lock_step": lock_step,
            "blocks": blocks, "block": flat_out // blocks, "ack": address("ipc", workdir),
            "endpoints": {path: endpoints(transport, workdir) for path in paths}}
    env = peer_environment(workdir)
    peers = {"sender": Peer("sender", {**spec, "role": "sender"}, env, module=__name__)}
    for listener in range(fanout.listeners):
        peers[f"listener {listener}"] = Peer("listener", {**spec, "role": "listener", "listener": listener}, env,
                                             module=__name__)
    reports, errors = collect(peers)
    if errors:
        return {"error": "fan-out run: " + "; ".join(errors)}
    return {path: fanout_metrics(fanout, reports["sender"], path) for path in paths}


def fanout_metrics(fanout: FanoutCase, report: dict, path: str) -> dict:
    """Messages every listener got per second, over the path's blocks; latencies to the last listener."""
    blocks = report["blocks"][path]
    seconds = sum(block["last_ns"] - block["started_ns"] for block in blocks) / 1e9
    messages = sum(block["messages"] for block in blocks)
    rate = messages / seconds if seconds > 0 else float("nan")
    missing_per_listener = [sum(column) for column in zip(*(block["missing"] for block in blocks))]
    latencies = sorted(report["latencies_ns"][path])
    return {"msgs_per_s": rate, "mb_per_s": rate * fanout.size / 1e6,
            "sender_cpu_us_per_msg": 1e6 * sum(block["sender_cpu_s"] for block in blocks) / messages,
            "listener_cpu_us_per_msg": 1e6 * sum(block["listener_cpu_s"] for block in blocks) / messages
            / fanout.listeners,
            "latency_median_us": statistics.median(latencies) / 1e3,
            "latency_p99_us": latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))] / 1e3,
            "missing_per_listener": missing_per_listener, "missing": sum(missing_per_listener)}


def run_fanouts(cases: list[FanoutCase], paths: list[str], transports: list[str], repeats: int,
                quick: bool) -> list[dict]:
    """Every fan-out case, ``repeats`` times per transport, ours and the baseline in one run
    (their order flipping between repetitions): one row per case, transport, path and repetition."""
    compared = [path for path in ("ours", "baseline") if path in paths]
    if "ours" in compared:
        compared.insert(1, "ours_unsafe")
    rows: list[dict] = []
    if not compared:
        return rows
    with tempfile.TemporaryDirectory(prefix="wl-fanout-") as workdir:
        for repeat in range(repeats):
            for transport in transports:
                for fanout in cases:
                    carried = [path for path in compared if path != "ours_unsafe" or fanout.size >= UNSAFE_FROM]
                    order = carried if repeat % 2 == 0 else carried[::-1]
                    measured = run_fanout(fanout, order, transport, quick, workdir)
                    for path in carried:
                        rows.append({"case": fanout.name, "listeners": fanout.listeners, "size": fanout.size,
                                     "transport": transport, "path": path, "repeat": repeat,
                                     **({"error": measured["error"]} if "error" in measured else measured[path])})
                    logger.info("%-26s %-4s paired   %s", fanout.name, transport, measured.get("error") or " / ".join(
                        f"{path} {measured[path]['msgs_per_s']:.0f} msg/s {measured[path]['latency_median_us']:.0f} µs"
                        f" missing {measured[path]['missing']}" for path in carried))
    return rows


ROLES = {"sender": run_sender, "listener": run_listener}


def main() -> None:
    spec = json.loads(sys.argv[1])
    result = ROLES[spec["role"]](spec, Case(**spec["case"]))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
