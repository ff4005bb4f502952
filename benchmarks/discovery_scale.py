"""Discovery at scale, simulated on one host: many processes, a few topics each.

``python -m benchmarks.discovery_scale --processes 200 --topics 5`` starts one process that
hosts the discovery directory, then half of ``--processes`` publisher processes and half listener
processes (forked, so they share the interpreter's pages and stay lean), each with ``--topics``
of our real ZeroMQ publishers or listeners (:class:`ZeroMQPublisherTransport`,
:class:`ZeroMQListenerTransport`, on this process's real :class:`NodeAgent`). Every topic has
``--listeners-per-topic`` listeners and as many publishers, so each publisher connects to
``topics × listeners-per-topic`` listeners.

It measures, from the first fork:

- **ready**: when each process has made its publishers or listeners (on a loaded 2-core host,
  starting many processes at once is what takes longest);
- **seen**: when every publisher's discovery watch lists every listener of its topics (each
  publisher reports the moment its outlets reach that number), and how long after the last
  process was ready: discovery's own part;
- **delivered**: when every listener has received a message from every publisher of its topics
  (publishers send one small message per topic every :data:`SEND_INTERVAL`, and every
  :data:`KEEP_SENDING_INTERVAL` from one second after they see every listener, so this includes
  that much waiting);
- the directory host's CPU time and resident memory, during start-up and in the steady state
  that follows (``--steady`` seconds), and the sync traffic it serves (requests and bytes a
  second: every agent's syncs, since every agent syncs with it), apart from the listings of the
  whole directory (each process's one check, 5 s after start, that its topics have a peer);
- what the directory refused (its limits: nodes, announcements, bytes, per address).

Not part of the test suite (tests/test_bench_smoke.py runs a small one). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import select
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Optional

from wrapyfi_like.middlewares.ports import free_port

RECORD = Path(__file__).resolve().parent.parent / "docs" / "assets" / "benchmarks" / "discovery_scale.json"
"""Where recorded runs are kept for docs/benchmarks.md (``--record``)."""
SEND_INTERVAL = 0.25
"""Seconds between a publisher's messages on each topic until its watch lists every listener
(a message sent before a listener's connection completed did not reach it: it is sent again)."""
KEEP_SENDING_INTERVAL = 2.0
"""Seconds between its messages from one second after that (connections that completed later
still get one). Sent faster,
the benchmark's own messages (publishers × topics × listeners per topic a round) take the CPU
that discovery needs: at 200 processes, 0.1 s starved the directory into timeouts."""
REPORT_INTERVAL = 0.5
"""Seconds between two samples of the directory host's CPU, memory and traffic."""


def now() -> float:
    return time.monotonic()


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def memory() -> dict[str, int]:
    """This process's resident memory now and at its peak (bytes)."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line.split(":")[0]] = int(line.split()[1]) * 1024
    private = 0
    with open("/proc/self/smaps_rollup") as rollup:  # what this process alone holds (forks share the rest)
        for line in rollup:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                private += int(line.split()[1]) * 1024
    return {"rss": values["VmRSS"], "peak_rss": values["VmHWM"], "private": private}


def stopped(stop_fd: int, timeout: float) -> bool:
    """Whether the driver closed its end of the stop pipe (waits up to ``timeout``)."""
    return bool(select.select([stop_fd], [], [], timeout)[0])


def reporter(address: str):
    import zmq

    push = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 2000)
    push.connect(address)
    return push


def send_last(push, message: dict, agent) -> None:
    """Send a process's last report, stop its agent, and close every socket with up to 5 s for
    the report to leave: the process ends with ``os._exit``, which would discard a queued message."""
    import zmq

    push.send_json(message)
    agent.stop()
    zmq.Context.instance().destroy(linger=5000)


# --- the processes -------------------------------------------------------------------------------

def host(report_to: str, stop_fd: int, ready_fd: int) -> None:
    """Host the directory; count what it serves; report samples until the driver says stop."""
    from wrapyfi_like.exceptions import DecodeError
    from wrapyfi_like.middlewares.zeromq.discovery import Directory, NodeAgent, protocol

    traffic: Counter[str] = Counter()
    handle = Directory.handle

    def counted(directory, peer, frame):  # the directory's own code, with a tally by request kind around it
        reply = handle(directory, peer, frame)
        try:
            kind = type(protocol.decode_request(frame)).__name__.lower()
        except DecodeError:
            kind = "malformed"
        traffic[f"{kind}_requests"] += 1
        traffic[f"{kind}_bytes_in"] += len(frame)
        traffic[f"{kind}_bytes_out"] += len(reply or b"")
        return reply

    Directory.handle = counted
    agent = NodeAgent.get()
    deadline = now() + 10.0
    while agent.directory is None:  # its thread binds the address: the first process on it hosts
        if stopped(stop_fd, 0.01) or now() > deadline:
            raise SystemExit("the directory address was taken by another process")
    os.write(ready_fd, b"h")
    push = reporter(report_to)
    while True:
        directory = agent.directory
        push.send_json({"role": "host", "at": now(), "cpu": cpu_seconds(), **memory(), **traffic,
                        "directory": directory.statistics() if directory is not None else None})
        if stopped(stop_fd, REPORT_INTERVAL):
            break
    push.close()
    agent.stop()


def publisher(index: int, topics: dict[str, int], report_to: str, stop_fd: int) -> None:
    """Publish on ``topics`` (each with the number of listeners it has) until the driver says stop."""
    from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent
    from wrapyfi_like.middlewares.zeromq.publisher import ZeroMQPublisherTransport

    agent = NodeAgent.get()
    push = reporter(report_to)
    transports = [ZeroMQPublisherTransport(topic, should_wait=False, session=agent) for topic in topics]
    push.send_json({"role": "publisher", "index": index, "ready_at": now()})
    body = [str(index).encode()]
    seen_at: Optional[float] = None
    while not stopped(stop_fd, SEND_INTERVAL if seen_at is None or now() < seen_at + SEND_INTERVAL * 4
                      else KEEP_SENDING_INTERVAL):
        for transport in transports:
            transport.send(body)
        if seen_at is None and all(t.statistics()["outlets"] >= topics[t.topic] for t in transports):
            seen_at = now()
            push.send_json({"role": "publisher", "index": index, "seen_at": seen_at})
    for transport in transports:
        transport.close()
    send_last(push, {"role": "publisher", "index": index, "final": True, **memory(), "agent": dict(agent.counters)},
              agent)


def listener(index: int, topics: list[str], publishers: dict[str, set[str]], report_to: str, stop_fd: int) -> None:
    from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent
    from wrapyfi_like.middlewares.zeromq.listener import ZeroMQListenerTransport

    agent = NodeAgent.get()
    push = reporter(report_to)
    transports = [ZeroMQListenerTransport(topic, session=agent) for topic in topics]
    push.send_json({"role": "listener", "index": index, "ready_at": now()})
    missing = {topic: set(publishers[topic]) for topic in topics}
    lock = threading.Lock()
    closing = threading.Event()

    def drain(transport) -> None:  # keeps reading after the last first message: publishers never block
        while not closing.is_set():
            frames = transport.recv(0.2)
            if frames is not None:
                with lock:
                    missing[transport.topic].discard(bytes(frames[0]).decode())
                    if not any(missing.values()) and not reported:
                        reported.append(now())
                        push.send_json({"role": "listener", "index": index, "delivered_at": reported[0]})

    reported: list[float] = []
    threads = [threading.Thread(target=drain, args=(transport,), daemon=True) for transport in transports]
    for thread in threads:
        thread.start()
    while not stopped(stop_fd, 1.0):
        pass
    closing.set()
    for thread in threads:
        thread.join()
    received = sum(transport.statistics()["received"] for transport in transports)
    for transport in transports:
        transport.close()
    with lock:
        send_last(push, {"role": "listener", "index": index, "final": True, "received": received, **memory(),
                         "agent": dict(agent.counters)}, agent)


# --- the driver ----------------------------------------------------------------------------------

def plan(processes: int, topics: int, listeners_per_topic: int) -> tuple[list[list[str]], list[list[str]]]:
    """The topics of each publisher and each listener: every topic gets ``listeners_per_topic``
    listeners and as many publishers (half the processes publish, half listen)."""
    side = processes // 2
    distinct = max(1, side * topics // listeners_per_topic)
    slots = [[f"/scale/{(i * topics + k) % distinct}" for k in range(topics)] for i in range(side)]
    return slots, [list(s) for s in slots]


def fork(target, *args, close: tuple[int, ...] = ()) -> int:
    """Run ``target(*args)`` in a child process, with the file descriptors ``close`` closed there."""
    pid = os.fork()
    if pid == 0:  # the child: run, then leave without the parent's exit handlers
        for fd in close:
            os.close(fd)
        code = 0
        try:
            target(*args)
        except BaseException as error:  # noqa: BLE001 (reported on stderr, the exit code says it failed)
            sys.stderr.write(f"discovery_scale {target.__name__}: {type(error).__name__}: {error}\n")
            code = 1
        finally:
            sys.stderr.flush()
            os._exit(code)
    return pid


def run(processes: int, topics: int, listeners_per_topic: int, steady: float, timeout: float) -> dict:
    import wrapyfi_like.middlewares.zeromq.listener  # noqa: F401 (imported once, shared by every fork)
    import wrapyfi_like.middlewares.zeromq.publisher  # noqa: F401

    publisher_topics, listener_topics = plan(processes, topics, listeners_per_topic)
    topic_publishers: dict[str, set[str]] = {}
    for index, names in enumerate(publisher_topics):
        for topic in names:
            topic_publishers.setdefault(topic, set()).add(str(index))
    topic_listeners = Counter(topic for names in listener_topics for topic in names)
    workdir = tempfile.mkdtemp(prefix="wl-scale-")
    os.environ.update(WRAPYFI_ZEROMQ_DISCOVERY=f"tcp://127.0.0.1:{free_port()}", WRAPYFI_ZEROMQ_IPC_DIR=workdir)
    report_to = f"ipc://{workdir}/reports.sock"
    stop_read, stop_write = os.pipe()
    ready_read, ready_write = os.pipe()
    children = [fork(host, report_to, stop_read, ready_write, close=(stop_write, ready_read))]
    if not select.select([ready_read], [], [], timeout)[0] or os.read(ready_read, 1) != b"h":
        raise RuntimeError("the directory host did not start")
    started = now()
    for index, names in enumerate(publisher_topics):
        children.append(fork(publisher, index, {topic: topic_listeners[topic] for topic in names}, report_to,
                             stop_read, close=(stop_write,)))
    for index, names in enumerate(listener_topics):
        children.append(fork(listener, index, names, {topic: topic_publishers[topic] for topic in names},
                             report_to, stop_read, close=(stop_write,)))
    forked = now()
    os.close(stop_read)
    import zmq  # the driver's context only now, after the last fork: every child made its own

    pull = zmq.Context.instance().socket(zmq.PULL)
    pull.bind(report_to)
    samples: list[dict] = []

    def receive(until: float) -> Optional[dict]:
        if not pull.poll(max(0.0, until - now()) * 1000):
            return None
        message = pull.recv_json()
        if message["role"] == "host":
            samples.append(message)
        return message

    deadline = started + timeout
    seen: dict[int, float] = {}
    ready: list[float] = []
    delivered: dict[int, float] = {}
    while (len(seen) < len(publisher_topics) or len(delivered) < len(listener_topics)) and now() < deadline:
        message = receive(deadline)
        if message is None:
            break
        if "ready_at" in message:
            ready.append(message["ready_at"] - started)
        elif "seen_at" in message:
            seen[message["index"]] = message["seen_at"] - started
        elif "delivered_at" in message:
            delivered[message["index"]] = message["delivered_at"] - started
    complete = now()
    start_up = [s for s in samples if s["at"] <= complete]
    while now() < complete + steady:
        receive(complete + steady)
    steady_samples = [s for s in samples if s["at"] >= complete]
    os.close(stop_write)
    finals: list[dict] = []
    while len(finals) < len(children) - 1 and (message := receive(now() + 10.0)) is not None:
        if message.get("final"):
            finals.append(message)
    failed = sum(1 for pid in children if os.waitpid(pid, 0)[1] != 0)
    pull.close()
    last = samples[-1]
    return {
        "processes": processes, "topics_per_process": topics, "listeners_per_topic": listeners_per_topic,
        "publishers": len(publisher_topics), "listeners": len(listener_topics),
        "distinct_topics": len(topic_publishers),
        "connections": sum(topic_listeners[topic] for names in publisher_topics for topic in names),
        "fork_s": forked - started,
        "publishers_seeing_all": len(seen), "listeners_with_all": len(delivered),
        "ready_s": _spread(ready), "seen_s": _spread(list(seen.values())),
        "delivered_s": _spread(list(delivered.values())),
        "seen_after_last_ready_s": max(seen.values()) - max(ready)
        if len(seen) == len(publisher_topics) and len(ready) == len(publisher_topics) + len(listener_topics) else None,
        "host_cpu_start_s": start_up[-1]["cpu"] if start_up else None,
        "host_cpu_steady_share": _rate(steady_samples, "cpu"),
        "host_rss_mb": last["rss"] / 1e6, "host_peak_rss_mb": last["peak_rss"] / 1e6,
        "host_private_mb": last["private"] / 1e6,
        "sync_requests_per_s": _rate(steady_samples, "sync_requests"),
        "sync_bytes_in_per_s": _rate(steady_samples, "sync_bytes_in"),
        "sync_bytes_out_per_s": _rate(steady_samples, "sync_bytes_out"),
        "listings": last.get("listrequest_requests", 0), "listing_bytes_out": last.get("listrequest_bytes_out", 0),
        "directory": last["directory"],
        "worker_rss_mb": _spread([final["rss"] / 1e6 for final in finals]),
        "worker_private_mb": _spread([final["private"] / 1e6 for final in finals]),
        "agent_counters": dict(sum((Counter(final["agent"]) for final in finals), Counter())),
        "messages_received": sum(final.get("received", 0) for final in finals),
        "final_reports_missing": len(children) - 1 - len(finals),
        "children_failed": failed,
    }


def _spread(values: list[float]) -> Optional[dict]:
    if not values:
        return None
    return {"median": round(statistics.median(values), 3), "max": round(max(values), 3)}


def _rate(samples: list[dict], field: str) -> Optional[float]:
    """Per second, between the first and last of ``samples``."""
    if len(samples) < 2 or samples[-1]["at"] <= samples[0]["at"]:
        return None
    return (samples[-1].get(field, 0) - samples[0].get(field, 0)) / (samples[-1]["at"] - samples[0]["at"])


SHAPE = ("processes", "topics_per_process", "listeners_per_topic")


def record(path: Path, result: dict) -> None:
    """Keep ``result`` in the JSON list at ``path``, in place of an earlier run of the same shape."""
    kept = json.loads(path.read_text()) if path.exists() else []
    kept = [old for old in kept if [old[k] for k in SHAPE] != [result[k] for k in SHAPE]]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(sorted(kept + [result], key=lambda run: [run[k] for k in SHAPE]), indent=1) + "\n")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=200, help="publisher and listener processes in all")
    parser.add_argument("--topics", type=int, default=5, help="topics each process publishes or listens to")
    parser.add_argument("--listeners-per-topic", type=int, default=10,
                        help="listeners (and publishers) of each topic")
    parser.add_argument("--steady", type=float, default=5.0, help="seconds of steady state measured after start-up")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds start-up may take at most")
    parser.add_argument("--record", type=Path, metavar="JSON",
                        help=f"also keep the result in this file (e.g. {RECORD}, which make bench's page shows), "
                             "replacing an earlier one of the same shape")
    args = parser.parse_args(argv)
    if args.processes // 2 * args.topics // args.listeners_per_topic < args.topics:
        parser.error("too few processes: each process's topics must be different topics")
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    result = {"started": started, **run(args.processes, args.topics, args.listeners_per_topic, args.steady,
                                        args.timeout)}
    sys.stdout.write(json.dumps(result) + "\n")
    if args.record is not None:
        record(args.record, result)
    complete = (result["publishers_seeing_all"] == result["publishers"]
                and result["listeners_with_all"] == result["listeners"] and not result["children_failed"])
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
