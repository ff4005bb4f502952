"""The command line with ``--mware zenoh``: each command runs as a process of its own against live
zenoh publishers, listeners and servers of this test process; ``topics`` lists them from their
liveliness tokens."""

import json
import os
import selectors
import subprocess
import sys
import time

import numpy as np
import pytest

from wrapyfi_like.cli import main
from wrapyfi_like.cli.statistics import human_bytes
from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.connect.publishers import Publisher
from wrapyfi_like.encoding import Codec
from wrapyfi_like.middlewares import middleware_module
from wrapyfi_like.middlewares.zenoh import presence
from wrapyfi_like.middlewares.zenoh.session import current_session

pytestmark = pytest.mark.timeout(60)


def cli(*argv, env=None):
    """Start ``wrapyfi-like ARGV`` as a process (zenoh settings inherited from this one)."""
    return subprocess.Popen([sys.executable, "-m", "wrapyfi_like", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def finish(process, timeout=40):
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        process.kill()
    assert process.returncode == 0, err
    return out


def publish_when_heard(topic, values):
    def send():
        publisher = Publisher("Source", topic, middleware="zenoh", wait_timeout=30)
        try:
            for value in values:
                publisher.publish(value)
        finally:
            publisher.close()
    return send


def test_topics_lists_zenoh_publishers_listeners_and_servers_of_its_domain_only(topic):
    zenoh = middleware_module("zenoh")
    listener = Listener("Sink", topic, middleware="zenoh")
    publisher = Publisher("Source", topic, middleware="zenoh", should_wait=False)
    server = zenoh.ServerTransport(topic + "/service", info={"class_name": "Doubler"})
    try:
        same, other = cli("topics", "--mware", "zenoh", "--timeout", "2"), \
            cli("topics", "--mware", "zenoh", "--timeout", "2", env={"WRAPYFI_LIKE_DOMAIN": "7"})
        lines, elsewhere = finish(same).splitlines(), finish(other)
    finally:
        for closing in (server, publisher, listener):
            closing.close()
    assert lines[0].startswith("domain 0 (zenoh peer, connect tcp/")
    mine = lines[lines.index(topic) + 1:lines.index(topic) + 3]
    zids = {str(session.zid()) for session in (listener._transport._session, publisher._transport._session)}
    assert [line.split()[:3] for line in mine] == [["listener", "Sink", "(NativeObject)"],
                                                   ["publisher", "Source", "(NativeObject)"]]
    for line in mine:
        assert f"pid {os.getpid()} on " in line and line.split()[-1] in zids
    service = lines[lines.index(topic + "/service") + 1]
    assert service.split()[:2] == ["server", "Doubler"] and f"pid {os.getpid()}" in service
    assert elsewhere.startswith("domain 7 (zenoh") and topic not in elsewhere


def wait_until(condition, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_a_closed_participant_leaves_the_listing(topic):
    session = current_session()
    watch = presence.Watch(session.shared(), session.domain)
    publisher = Publisher("Source", topic, middleware="zenoh", should_wait=False)
    try:
        wait_until(lambda: topic in {p.topic for p in watch.snapshot()}, "the publisher's token never arrived")
        publisher.close()
        wait_until(lambda: topic not in {p.topic for p in watch.snapshot()}, "the closed publisher is still listed")
    finally:
        publisher.close()
        watch.close()


def test_a_killed_process_leaves_the_listing(topic):
    session = current_session()
    watch = presence.Watch(session.shared(), session.domain)
    child = subprocess.Popen([sys.executable, "-c", CHILD, topic], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        wait_until(lambda: topic in {p.topic for p in watch.snapshot()}, "the child's token never arrived")
        child.kill()
        child.wait(10)
        wait_until(lambda: topic not in {p.topic for p in watch.snapshot()}, "a dead process is still listed",
                   timeout=5)
    finally:
        child.kill()
        watch.close()


CHILD = """
import sys, threading
from wrapyfi_like.connect.publishers import Publisher
publisher = Publisher("Doomed", sys.argv[1], middleware="zenoh", should_wait=False)
print("ready", flush=True)
threading.Event().wait()
"""


def test_no_user_wildcard_sees_the_tokens(topic):
    """``@wrapyfi_like`` is a verbatim chunk: ``**`` (what a user's catch-all subscriber or query
    names) never matches it, while the listing's own key expression does."""
    session = current_session()
    publisher = Publisher("Source", topic, middleware="zenoh", should_wait=False)
    try:
        def keys(expression):
            replies = session.shared().liveliness().get(expression, timeout=5)
            return [str(reply.ok.key_expr) for reply in replies if reply.ok is not None]
        ours = []
        wait_until(lambda: ours.extend(k for k in keys(presence.prefix(session.domain) + "/**")
                                       if presence.parse(k, session.domain).topic == topic) or ours,
                   "the publisher's token is not listed")
        assert not [key for key in keys("**") if presence.PREFIX in key]
    finally:
        publisher.close()


def test_token_keys_stay_out_of_user_key_space_and_follow_the_domain_rule():
    key = presence.token_key(0, "listener", "/a/@b c", {"class_name": "Sink"}, "zid1")
    assert key.startswith("@wrapyfi_like/listener/") and key.count("/") == 2
    assert presence.token_key(3, "listener", "/a", None, "z").startswith("3/@wrapyfi_like/listener/")
    parsed = presence.parse(key, 0)
    assert parsed.kind == "listener" and parsed.topic == "/a/@b c"
    assert parsed.info["class_name"] == "Sink" and parsed.info["zid"] == "zid1" and parsed.info["pid"] == os.getpid()
    assert presence.parse(key, 3) is None
    assert presence.parse("@wrapyfi_like/listener/not-base64-json", 0) is None


def test_echo_prints_zenoh_messages(topic, in_thread):
    message = {"frame": np.arange(12, dtype=np.uint8).reshape(2, 2, 3), "label": ("cat", 1)}
    echo = cli("echo", topic, "--mware", "zenoh", "--count", "2", "--json", "--timeout", "30")
    sent = in_thread(publish_when_heard(topic, [message, message]))
    documents = [json.loads(line) for line in finish(echo).splitlines()]
    sent.result(timeout=30)
    assert documents == [{
        "frame": {"type": "ndarray", "shape": [2, 2, 3], "dtype": "uint8", "min": 0, "max": 11, "mean": 5.5},
        "label": ["cat", 1]}] * 2


def test_hz_and_bw_watch_a_zenoh_topic(topic, in_thread):
    hz = cli("hz", topic, "--mware", "zenoh", "--count", "5", "--timeout", "30")
    bw = cli("bw", topic, "--mware", "zenoh", "--count", "5", "--timeout", "30")
    # one publisher, sending once both tools listen (each is a listener of its own)
    sent = in_thread(lambda: _publish_to_two(topic, [np.zeros(250, np.uint8)] * 5))
    rate, bandwidth = finish(hz).strip().splitlines()[-2:], finish(bw).strip().splitlines()[-2:]
    sent.result(timeout=30)
    assert rate[0].startswith(f"{topic}: average rate: ") and "window: 5" in rate[1]
    assert " from 5 messages" in bandwidth[0]
    header, payload = Codec().encode(np.zeros(250, np.uint8))
    assert bandwidth[1].split("min: ")[1].split("  ")[0] == human_bytes(len(header) + memoryview(payload).nbytes)


def _publish_to_two(topic, values):
    watch = presence.Watch(current_session().shared(), current_session().domain)
    try:
        wait_until(lambda: sum(p.topic == topic and p.kind == "listener" for p in watch.snapshot()) == 2,
                   "hz and bw never both listened")
    finally:
        watch.close()
    publish_when_heard(topic, values)()


def test_pub_sends_to_a_zenoh_listener(topic):
    listener = Listener("Sink", topic, middleware="zenoh")
    try:
        pub = cli("pub", topic, "{a: 1, b: [1.5, x]}", "--mware", "zenoh", "--rate", "100", "--count", "3",
                  "--timeout", "30")
        received = [listener.listen() for _ in range(3)]
        assert finish(pub) == f"published 3 messages on {topic}\n"
    finally:
        listener.close()
    assert received == [{"a": 1, "b": [1.5, "x"]}] * 3


def _wait_for_line(stream, needle, timeout=30.0):
    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if selector.select(deadline - time.monotonic()):
            line = stream.readline()
            if needle in line:
                return
            if not line:
                break
    pytest.fail(f"{needle!r} not seen in time")


def test_record_all_then_play_over_zenoh(topic, tmp_path, in_thread):
    path = tmp_path / "all.mcap"
    recorder = cli("record", "-o", str(path), "--all", "--mware", "zenoh", "--count", "2")
    try:
        _wait_for_line(recorder.stdout, "recording every topic")
        publish_when_heard(topic, [{"n": 1}, {"n": 2}])()  # announced after the recording started
        finish(recorder)
    finally:
        recorder.kill()
    out = io_run("info", str(path))
    assert f"  {topic}  2 messages  NativeObject" in out
    listener = Listener("Sink", topic, middleware="zenoh")
    try:
        played = in_thread(lambda: io_run("play", str(path), "--mware", "zenoh", "--rate", "100", "--wait", "30"))
        assert [listener.listen() for _ in range(2)] == [{"n": 1}, {"n": 2}]
        assert played.result(timeout=30) == f"played 2 messages from {path}\n"
    finally:
        listener.close()


def io_run(*argv):
    import io

    out = io.StringIO()
    assert main(list(argv), out) == 0
    return out.getvalue()
