"""topics, echo, pub, hz and bw against real publishers and listeners (real sockets, in-process)."""

import io
import json
import time

import numpy as np
import pytest

from wrapyfi_like.cli import main
from wrapyfi_like.cli.statistics import bandwidth_statistics, human_bytes, rate_statistics
from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.connect.publishers import Publisher
from wrapyfi_like.encoding import Codec

pytestmark = pytest.mark.timeout(60)


def run(*argv):
    out = io.StringIO()
    code = main(list(argv), out)
    return code, out.getvalue()


def publish_when_heard(topic, values):
    """A publisher that waits for the command's listener, then sends ``values``."""
    def send():
        publisher = Publisher("Source", topic, wait_timeout=20)
        for value in values:
            publisher.publish(value)
        publisher.close()
    return send


def test_topics_lists_publishers_and_listeners_with_pid_and_endpoint(topic):
    import os

    listener = Listener("Sink", topic, data_type="NativeObject")
    publisher = Publisher("Source", topic, should_wait=False)
    deadline = time.monotonic() + 10
    try:
        while True:  # both announcements reach the directory with this process's next sync
            code, out = run("topics")
            lines = out.splitlines()
            mine = lines[lines.index(topic) + 1:lines.index(topic) + 3] if topic in lines else []
            if [line.split()[:1] for line in mine] == [["listener"], ["publisher"]] or time.monotonic() > deadline:
                break
    finally:
        publisher.close()
        listener.close()
    assert code == 0
    assert mine[0].split()[0] == "listener" and "Sink (NativeObject)" in mine[0]
    assert f"pid {os.getpid()}" in mine[0] and "tcp://127.0.0.1:" in mine[0]
    assert mine[1].split()[0] == "publisher" and f"pid {os.getpid()}" in mine[1]
    assert "Source (NativeObject)" in mine[1]


def test_echo_summarises_arrays_as_text_and_json(topic, in_thread):
    image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    message = {"frame": image, "label": ("cat", 1), "payload": b"x" * 100}
    sent = in_thread(publish_when_heard(topic, [message, message]))
    code, out = run("echo", topic, "--count", "2", "--json", "--timeout", "20")
    sent.result(timeout=20)
    assert code == 0
    documents = [json.loads(line) for line in out.splitlines()]
    assert len(documents) == 2
    assert documents[0] == {
        "frame": {"type": "ndarray", "shape": [2, 2, 3], "dtype": "uint8", "min": 0, "max": 11, "mean": 5.5},
        "label": ["cat", 1],
        "payload": {"type": "bytes", "len": 100},
    }
    # A topic of its own: a publisher created just as a listener leaves may still be told of it.
    topic = topic + "/text"
    sent = in_thread(publish_when_heard(topic, [message]))
    code, out = run("echo", topic, "--once", "--timeout", "20")
    sent.result(timeout=20)
    assert out == ("{'frame': <ndarray shape=(2, 2, 3) dtype=uint8 min=0 max=11 mean=5.5>, "
                   "'label': ('cat', 1), 'payload': <bytes len=100>}\n---\n")


def test_pub_sends_a_yaml_value_at_a_rate(topic, in_thread):
    listener = Listener("Sink", topic)
    try:
        done = in_thread(lambda: run("pub", topic, "{a: 1, b: [1.5, x], c: null}", "--rate", "100",
                                     "--count", "3", "--timeout", "20"))
        received = [listener.listen() for _ in range(3)]
        assert done.result(timeout=20) == (0, f"published 3 messages on {topic}\n")
    finally:
        listener.close()
    assert received == [{"a": 1, "b": [1.5, "x"], "c": None}] * 3


def test_rate_statistics_over_a_window():
    assert rate_statistics([]) is None and rate_statistics([1.0]) is None
    stats = rate_statistics([0.0, 0.1, 0.3, 0.4])
    assert stats.rate == pytest.approx(3 / 0.4)
    assert (stats.min_period, stats.max_period) == pytest.approx((0.1, 0.2))
    assert stats.std_period == pytest.approx(np.std([0.1, 0.2, 0.1]))
    assert stats.window == 4


def test_bandwidth_statistics_over_a_window():
    assert bandwidth_statistics([2.0], [10]) is None
    stats = bandwidth_statistics([0.0, 0.5, 2.0], [100, 300, 500])
    assert stats.bytes_per_second == pytest.approx(800 / 2.0)  # what arrived after the first message
    assert (stats.min_size, stats.max_size, stats.mean_size) == (100, 500, 300)
    assert stats.std_size == pytest.approx(np.std([100, 300, 500]))
    assert [human_bytes(n) for n in (999, 1500, 2_500_000, 3e9)] == ["999 B", "1.50 KB", "2.50 MB", "3.00 GB"]


def test_hz_and_bw_live(topic, in_thread):
    sent = in_thread(publish_when_heard(topic, [np.zeros(250, np.uint8)] * 6))
    code, out = run("hz", topic, "--count", "6", "--timeout", "20")
    sent.result(timeout=20)
    assert code == 0
    last = out.strip().splitlines()[-2:]
    assert last[0].startswith(f"{topic}: average rate: ") and "window: 6" in last[1]

    topic = topic + "/bw"
    sent = in_thread(publish_when_heard(topic, [np.zeros(250, np.uint8)] * 4))
    code, out = run("bw", topic, "--count", "4", "--timeout", "20")
    sent.result(timeout=20)
    assert code == 0
    last = out.strip().splitlines()[-2:]
    assert " from 4 messages" in last[0]
    size = last[1].split("min: ")[1].split("  ")[0]
    header, payload = Codec().encode(np.zeros(250, np.uint8))
    assert size == human_bytes(len(header) + memoryview(payload).nbytes)  # header and buffers, as sent
