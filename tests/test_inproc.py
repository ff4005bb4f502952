"""The in-memory middleware behaves as the ZeroMQ one.

The behaviour tests of pub/sub, req/rep, the modes and the wrapper are imported here and run again
inside ``inproc_middleware()``, which routes their ``"zeromq"`` communicators to memory: one set
of tests, both middlewares. Below them, what only the in-memory middleware has.
"""

import sys
import threading
import time

import numpy as np
import pytest

from test_modes_transceive import (  # noqa: F401  (fixtures and tests, re-run in memory)
    background, test_receive_calls_the_method_with_what_arrived_and_does_not_publish,
    test_transceive_publishes_then_returns_what_the_reemitter_sent_back, topics,
)
from test_pubsub import (  # noqa: F401
    pair, test_close_from_another_thread_ends_a_blocking_listen, test_first_message_is_not_lost_and_arrives_exactly,
    test_large_array_arrives_intact_and_writable, test_listener_without_wait_returns_none_when_nothing_arrived,
    test_listeners_of_prefix_topics_get_only_their_own, test_messages_arrive_in_order,
    test_publisher_does_not_depend_on_the_listeners_thread, test_publisher_wait_timeout_gives_a_clear_error,
)
from test_reqrep import (  # noqa: F401
    test_a_late_reply_is_never_taken_for_the_next_one, test_reply_without_wait_returns_nones_when_no_request_is_there,
    test_request_gets_the_servers_returns_for_its_arguments, test_server_error_is_raised_in_the_client_and_the_server_goes_on,
    test_several_clients_call_one_server_concurrently, test_timeout_without_server_then_success_once_it_runs,
    test_two_services_on_two_topics_never_see_each_others_requests,
)
from test_wrapper import (  # noqa: F401
    close_everything, test_a_list_of_modes_gives_each_instance_its_own, test_close_then_reopen,
    test_listen_without_waiting_returns_none, test_publish_and_listen_with_argument_references,
    test_publish_without_waiting_loses_nothing_once_connected_and_the_counts_say_so,
    test_returning_the_wrong_shape_is_a_clear_error, test_stacked_decorators_top_is_element_zero,
    test_unencodable_return_raises_at_publish,
)
from wrapyfi_like.connect.formats import ValueFormat
from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.connect.publishers import Publisher
from wrapyfi_like.connect.wrapper import MiddlewareCommunicator
from wrapyfi_like.exceptions import ClosedError, ConfigurationError
from wrapyfi_like.middlewares import middleware_module, redirected
from wrapyfi_like.middlewares.inproc import PublisherTransport
from wrapyfi_like.middlewares.inproc.bus import copy_frames
from wrapyfi_like.testing import inproc_middleware

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def in_memory():
    """Every test in this module runs on a fresh in-memory bus, with no socket opened."""
    with inproc_middleware() as bus:
        assert middleware_module("zeromq").__name__ == "wrapyfi_like.middlewares.inproc"
        yield bus


def test_the_imported_tests_really_run_in_memory(topic, in_thread):
    listener = Listener("Test", topic)
    assert type(listener._transport).__module__.startswith("wrapyfi_like.middlewares.inproc")
    listener.close()


def test_a_publisher_changing_its_array_afterwards_does_not_change_what_arrived(topic, in_thread):
    listener = Listener("Test", topic)
    publisher = Publisher("Test", topic, wait_timeout=5)
    array = np.zeros(4)
    publisher.publish({"array": array, "data": bytearray(b"abc")})
    array[:] = 7
    received = listener.listen()
    np.testing.assert_array_equal(received["array"], np.zeros(4))
    assert received["data"] == bytearray(b"abc") and received["array"].flags.writeable


def test_every_listener_of_a_topic_gets_every_message_and_owns_its_copy(topic):
    listeners = [Listener("Test", topic) for _ in range(3)]
    publisher = Publisher("Test", topic, wait_timeout=5)
    publisher.publish(np.arange(3))
    publisher.publish("second")
    arrived = [(listener.listen(), listener.listen()) for listener in listeners]
    arrived[0][0][0] = 100  # one receiver writing into its array does not touch the others'
    for array, text in arrived[1:]:
        np.testing.assert_array_equal(array, np.arange(3))
        assert text == "second"


