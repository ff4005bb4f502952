"""Limits and bad input over real sockets: raw ZeroMQ peers throw garbage at a listener and a server.

Each bad message must be counted exactly once and logged rate-limited (one line per topic per
10 s, then a line saying how many were suppressed); the valid message sent after each batch must
come out exactly; a message over ``max_message_size`` never reaches the codec.
"""

import logging
import random
import struct
import time

import msgpack
import numpy as np
import pytest
import zmq

from wrapyfi_like.connect.clients import Client
from wrapyfi_like.connect.formats import ValueFormat
from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.connect.publishers import Publisher
from wrapyfi_like.connect.servers import Server
from wrapyfi_like.encoding import Codec
from wrapyfi_like.exceptions import ConfigurationError, DecodeError, MessageTooLarge, RemoteError
from wrapyfi_like.limits import DEFAULT_MAX_MESSAGE_SIZE, MAX_FRAMES, MAX_TOPIC_LENGTH
from wrapyfi_like.logs import LOG_INTERVAL, PEER_TEXT_LIMIT, RateLimitedLog
from wrapyfi_like.middlewares import envelope

pytestmark = pytest.mark.timeout(60)

MAX_SIZE = 64 * 1024
ROUNDS, BAD_PER_ROUND = 100, 100  # 10,000 bad messages, one valid message after every 100
CODEC = Codec()


def _ext(code: int, fields) -> bytes:
    return msgpack.packb(msgpack.ExtType(code, msgpack.packb(fields)))


def _header(n_buffers: int, body: bytes) -> bytes:
    return b"\x93\x01" + msgpack.packb(n_buffers) + body


