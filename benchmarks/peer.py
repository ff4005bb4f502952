"""One end of one benchmark run, started by :mod:`benchmarks.run` as its own process.

``python -m benchmarks.peer '<json spec>'`` with the spec's ``role`` one of sender, receiver,
server or client. The two ends of a stream run talk over a separate pyzmq "ack" socket that is the
same for every path, so it adds the same cost to each (over ipc, whatever the data's transport: a
tcp port picked in advance could be taken by a listener's own port before the ack socket binds it):

1. first message (its arrival, measured from the launch of both processes, is the start-up time);
2. lock-step: one message in flight; the receiver acks with its decode-done clock reading, so the
   sender gets the one-way latency (``CLOCK_MONOTONIC`` is one clock for every process on the
   host); the receiver's peak memory over this phase is the "extra memory" figure;
3. flat-out: ``flat_out`` messages as fast as the sender can go; the receiver counts them after
   decoding, checks sequence numbers, and reports its first and last arrival times.

A paired run (roles paired_sender, paired_receiver, paired_client, paired_server) carries every
path of ``spec["paths"]`` between the same two processes and alternates them: message by message
in lock-step, and block by block flat out (each path's block acked before the next starts). The
paths' ratios are then measured under one state of the shared machine, where separate runs
seconds apart see different states.

The result is one JSON line on stdout.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any

import zmq

from benchmarks.cases import Case, make_payload
from benchmarks.paths import PATHS, RECONNECT_IVL_MS

def now_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def current_rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def peak_rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


class AckChannel:
    """The side channel: the receiver pushes acks, the sender pulls them."""

    def __init__(self, endpoint: str, sending: bool) -> None:
        self._socket = zmq.Context.instance().socket(zmq.PUSH if sending else zmq.PULL)
        self._socket.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        self._socket.setsockopt(zmq.LINGER, 2000)
        if sending:
            self._socket.connect(endpoint)
        else:
            self._socket.bind(endpoint)

    def send(self, value: Any) -> None:
        self._socket.send_json(value)

    def recv(self) -> Any:
        return self._socket.recv_json()

    def close(self) -> None:
        self._socket.close()


def run_sender(spec: dict, case: Case) -> dict:
    payload = make_payload(case)
    acks = AckChannel(spec["ack"], sending=False)
    sender = PATHS[spec["path"]]["sender"](case, spec["endpoints"])
    sender.send(0, payload)
    acks.recv()
    rss_before = current_rss()  # after the first message: lazy imports and buffers are in place
    reset_peak_rss()
    latencies = []
    for sequence in range(1, spec["lock_step"] + 1):
        sent = now_ns()
        sender.send(sequence, payload)
        latencies.append(acks.recv() - sent)
    first = spec["lock_step"] + 1
    for sequence in range(first, first + spec["flat_out"]):
        sender.send(sequence, payload)
    receiver_report = acks.recv()
    peak = peak_rss()
    sender.close()
    acks.close()
    return {"latencies_ns": latencies, "extra_memory": peak - rss_before, "receiver": receiver_report}


def run_receiver(spec: dict, case: Case) -> dict:
    acks = AckChannel(spec["ack"], sending=True)
    receiver = PATHS[spec["path"]]["receiver"](case, spec["endpoints"])
    receiver.recv()
    first_arrival = now_ns()
    rss_before = current_rss()  # after the first message, which is gone: only lazy imports remain
    acks.send("ready")
    reset_peak_rss()
    for _ in range(spec["lock_step"]):
        value = receiver.recv()
        acks.send(now_ns())
        del value
    lock_step_peak = peak_rss()
    reset_peak_rss()
    expected = list(range(spec["lock_step"] + 1, spec["lock_step"] + 1 + spec["flat_out"]))
    report = receive_flat_out(receiver, expected)
    report.update(first_arrival_ns=first_arrival, lock_step_extra_memory=lock_step_peak - rss_before,
                  flat_out_extra_memory=peak_rss() - rss_before)
    acks.send(report)
    receiver.close()
    acks.close()
    return report


def receive_flat_out(receiver: Any, expected: list[int]) -> dict:
    """Count what arrives of ``expected`` until the last one (the driver's timeout ends a run that
    never sees it, and reports it as incomplete)."""
    arrived, first, last, out_of_order = 0, None, None, 0
    seen: set[int] = set()
    previous = expected[0] - 1
    while arrived < len(expected):
        sequence, value = receiver.recv()
        last = now_ns()
        first = first or last
        arrived += 1
        del value
        if sequence is not None:
            seen.add(sequence)
            out_of_order += sequence <= previous
            previous = sequence
            if sequence == expected[-1]:
                break
    missing = len(expected) - (len(seen) if seen else arrived)
    return {"arrived": arrived, "missing": missing, "out_of_order": out_of_order,
            "first_ns": first, "last_ns": last}


def run_client(spec: dict, case: Case) -> dict:
    payload = make_payload(case)
    client = PATHS[spec["path"]]["client"](case, spec["endpoints"])
    client.call(payload)
    first_arrival = now_ns()
    round_trips = []
    for _ in range(spec["lock_step"]):
        sent = now_ns()
        reply = client.call(payload)
        round_trips.append(now_ns() - sent)
        if len(reply) != len(payload):
            raise AssertionError("echo came back with a different length")
    client.close()
    return {"round_trips_ns": round_trips, "first_arrival_ns": first_arrival}


def run_server(spec: dict, case: Case) -> dict:
    server = PATHS[spec["path"]]["server"](case, spec["endpoints"])
    for _ in range(spec["lock_step"] + 1):
        server.serve_one()
    server.close()
    return {}


def alternating(paths: list[str], count: int):
    """``(index, path)`` for ``count`` turns of each path (index from 1), the order flipping
    every index (ABBAAB…), so neither path always follows the other."""
    for index in range(1, count + 1):
        for path in (paths if index % 2 else paths[::-1]):
            yield index, path


def run_paired_sender(spec: dict, case: Case) -> dict:
    payload = make_payload(case)
    acks = AckChannel(spec["ack"], sending=False)
    senders = {path: PATHS[path]["sender"](case, spec["endpoints"][path]) for path in spec["paths"]}
    for sender in senders.values():
        sender.send(0, payload)
        acks.recv()
    latencies: dict[str, list[int]] = {path: [] for path in senders}
    for sequence, path in alternating(spec["paths"], spec["lock_step"]):
        sent = now_ns()
        senders[path].send(sequence, payload)
        latencies[path].append(acks.recv() - sent)
    blocks: dict[str, list[dict]] = {path: [] for path in senders}
    for index, path in alternating(spec["paths"], spec["blocks"]):
        for sequence in flat_out_block(spec, index):
            senders[path].send(sequence, payload)
        blocks[path].append(acks.recv())
    for sender in senders.values():
        sender.close()
    acks.close()
    return {"latencies_ns": latencies, "blocks": blocks}


def run_paired_receiver(spec: dict, case: Case) -> dict:
    acks = AckChannel(spec["ack"], sending=True)
    receivers = {path: PATHS[path]["receiver"](case, spec["endpoints"][path]) for path in spec["paths"]}
    for receiver in receivers.values():
        receiver.recv()
        acks.send("ready")
    for sequence, path in alternating(spec["paths"], spec["lock_step"]):
        value = receivers[path].recv()
        acks.send(now_ns())
        del value
    for index, path in alternating(spec["paths"], spec["blocks"]):
        acks.send(receive_flat_out(receivers[path], list(flat_out_block(spec, index))))
    for receiver in receivers.values():
        receiver.close()
    acks.close()
    return {}


def flat_out_block(spec: dict, index: int) -> range:
    """The sequence numbers of each path's ``index``-th flat-out block (after the lock-step ones)."""
    first = spec["lock_step"] + 1 + (index - 1) * spec["block"]
    return range(first, first + spec["block"])


