"""A live listener in another process under ≥10,000 hostile messages, while an honest publisher
(a third process) goes on: the listener stays alive, gets every honest message in order, and its
memory stays bounded. The hostile peer is this test process with a raw ZeroMQ socket, so it can
send what no publisher of ours would: junk frames, broken envelopes and headers, wrong topics,
messages over the size limit and over the frame limit.
"""

import json
import random
import signal
import struct

import msgpack
import pytest
import zmq

from loss_nodes import LossNode
from node_processes import event_is
from wrapyfi_like.encoding import Codec
from wrapyfi_like.limits import MAX_FRAMES
from wrapyfi_like.middlewares import envelope

pytestmark = pytest.mark.timeout(90)

HOSTILE = 10_000
MAX_SIZE = 1024 * 1024
HONEST_COUNT, HONEST_RATE = 3000, 600
QUEUE_DEPTH = 32
"""The listener's queue: libzmq bounds it in messages, so what hostile messages can make the
listener hold while it reads is about ``QUEUE_DEPTH`` of the largest (1.2 MB here)."""


def hostile_messages(topic: bytes, rng: random.Random):
    """Endless hostile messages, each a list of frames, cycling through every kind."""
    codec = Codec()
    valid_body = codec.encode({"seq": -1, "t": 0.0, "data": b""})
    own_id = envelope.new_publisher_id()
    seq = 0

    def stamp(**fields) -> bytes:
        nonlocal seq
        seq += 1
        return envelope.pack(fields.get("publisher", own_id), fields.get("seq", seq), fields.get("flags", 0))

    kinds = [
        lambda: [rng.randbytes(rng.randrange(0, 64)) for _ in range(rng.randrange(1, 6))],  # junk
        lambda: [topic, rng.randbytes(rng.choice([0, 35, 36, 37]))] + valid_body,  # envelope junk
        lambda: [topic, b"XX" + stamp()[2:]] + valid_body,  # wrong magic
        lambda: [topic, stamp()[:2] + b"\x09" + stamp()[3:]] + valid_body,  # unknown version
        lambda: [topic, struct.pack("<2sBB8sQ8sQ", b"WL", 1, 0, own_id, 0, bytes(8), 0)] + valid_body,  # seq 0
        lambda: [topic, stamp()],  # no header
        lambda: [topic, stamp(), rng.randbytes(rng.randrange(1, 200))],  # header junk
        lambda: [topic, stamp(), msgpack.packb([1, 0, [[[[[[]]]]]] * 50])],  # valid msgpack, wrong shape
        lambda: [topic, stamp(), bytes([0x93, 0x01, 0x05, 0xC0])],  # promises 5 buffers, has none
        lambda: [topic + b"x", stamp()] + valid_body,  # prefix topic
        lambda: [topic[:-1], stamp()] + valid_body,  # shorter topic
        lambda: [b"", stamp()] + valid_body,  # empty topic: what close() sends itself
        lambda: [topic, stamp()] + [bytes(200_000)] * 6,  # 1.2 MB in frames under the limit each
        lambda: [topic, stamp(publisher=rng.randbytes(8), flags=envelope.LATEST)] + valid_body[:1],  # latest junk
    ]
    while True:
        yield rng.choice(kinds)()


def test_a_live_listener_survives_10000_hostile_messages_and_delivers_honest_traffic(topic, private_discovery):
    env = private_discovery
    listener = LossNode("listen", topic, "--count", str(HONEST_COUNT), "--idle", "5", "--size", "0",
                        "--kwargs", json.dumps({"max_message_size": MAX_SIZE, "queue_depth": QUEUE_DEPTH}), env=env)
    publisher = None
    raw = zmq.Context.instance().socket(zmq.PUSH)
    raw.setsockopt(zmq.LINGER, 0)
    raw.setsockopt(zmq.SNDHWM, 0)
    try:
        ready = listener.wait_for(event_is("ready"))
        publisher = LossNode("publish", topic, "--count", str(HONEST_COUNT), "--rate", str(HONEST_RATE),
                             "--size", "100", "--every", "500", env=env)
        listener.wait_for(event_is("first"))
        raw.connect(ready["endpoint"])
        rng = random.Random(16_1)
        messages = hostile_messages(topic.encode(), rng)
        for _ in range(HOSTILE):
            raw.send_multipart(next(messages))
        for _ in range(2):
            raw.send_multipart([topic.encode(), envelope.pack(b"manyfrms", 1)] + [b""] * (MAX_FRAMES + 1))
        raw.send_multipart([topic.encode(), envelope.pack(b"oversize", 1), bytes(2 * MAX_SIZE)])  # one frame over
        summary = listener.wait_for(event_is("summary"), timeout=60)
        assert listener.process.poll() is None or listener.process.returncode == 0
        stats = summary["stats"]
        print(f"hostile {HOSTILE + 3}: listener stats {stats}; RSS {ready['rss_kib']} KiB before, "
              f"{summary['rss_kib']} KiB after, peak {summary['max_rss_kib']} KiB")
        assert summary["last"] == HONEST_COUNT - 1, summary
        assert summary["in_order"] and summary["missing"] == 0 and summary["repeats"] == 0, summary
        assert stats["malformed"] >= HOSTILE // 2, stats  # most kinds never reach the codec
        bound = QUEUE_DEPTH * 1200 + 60 * 1024  # KiB: a queue of the largest hostile messages, plus the codec's
        assert summary["max_rss_kib"] - ready["rss_kib"] < bound, "the listener held more than its queue"
    finally:
        raw.close()
        for node in (listener, publisher):
            if node is not None:
                if node.process.poll() is None:
                    node.process.send_signal(signal.SIGCONT)
                node.stop()