def bad_bodies(rng: random.Random):
    """One invalid ``[header, *buffers]`` per call, of a kind chosen at random."""
    kind = rng.randrange(13)
    if kind == 0:  # random bytes in random frames
        return [rng.randbytes(rng.randrange(0, 64)) for _ in range(rng.randrange(1, 4))]
    if kind == 1:  # random bytes after a valid prefix, so the msgpack parser itself gets fuzzed
        return [b"\x93\x01" + rng.randbytes(rng.randrange(1, 48))]
    if kind == 2:  # truncated valid header
        header, *buffers = CODEC.encode({"a": np.arange(8), "t": (1, 2.5, "x")})
        return [header[:rng.randrange(0, len(header) - 1)], *buffers]
    if kind == 3:  # wrong format version
        header, *buffers = CODEC.encode([1, 2, 3])
        return [bytes([0x93, rng.choice([0, 2, 3, 255])]) + header[2:], *buffers]
    if kind == 4:  # array header claiming far more (or fewer) bytes than its buffer has
        shape = rng.choice([[10 ** 12], [2 ** 62, 2 ** 62], [7], [-1], ["x"]])
        return [_header(1, _ext(9, [0, "<f8", shape, False])), rng.randbytes(64)]
    if kind == 5:  # valid header, corrupted buffer (wrong length for its array)
        header, buffer = CODEC.encode(np.arange(16, dtype=np.int32))
        return [header, bytes(buffer)[:rng.randrange(0, 63)]]
    if kind == 6:  # unknown codec id
        return [_header(0, _ext(15, [f"no.such.codec{rng.randrange(5)}", 1, 2]))]
    if kind == 7:  # buffer count in the header does not match the frames
        header, *buffers = CODEC.encode({"b": b"payload" * 10})
        return [header, *buffers, b"extra"] if rng.random() < 0.5 else [header]
    if kind == 8:  # unsafe or nonsense dtypes, unknown extension codes
        return rng.choice([[_header(1, _ext(9, [0, "|O", [1], False])), b"12345678"],
                           [_header(0, _ext(99, [1]))],
                           [_header(0, _ext(10, ["<f8", b"123"]))]])
    if kind == 9:  # tuples nested 200 deep: 944 bytes that used to crash the process (C stack)
        data = msgpack.packb(1)
        for _ in range(200):
            data = msgpack.packb(msgpack.ExtType(1, b"\x91" + data))
        return [_header(0, data)]
    if kind == 10:  # msgpack's Timestamp extension (-1), outside the wire format
        return [_header(0, rng.choice([b"\xd6\xff\x00\x00\x00\x01", b"\x91\xd7\xff" + bytes(8)]))]
    if kind == 11:  # a codec id of 40 KB: the log line and the error reply must stay short
        return [_header(0, _ext(15, ["c" * 40_000, 1]))]
    # kind 12: a valid message, over max_message_size in total with every frame under it
    return CODEC.encode([bytes(MAX_SIZE // 3) for _ in range(4)])


def _assert_rate_limited(records, started: float, topic: str) -> None:
    """At most one line per LOG_INTERVAL for the topic (plus the first), each a short one."""
    lines = [r.getMessage() for r in records if "malformed" in r.getMessage() and topic in r.getMessage()]
    assert 1 <= len(lines) <= 1 + (time.monotonic() - started) / LOG_INTERVAL + 1
    assert all(len(line) < 2 * PEER_TEXT_LIMIT + 200 + len(topic) for line in lines)


def test_topic_and_size_limits_are_checked_when_building(topic):
    with pytest.raises(ConfigurationError, match="limit is 1024"):
        Listener("T", "/" + "x" * MAX_TOPIC_LENGTH)
    with pytest.raises(ConfigurationError, match="limit is 1024"):
        Publisher("T", "/" + "x" * MAX_TOPIC_LENGTH)
    with pytest.raises(ConfigurationError):
        Client("T", topic + "\0", value_formats=[ValueFormat()])
    with pytest.raises(ConfigurationError, match="max_message_size"):
        Listener("T", topic, max_message_size=0)
    assert DEFAULT_MAX_MESSAGE_SIZE == 512 * 1024 * 1024


def test_too_large_publish_raises_before_sending(topic, in_thread):
    listener = Listener("T", topic, max_message_size=MAX_SIZE)
    publisher = Publisher("T", topic, wait_timeout=10, max_message_size=MAX_SIZE)
    try:
        with pytest.raises(MessageTooLarge, match=f"max_message_size is {MAX_SIZE}"):
            publisher.publish(np.zeros(MAX_SIZE, np.uint8))
        with pytest.raises(MessageTooLarge, match=f"limit is {MAX_FRAMES}"):
            publisher.publish([b"x"] * MAX_FRAMES)
        assert publisher.sent == 0
        publisher.publish("small")  # nothing of the refused ones was sent: this is the first
        assert listener.listen() == "small"
        assert listener.malformed == 0
    finally:
        publisher.close()
        listener.close()


def test_listener_survives_bad_input_and_returns_each_valid_message(topic, caplog):
    listener = Listener("Fuzz", topic, should_wait=True, max_message_size=MAX_SIZE)
    topic_bytes = topic.encode()
    raw = zmq.Context.instance().socket(zmq.PUSH)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(listener._transport.endpoint)
    rng = random.Random(20240607)
    sender, seqs = envelope.new_publisher_id(), iter(range(1, 10**9))
    stamp = lambda: envelope.pack(sender, next(seqs))  # noqa: E731  (each message after its topic)
    bad = 0
    started = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING, logger="wrapyfi_like.listeners"):
            for round_ in range(ROUNDS):
                for _ in range(BAD_PER_ROUND):
                    if rng.random() < 0.1:  # wrong, prefix or missing topic frame
                        wrong = rng.choice([b"/elsewhere", topic_bytes + b"x", topic_bytes[:-1], b""])
                        raw.send_multipart([wrong, stamp(), *CODEC.encode(round_)])
                    else:
                        raw.send_multipart([topic_bytes, stamp(), *bad_bodies(rng)])
                    bad += 1
                value = {"round": round_, "array": np.arange(round_, dtype=np.int16)}
                raw.send_multipart([topic_bytes, stamp(), *CODEC.encode(value)])
                result = listener.listen()
                assert result["round"] == round_
                np.testing.assert_array_equal(result["array"], value["array"])
            raw.send_multipart([topic_bytes, stamp()] + [b""] * (MAX_FRAMES + 1))  # too many frames
            raw.send_multipart([topic_bytes, stamp()])  # no header at all
            raw.send_multipart([b""])  # what close() sends itself to end a wait: from a peer, just malformed
            raw.send_multipart([topic_bytes, stamp(), *CODEC.encode("last")])
            assert listener.listen() == "last"
        bad += 3
        # wrong topics, no header and too many frames are the transport's to count; the rest the codec's
        assert listener.malformed + listener._transport.statistics()["malformed"] == bad >= 10_000
        assert listener.received == ROUNDS + 1
        _assert_rate_limited([r for r in caplog.records if r.name == "wrapyfi_like.listeners"], started, topic)
    finally:
        raw.close()
        listener.close()


def test_a_frame_over_the_limit_drops_its_sender_not_the_listener(topic):
    listener = Listener("Fuzz", topic, max_message_size=MAX_SIZE)
    context = zmq.Context.instance()
    offender, honest = context.socket(zmq.PUSH), context.socket(zmq.PUSH)
    try:
        for socket in (offender, honest):
            socket.setsockopt(zmq.LINGER, 0)
            socket.connect(listener._transport.endpoint)
        offender.send_multipart([topic.encode(), envelope.pack(b"offender", 1), *CODEC.encode(bytes(4 * MAX_SIZE))])
        honest.send_multipart([topic.encode(), envelope.pack(b"honest!!", 1), *CODEC.encode("honest")])
        assert listener.listen() == "honest"
        assert listener._transport.recv(0.2) is None  # the oversized frame never arrived
    finally:
        offender.close()
        honest.close()
        listener.close()


def _request_id(number: int) -> bytes:
    return struct.pack("<Q", number)


def test_server_survives_bad_input_and_answers_each_valid_request(topic, caplog):
    server = Server("Fuzz", topic, should_wait=True, value_formats=[ValueFormat()], max_message_size=MAX_SIZE)
    raw = zmq.Context.instance().socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(server._transport.endpoint)
    rng = random.Random(99)
    bad = errors_expected = errors_seen = 0
    started = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING, logger="wrapyfi_like.servers"):
            for round_ in range(ROUNDS):
                for index in range(BAD_PER_ROUND):
                    if rng.random() < 0.1:  # no request id, or one of the wrong size
                        raw.send_multipart(rng.choice([[b"123"], [b"\x00" * 9, b"x"], [b""]]))
                    else:
                        body = rng.choice([bad_bodies(rng), CODEC.encode(("not", "a call")),
                                           CODEC.encode(((1,), {2: "non-str key"}))])
                        raw.send_multipart([_request_id(10_000 + index), *body])
                        errors_expected += 1
                    bad += 1
                valid_id = _request_id(round_)
                raw.send_multipart([valid_id, *CODEC.encode(((round_, "x"), {"k": round_}))])
                request = server.await_request()
                assert (request.args, request.kwargs) == ((round_, "x"), {"k": round_})
                server.reply(request, [round_ * 2])
                while True:
                    assert raw.poll(10_000), "the server stopped answering"
                    reply = raw.recv_multipart()
                    if reply[0] == valid_id:
                        assert reply[1] == b"ok"
                        assert Codec().decode(reply[3:]) == round_ * 2
                        break
                    assert reply[1] == b"error", reply
                    assert len(reply[2]) < 2 * PEER_TEXT_LIMIT + 200, reply[2][:300]
                    errors_seen += 1
        assert server.malformed == bad >= 10_000
        assert errors_seen == errors_expected
        _assert_rate_limited([r for r in caplog.records if r.name == "wrapyfi_like.servers"], started, topic)
    finally:
        raw.close()
        server.close()


def test_too_large_request_and_reply_are_refused_with_clear_errors(topic, in_thread):
    server = Server("T", topic, value_formats=[ValueFormat()], max_message_size=MAX_SIZE)
    client = Client("T", topic, value_formats=[ValueFormat()], request_timeout=10, max_message_size=4 * MAX_SIZE)
    try:
        def serve_one_valid_request():
            request = server.await_request()  # skips (and answers) the refused one first
            try:
                server.reply(request, [bytes(request.args[0])])
            except MessageTooLarge as error:
                server.reply_error(request, error)
        served = in_thread(serve_one_valid_request)
        with pytest.raises(RemoteError, match="request refused: a message of"):
            # under the client's limit, over the server's in total (each frame is under it)
            client.request((bytes(MAX_SIZE // 2), bytes(MAX_SIZE // 2), bytes(MAX_SIZE // 2)), {})
        with pytest.raises(RemoteError, match="MessageTooLarge"):
            client.request((MAX_SIZE,), {})  # the request fits; its reply is too large to send
        with pytest.raises(MessageTooLarge):
            client.request((bytes(5 * MAX_SIZE),), {})  # over the client's own limit: never sent
        served.result(timeout=10)
        assert server.malformed == 1 and client.sent == 2
    finally:
        client.close()
        server.close()


def test_a_reply_over_the_clients_limit_is_refused(topic, in_thread):
    server = Server("T", topic, value_formats=[ValueFormat()])
    client = Client("T", topic, value_formats=[ValueFormat()], request_timeout=10, max_message_size=1024)
    try:
        # every frame under 1024 bytes, the whole reply over: refused after reading, not by libzmq
        served = in_thread(lambda: server.reply(server.await_request(), [[bytes(600), bytes(600)]]))
        with pytest.raises(DecodeError, match="refused: a message of"):
            client.request((), {})
        served.result(timeout=10)
        assert client.malformed == 1 and client.received == 0
    finally:
        client.close()
        server.close()


def test_rate_limited_log_summarises_what_it_suppressed(caplog, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    log = RateLimitedLog(logging.getLogger("wrapyfi_like.test_rate"))
    with caplog.at_level(logging.WARNING, logger="wrapyfi_like.test_rate"):
        for second in range(25):  # 100 bad messages a second from one source, 1 from another
            for _ in range(100):
                log.warning("/a", "malformed", "bad message on %s", "/a")
            log.warning("/b", "malformed", "bad message on %s", "/b")
            now[0] += 1.0
    lines = [r.getMessage() for r in caplog.records]
    from_a = [line for line in lines if "on /a" in line]
    assert len(from_a) == 3  # at 0 s, 10 s and 20 s
    assert from_a[0] == "bad message on /a"
    assert "suppressed 999 similar messages from /a in the last 10 s" in from_a[1]
    assert "suppressed 999 similar messages" in from_a[2]
    assert len([line for line in lines if "on /b" in line]) == 3


def test_rate_limited_log_invented_sources_share_one_limit(caplog, monkeypatch):
    from wrapyfi_like import logs

    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    monkeypatch.setattr(logs, "MAX_SOURCES", 8)
    log = RateLimitedLog(logging.getLogger("wrapyfi_like.test_rate_sources"))
    with caplog.at_level(logging.WARNING, logger="wrapyfi_like.test_rate_sources"):
        for source in range(10_000):  # a peer inventing a source per message, all within 10 s
            log.warning(f"peer-{source}", "malformed", "bad message from %s", source)
        now[0] += 11.0  # every window has passed: a new source gets a line of its own again
        log.warning("honest", "malformed", "bad message from %s", "honest")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 8 + 1 + 1  # the remembered sources, the shared limit, then the newcomer
    assert lines[-1] == "bad message from honest"
    assert len(log._sources) <= 8 + 1