def run_paired_client(spec: dict, case: Case) -> dict:
    payload = make_payload(case)
    clients = {path: PATHS[path]["client"](case, spec["endpoints"][path]) for path in spec["paths"]}
    for client in clients.values():
        client.call(payload)
    round_trips: dict[str, list[int]] = {path: [] for path in clients}
    for sequence, path in alternating(spec["paths"], spec["lock_step"]):
        sent = now_ns()
        clients[path].call(payload)
        round_trips[path].append(now_ns() - sent)
    for client in clients.values():
        client.close()
    return {"latencies_ns": round_trips}


def run_paired_server(spec: dict, case: Case) -> dict:
    servers = {path: PATHS[path]["server"](case, spec["endpoints"][path]) for path in spec["paths"]}
    for server in servers.values():
        server.serve_one()
    for sequence, path in alternating(spec["paths"], spec["lock_step"]):
        servers[path].serve_one()
    for server in servers.values():
        server.close()
    return {}


ROLES = {"sender": run_sender, "receiver": run_receiver, "client": run_client, "server": run_server,
         "paired_sender": run_paired_sender, "paired_receiver": run_paired_receiver,
         "paired_client": run_paired_client, "paired_server": run_paired_server}


def main() -> None:
    spec = json.loads(sys.argv[1])
    result = ROLES[spec["role"]](spec, Case(**spec["case"]))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
