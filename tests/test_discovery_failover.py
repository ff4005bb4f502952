"""SIGKILL of the process hosting discovery under load: no watch loses a live peer, no message is lost.

Run as a script, this file plays the node roles the test needs (the test starts them as processes):
``listen TOPIC`` reports gaps and a summary; ``publish TOPIC...`` publishes to each topic at a
steady rate with ``should_wait=False`` (which must not hide loss) until SIGUSR1, while reporting
every change of its watches of those topics' listeners.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from node_processes import Node, event_is  # noqa: E402
from wrapyfi_like.middlewares.ports import free_port  # noqa: E402

pytestmark = pytest.mark.timeout(90)

RATE = 1000  # messages per second per topic
TOPICS = 3
WARM_UP_MARGIN = 6.0  # seconds after the kill by which the new directory is past its warm-up


class ScriptNode(Node):
    """A :class:`Node` running a role of this file."""

    script = Path(__file__).resolve()


def test_killing_the_directory_host_loses_no_endpoint_and_no_message(topic):
    env = {"WRAPYFI_ZEROMQ_DISCOVERY": f"tcp://127.0.0.1:{free_port()}"}
    topics = [f"{topic}/{n}" for n in range(TOPICS)]
    host = Node("idle", env=env)
    nodes = [host]
    try:
        host.wait_for(event_is("ready"))
        listeners = [ScriptNode("listen", t, env=env) for t in topics]
        nodes += listeners
        endpoints = {t: listener.wait_for(event_is("ready"))["endpoint"] for t, listener in zip(topics, listeners)}
        publisher = ScriptNode("publish", *topics, env=env)
        nodes.append(publisher)
        for listener in listeners:
            listener.wait_for(lambda e: e["event"] == "progress" and e["count"] >= RATE)

        host.kill()
        killed_at = time.time()
        for listener in listeners:  # messages keep flowing past the takeover and the warm-up
            listener.wait_for(lambda e: e["event"] == "progress" and e["t"] > killed_at + WARM_UP_MARGIN, timeout=40)
        late = ScriptNode("listen", f"{topic}/late", env=env)  # and discovery works again
        nodes.append(late)
        late.wait_for(event_is("ready"))

        publisher.process.send_signal(signal.SIGUSR1)
        summary = publisher.wait_for(event_is("published"), timeout=30)
        results = {t: listener.wait_for(event_is("done"), timeout=30) for t, listener in zip(topics, listeners)}
        print("\npublished, received, gaps per pair:",
              [(summary["counts"][t] - done["first"], done["count"], done["gaps"]) for t, done in results.items()])
        for t, done in results.items():
            assert done["gaps"] == [] and done["count"] == summary["counts"][t] - done["first"], (t, done, summary)
        assert summary["dropped"] == {t: 0 for t in topics}

        seen = [e for e in publisher.seen if e["event"] == "endpoints"]
        for t in topics:  # once a watch listed a live listener, it never stopped listing it
            listed = [endpoints[t] in e["endpoints"] for e in seen if e["topic"] == t]
            assert listed and all(listed[listed.index(True):]), (t, seen)
    finally:
        for node in nodes:
            node.stop()


# -- the roles ---------------------------------------------------------------------------------

def _report(event: str, **fields) -> None:
    sys.stdout.write(json.dumps({"event": event, "t": time.time(), **fields}) + "\n")
    sys.stdout.flush()


def _listen(topic: str) -> None:
    from wrapyfi_like.connect.listeners import Listener

    listener = Listener("Failover", topic)
    _report("ready", endpoint=listener._transport.endpoint)
    expected, count, gaps, first = None, 0, [], None
    while True:
        seq = listener.listen()
        if seq == -1:
            _report("done", count=count, gaps=gaps, first=first)
            return
        if expected is None:
            first = expected = seq  # should_wait=False: what was published before we connected is no loss
        if seq != expected:
            gaps.append([expected, seq])
        expected, count = seq + 1, count + 1
        if count % 100 == 0:
            _report("progress", count=count)


def _publish(topics: list[str]) -> None:
    from wrapyfi_like.connect.publishers import Publisher
    from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent
    from wrapyfi_like.middlewares.zeromq.keys import listener_key
    from wrapyfi_like.middlewares.zeromq.wakeup import Wakeup

    stop = Wakeup()
    signal.signal(signal.SIGUSR1, lambda *_: stop.set())
    agent = NodeAgent.get()
    watches = {agent.watch(listener_key(t)): t for t in topics}
    counts, dropped = {}, {}

    def run(topic: str) -> None:
        publisher = Publisher("Failover", topic, should_wait=False)
        seq = 0
        start = time.monotonic()
        while not stop_flag.is_set():
            publisher.publish(seq)
            seq += 1
            stop_flag.wait(max(0.0, start + seq / RATE - time.monotonic()))
        publisher.publish(-1)
        counts[topic], dropped[topic] = seq, publisher.dropped
        publisher.close()

    stop_flag = threading.Event()
    threads = [threading.Thread(target=run, args=(t,)) for t in topics]
    for thread in threads:
        thread.start()
    import zmq

    poller = zmq.Poller()
    for watch in watches:
        poller.register(watch.fileno(), zmq.POLLIN)
    poller.register(stop.fileno(), zmq.POLLIN)
    while True:
        events = dict(poller.poll())
        if stop.fileno() in events:
            break
        for watch, topic in watches.items():
            if watch.fileno() in events:
                _report("endpoints", topic=topic, endpoints=sorted(watch.consume()))
    stop_flag.set()
    for thread in threads:
        thread.join()
    _report("published", counts=counts, dropped=dropped)


if __name__ == "__main__":
    role, *arguments = sys.argv[1:]
    _listen(arguments[0]) if role == "listen" else _publish(arguments)