def test_register_with_inproc_directly_and_get_communicators_lists_it(topic):
    class Counter(MiddlewareCommunicator):
        @MiddlewareCommunicator.register("NativeObject", "inproc", "Counter", topic, should_wait=False)
        def count(self, n):
            return n,

    listener, publisher = Counter(), Counter()
    listener.activate_communication(Counter.count, mode="listen")
    publisher.activate_communication(Counter.count, mode="publish")
    assert listener.count(0) == [None]
    publisher.count((1, 2))
    assert listener.count(0) == [(1, 2)]
    assert {"zeromq", "inproc"} <= MiddlewareCommunicator.get_communicators()


def test_communicators_of_an_ended_block_raise_closed_error(topic):
    with inproc_middleware() as bus:
        listener = Listener("Test", topic, should_wait=False)
        publisher = Publisher("Test", topic, should_wait=False)
        assert bus.topics() == [topic]
    with pytest.raises(ClosedError, match="inproc_middleware block has ended"):
        publisher.publish(1)
    with pytest.raises(ClosedError):
        listener.listen()


def test_blocks_get_their_own_bus_and_restore_the_routing(topic, in_memory):
    outer = Listener("Test", topic, should_wait=False)
    with inproc_middleware() as inner_bus:
        Publisher("Test", topic, should_wait=False).publish("inner")  # nobody listens on the inner bus
        assert inner_bus.topics() == []
    assert middleware_module("zeromq").__name__ == "wrapyfi_like.middlewares.inproc"  # the outer block's
    assert outer.listen() is None and in_memory.topics() == [topic]


def test_redirect_to_an_unknown_middleware_is_refused():
    with pytest.raises(ConfigurationError, match="inproc"):
        with redirected("zeromq", "carrier-pigeon"):
            pass


