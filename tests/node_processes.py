"""Nodes as real processes for fault tests: a script to run, and a handle to drive and watch it.

Run as a script, a node plays one role and reports what it does as JSON lines on stdout
(``{"event": "sending", ...}``, ``{"event": "got", ...}``), so a test waits on those events
instead of sleeping. :class:`Node` starts one, collects its events on a thread, and kills or
stops it.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

SCRIPT = Path(__file__).resolve()


class Node:
    """One node process; ``events`` holds what it reported, in order; ``script`` is what it runs."""

    script = SCRIPT

    def __init__(self, *args: str, env: Optional[dict] = None, netns: Optional[str] = None) -> None:
        command = [sys.executable, str(self.script), *args]
        if netns is not None:
            command = ["ip", "netns", "exec", netns, *command]
        self.args = args
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.events: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        self.stderr: list[str] = []
        threading.Thread(target=self._read_events, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_events(self) -> None:
        for line in self.process.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                self.events.put({"event": "text", "line": line})

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self.stderr.append(line)

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 20.0) -> dict:
        """The first event from now on for which ``predicate`` holds; fails after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                event = self.events.get(timeout=max(0.0, remaining))
            except queue.Empty:
                raise AssertionError(
                    f"node {self.args} did not report the awaited event within {timeout} s; "
                    f"exit code {self.process.poll()}, last events {self.seen[-5:]}, "
                    f"stderr {''.join(self.stderr)[-2000:]}"
                ) from None
            self.seen.append(event)
            if predicate(event):
                return event

    def kill(self) -> None:
        """SIGKILL: no exit handlers run, no goodbye reaches discovery."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()


def event_is(name: str, **fields) -> Callable[[dict], bool]:
    return lambda event: event.get("event") == name and all(event.get(k) == v for k, v in fields.items())


# -- the node script -------------------------------------------------------------------------------

def _report(event: str, **fields) -> None:
    sys.stdout.write(json.dumps({"event": event, "t": time.time(), **fields}) + "\n")
    sys.stdout.flush()


def _publish(options) -> None:
    from wrapyfi_like.connect.publishers import Publisher

    publisher = Publisher("Node", options.topic, wait_timeout=30, **_security(options))
    _report("ready")
    for seq in range(options.count):
        if seq == 0:
            _report("sending")
        publisher.publish({"seq": seq, "pid": os.getpid()})
        if seq % options.every == 0:
            _report("sent", seq=seq)
        if options.rate:
            time.sleep(1.0 / options.rate)
    publisher.close()
    _report("done")


def _listen(options) -> None:
    from wrapyfi_like.connect.listeners import Listener

    listener = Listener("Node", options.topic, **_security(options))
    _report("ready", endpoint=listener._transport.endpoint)
    for _ in range(options.count):
        message = listener.listen()
        _report("got", seq=message["seq"], pid=message["pid"])


def _reply(options) -> None:
    from wrapyfi_like.connect.wrapper import MiddlewareCommunicator

    class Echo(MiddlewareCommunicator):
        @MiddlewareCommunicator.register("NativeObject", "zeromq", "Echo", options.topic, should_wait=True)
        def echo(self, value):
            return {"value": value, "pid": os.getpid()},

    server = Echo()
    server.activate_communication(Echo.echo, mode="reply")
    _report("ready")
    while True:
        (answer,) = server.echo(None)
        _report("served", value=answer["value"])


def _idle(options) -> None:
    from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent

    NodeAgent.get()
    _report("ready")
    signal.pause()


def _security(options) -> dict:
    return json.loads(options.kwargs) if options.kwargs else {}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["publish", "listen", "reply", "idle"])
    parser.add_argument("topic", nargs="?")
    parser.add_argument("--rate", type=float, default=0.0, help="messages per second; 0: flat out")
    parser.add_argument("--count", type=int, default=10**9)
    parser.add_argument("--every", type=int, default=1, help="report every n-th message sent")
    parser.add_argument("--kwargs", help="JSON of extra communicator kwargs")
    options = parser.parse_args()
    {"publish": _publish, "listen": _listen, "reply": _reply, "idle": _idle}[options.role](options)


if __name__ == "__main__":
    main()