def wait_until_inside(thread: threading.Thread, function: str, timeout: float = 10.0) -> None:
    """Return once ``thread`` is running ``function`` (so it is blocked in that wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = sys._current_frames().get(thread.ident)
        while frame is not None:
            if frame.f_code.co_name == function:
                return
            frame = frame.f_back
        time.sleep(0.005)  # polling a condition with a deadline, not waiting a fixed time
    pytest.fail(f"the thread never reached {function}")


def test_close_from_another_thread_ends_a_publisher_waiting_for_a_listener(topic):
    publisher = Publisher("Test", topic, should_wait=True)  # no wait_timeout: would wait for ever
    errors = []
    thread = threading.Thread(target=lambda: errors.append(pytest.raises(ClosedError, publisher.publish, 1)),
                              daemon=True)
    thread.start()
    wait_until_inside(thread, "wait_for_members")  # closing before the wait would not test the wake-up
    publisher.close()
    thread.join(5)
    assert not thread.is_alive() and len(errors) == 1


def test_backpressure_drop_counts_what_it_loses_on_both_sides(topic):
    listener = Listener("Test", topic, should_wait=False)
    transport = PublisherTransport(topic, should_wait=False, backpressure="drop", queue_depth=2)
    encode = ValueFormat().encode
    for n in range(4):
        transport.send(encode(n))
    assert [listener.listen() for _ in range(2)] == [0, 1]
    transport.send(encode(4))
    assert listener.listen() == 4 and listener.listen() is None
    assert transport.dropped == 2
    assert listener.stats()["missed"] == 2  # the gap in the publisher's sequence, seen on arrival of 4


def test_backpressure_latest_gives_the_newest_message_whatever_the_queue_depth(topic):
    listener = Listener("Test", topic, should_wait=False)
    transport = PublisherTransport(topic, should_wait=False, backpressure="latest", queue_depth=2)
    encode = ValueFormat().encode
    for n in range(4):
        transport.send(encode(n))
    assert listener.listen() == 3 and listener.listen() is None  # 3, not the oldest waiting (2)
    assert transport.dropped == 2  # 0 and 1 made room for 2 and 3
    assert listener.stats()["dropped"] == 1  # 2, skipped for the newer 3
    assert listener.stats()["missed"] == 0  # a skip is not a gap
    assert list(listener.publisher_stats().values()) == [{"received": 2, "missed": 0, "duplicate": 0, "dropped": 1}]


def test_a_message_over_the_listeners_max_message_size_is_counted_as_malformed(topic, caplog):
    listener = Listener("Test", topic, should_wait=False, max_message_size=1000)
    publisher = Publisher("Test", topic, should_wait=False)
    publisher.publish(np.zeros(1000))
    publisher.publish("small")
    assert listener.listen() == "small"
    assert listener.malformed == 1 and "max_message_size" in caplog.text


def test_a_request_over_the_servers_max_message_size_is_refused_and_the_server_goes_on(topic, in_thread):
    from wrapyfi_like.connect.clients import Client
    from wrapyfi_like.connect.servers import Server
    from wrapyfi_like.exceptions import RemoteError

    server = Server("Test", topic, value_formats=[ValueFormat()], max_message_size=1000)
    client = Client("Test", topic, value_formats=[ValueFormat()], request_timeout=5)
    answered = in_thread(lambda: server.reply(request := server.await_request(), [request.args[0]]))
    with pytest.raises(RemoteError, match="max_message_size is 1000"):
        client.request((b"x" * 2000,), {})
    assert client.request(("small",), {}) == ["small"]
    answered.result(timeout=5)
    assert server.malformed == 1


@pytest.mark.parametrize("make", [lambda topic: Listener("Test", topic, carrier="udp"),
                                  lambda topic: middleware_module("zeromq").ServerTransport(topic, carrier="udp")],
                         ids=["listener", "server"])
def test_a_carrier_zeromq_cannot_bind_is_refused_in_memory_too(topic, make):
    with pytest.raises(ConfigurationError, match="unknown carrier 'udp'"):
        make(topic)


def test_zero_copy_unsafe_shares_the_senders_buffer_as_zeromq_would(topic):
    """The opt-out must not be hidden by a copy here: a sender that reuses its array before the
    message is taken changes what arrives (the hazard docs/guide/register.md describes)."""
    listener = Listener("Test", topic, should_wait=False)
    unsafe = Publisher("Test", topic, should_wait=False, zero_copy="unsafe")
    safe = Publisher("Test", topic, should_wait=False)
    frame = np.zeros(8, np.uint8)
    unsafe.publish(frame)
    safe.publish(frame)
    frame[:] = 9  # the camera loop writing its next frame into the same buffer
    np.testing.assert_array_equal(listener.listen(), np.full(8, 9))  # unsafe: the reuse shows
    np.testing.assert_array_equal(listener.listen(), np.zeros(8))  # safe: the caller owned it again


def test_zero_copy_is_checked(topic):
    with pytest.raises(ConfigurationError, match="zero_copy must be one of"):
        Publisher("Test", topic, zero_copy="sometimes")


def test_the_envelope_carries_publisher_sequence_flags_and_group(topic):
    from wrapyfi_like.middlewares.envelope import LATEST, Group

    listener = Listener("Test", topic, should_wait=False)
    transport = listener._transport
    latest = PublisherTransport(topic, should_wait=False, backpressure="latest", queue_depth=5)
    block = PublisherTransport(topic, should_wait=False)
    encode = ValueFormat().encode
    block.send(encode("a"))
    block.send(encode("b"), Group(b"12345678", 7))
    latest.send(encode("c"))
    stamps = []
    for expected in ("a", "b", "c"):
        assert listener.listen() == expected
        stamps.append(transport.last_envelope)
    assert [stamp.seq for stamp in stamps] == [1, 2, 1]
    assert stamps[0].publisher == stamps[1].publisher != stamps[2].publisher
    assert [stamp.flags & LATEST for stamp in stamps] == [0, 0, LATEST]
    assert [stamp.group for stamp in stamps] == [None, Group(b"12345678", 7), None]
    assert set(transport.per_publisher()) == {stamps[0].publisher.hex(), stamps[2].publisher.hex()}


def test_a_repeated_message_is_skipped_and_counted_and_a_gap_is_counted(topic):
    from wrapyfi_like.middlewares import envelope

    listener = Listener("Test", topic, should_wait=False)
    inbox = listener._transport._inbox
    header = ValueFormat().encode
    publisher = envelope.new_publisher_id()
    for seq, value in ((1, "one"), (1, "one again"), (4, "four")):
        inbox.put([envelope.pack(publisher, seq), *copy_frames(header(value))])  # as a publisher would
    assert [listener.listen(), listener.listen(), listener.listen()] == ["one", "four", None]
    assert listener.stats() == {"sent": 0, "received": 2, "dropped": 0, "malformed": 0, "missed": 2,
                                     "duplicate": 1, "incomplete": 0}
    assert listener.publisher_stats() == {publisher.hex(): {"received": 2, "missed": 2, "duplicate": 1,
                                                            "dropped": 0}}


def test_a_message_without_a_valid_envelope_is_counted_as_malformed(topic, caplog):
    listener = Listener("Test", topic, should_wait=False)
    listener._transport._inbox.put([b"not an envelope", *copy_frames(ValueFormat().encode("x"))])
    Publisher("Test", topic, should_wait=False).publish("valid")
    assert listener.listen() == "valid"
    assert listener.stats()["malformed"] == 1 and "envelope" in caplog.text


def test_stats_and_publisher_stats_of_an_instance(topic):
    class Counter(MiddlewareCommunicator):
        @MiddlewareCommunicator.register("NativeObject", "zeromq", "Counter", topic, should_wait=False,
                                         publisher_kwargs=dict(backpressure="drop", queue_depth=1))
        def count(self, n):
            return n,

    sender, receiver = Counter(), Counter()
    sender.activate_communication(Counter.count, "publish")
    receiver.activate_communication(Counter.count, "listen")
    receiver.count(None)
    sender.count(1)
    sender.count(2)  # dropped: the queue holds 1
    assert receiver.count(None) == [1]
    sender.count(3)
    assert receiver.count(None) == [3]
    keys = {"sent", "received", "dropped", "malformed", "missed", "duplicate", "incomplete"}
    assert receiver.stats() == {"count": {topic: dict.fromkeys(keys, 0) | {"received": 2, "missed": 1}}}
    assert sender.stats() == {"count": {topic: dict.fromkeys(keys, 0) | {"sent": 3, "dropped": 1}}}
    (publisher_id, counts), = receiver.publisher_stats()["count"][topic].items()
    assert counts == {"received": 2, "missed": 1, "duplicate": 0, "dropped": 0} and len(publisher_id) == 16
    assert sender.publisher_stats() == {"count": {}}
    MiddlewareCommunicator.close_all_instances()


def test_a_slow_latest_listener_gets_fresh_messages_whatever_the_queue_depth(topic):
    """17.6 in memory: a 1 kHz publisher, a consumer that works 20 ms per message, a queue of
    1000. Keep-last-1 means each message is at most about one publish interval old when taken;
    a queue served oldest-first would hand out messages hundreds of milliseconds old by the end."""
    listener = Listener("Test", topic)
    publisher = Publisher("Test", topic, should_wait=False, backpressure="latest", queue_depth=1000)
    stop = threading.Event()

    def publish():
        while not stop.is_set():
            publisher.publish(time.monotonic())
            stop.wait(0.001)  # pacing the publisher at about 1 kHz

    publishing = threading.Thread(target=publish, daemon=True)
    publishing.start()
    ages = []
    try:
        for _ in range(20):
            ages.append(time.monotonic() - listener.listen())
            time.sleep(0.02)  # the consumer's work: the slowness under test, not a wait for anything
    finally:
        stop.set()
        publishing.join(5)
    p50, p90 = np.percentile(ages, [50, 90])
    print(f"latest, 1 kHz publisher, 20 ms consumer: message age p50 {p50 * 1000:.1f} ms, p90 {p90 * 1000:.1f} ms")
    assert p50 < 0.05 and p90 < 0.1, (p50, p90)
    assert listener.stats()["dropped"] > 0  # older messages were skipped, and counted
