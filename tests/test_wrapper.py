"""The decorator and modes, as a Wrapyfi user writes them, over real ZeroMQ sockets."""

import threading

import numpy as np
import pytest

from wrapyfi_like.connect.wrapper import DEFAULT_COMMUNICATOR, MiddlewareCommunicator
from wrapyfi_like.exceptions import ConfigurationError

pytestmark = pytest.mark.timeout(30)


class Sensor(MiddlewareCommunicator):
    calls = 0

    @MiddlewareCommunicator.register("NativeObject", "$mware", "Sensor", "$topic", should_wait=True,
                                     publisher_kwargs=dict(wait_timeout=10))
    def read(self, value, topic, mware=DEFAULT_COMMUNICATOR):
        Sensor.calls += 1
        return {"value": value, "pair": (value, str(value))},


class Stereo(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Stereo", "$0", should_wait=True)
    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Stereo", "$1", should_wait=True)
    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Stereo", "$stamp_topic", should_wait=True)
    def frames(self, left_topic, right_topic, stamp_topic, index=0):
        return np.full(3, index), np.full(3, -index), index


@pytest.fixture(autouse=True)
def close_everything():
    yield
    MiddlewareCommunicator.close_all_instances()


def test_publish_and_listen_with_argument_references(topic, in_thread):
    publisher, listener = Sensor(), Sensor()
    publisher.activate_communication(Sensor.read, mode="publish")
    listener.activate_communication("read", mode="listen")
    calls_before = Sensor.calls
    received = in_thread(lambda: listener.read(None, topic=topic, mware="zeromq"))
    assert publisher.read(7, topic, mware="zeromq") == ({"value": 7, "pair": (7, "7")},)
    (message,) = received.result(timeout=10)
    assert message == {"value": 7, "pair": (7, "7")}
    assert Sensor.calls == calls_before + 1, "listen mode must not run the method body"


def test_stacked_decorators_top_is_element_zero(topic, in_thread):
    publisher, listener = Stereo(), Stereo()
    publisher.activate_communication(Stereo.frames, mode="publish")
    listener.activate_communication(Stereo.frames, mode="listen")
    topics = (topic + "/left", topic + "/right", topic + "/stamp")
    received = in_thread(lambda: listener.frames(*topics))
    publisher.frames(*topics, index=5)
    left, right, stamp = received.result(timeout=10)
    np.testing.assert_array_equal(left, np.full(3, 5))
    np.testing.assert_array_equal(right, np.full(3, -5))
    assert stamp == 5


def test_modes_none_and_disable():
    sensor = Sensor()
    assert sensor.read(3, "/unused") == ({"value": 3, "pair": (3, "3")},)
    sensor.activate_communication(Sensor.read, mode="disable")
    assert list(sensor.read(3, "/unused")) == [None]
    sensor.activate_communication(Sensor.read, mode=None)
    assert sensor.read(4, "/unused")[0]["value"] == 4


def test_a_list_of_modes_gives_each_instance_its_own(topic, in_thread):
    first, second, third = Sensor(), Sensor(), Sensor()
    modes = ["publish", "listen", "disable"]
    for sensor in (first, second, third):
        sensor.activate_communication(Sensor.read, mode=modes)
    received = in_thread(lambda: second.read(None, topic))
    first.read(1, topic)
    assert received.result(timeout=10)[0]["value"] == 1
    assert list(third.read(1, topic)) == [None]


def test_close_then_reopen(topic, in_thread):
    publisher, listener = Sensor(), Sensor()
    for round_number in range(2):
        publisher.activate_communication(Sensor.read, mode="publish")
        listener.activate_communication(Sensor.read, mode="listen")
        received = in_thread(lambda: listener.read(None, topic))
        publisher.read(round_number, topic)
        assert received.result(timeout=10)[0]["value"] == round_number
        publisher.close()
        listener.close()
        assert publisher.read(9, topic)[0]["value"] == 9, "a closed instance runs its method normally"


def test_listen_without_waiting_returns_none(topic):
    class Poller(MiddlewareCommunicator):
        @MiddlewareCommunicator.register("NativeObject", "zeromq", "Poller", topic, should_wait=False)
        def poll(self):
            return "never runs",

    poller = Poller()
    poller.activate_communication(Poller.poll, mode="listen")
    assert list(poller.poll()) == [None]


def test_unknown_middleware_and_data_type_list_what_exists():
    with pytest.raises(ConfigurationError, match="NativeObject"):
        MiddlewareCommunicator.register("NoSuchType", "zeromq", "X", "/x")

    with pytest.raises(ConfigurationError, match="available: inproc, zenoh, zeromq"):  # at class definition
        class Wrong(MiddlewareCommunicator):
            @MiddlewareCommunicator.register("NativeObject", "carrier-pigeon", "Wrong", "/x")
            def send(self):
                return 1,

    class Late(MiddlewareCommunicator):  # a $ reference is checked when it is resolved
        @MiddlewareCommunicator.register("NativeObject", "$mware", "Late", "/x")
        def send(self, mware):
            return 1,

    late = Late()
    late.activate_communication(Late.send, mode="publish")
    with pytest.raises(ConfigurationError, match="did you mean 'zeromq'"):
        late.send("zeromk")


def test_unknown_mode_is_an_error():
    with pytest.raises(ConfigurationError, match="publish"):
        Sensor().activate_communication(Sensor.read, mode="broadcast")


def test_returning_the_wrong_shape_is_a_clear_error(topic):
    class Bare(MiddlewareCommunicator):
        @MiddlewareCommunicator.register("NativeObject", "zeromq", "Bare", topic, should_wait=False)
        def send(self):
            return {"not": "a tuple"}

    bare = Bare()
    bare.activate_communication(Bare.send, mode="publish")
    with pytest.raises(ConfigurationError, match="return value,"):
        bare.send()


def test_later_calls_take_every_return_shape_the_first_may(topic, in_thread):
    """After the first call, one-decorator methods take a direct path; it must publish and
    check returns exactly as the first call did."""
    class Echo(MiddlewareCommunicator):
        @MiddlewareCommunicator.register("NativeObject", "zeromq", "Echo", topic, should_wait=True)
        def send(self, returns):
            return returns

    publisher, listener = Echo(), Echo()
    publisher.activate_communication(Echo.send, mode="publish")
    listener.activate_communication(Echo.send, mode="listen")
    for returns in [(1,), (2,), [3], (4,)]:  # a one-item list is accepted as a tuple is
        received = in_thread(lambda: listener.send(None))
        assert publisher.send(returns) == returns
        assert received.result(timeout=10) == [returns[0]]
    for wrong in [{"not": "a tuple"}, (5, 6), ()]:
        with pytest.raises(ConfigurationError, match="return value,"):
            publisher.send(wrong)


def test_unencodable_return_raises_at_publish(topic):
    class Odd(MiddlewareCommunicator):
        @MiddlewareCommunicator.register("NativeObject", "zeromq", "Odd", topic, should_wait=False)
        def send(self):
            return object(),

    odd = Odd()
    odd.activate_communication(Odd.send, mode="publish")
    with pytest.raises(TypeError, match="builtins.object.*plugin"):
        odd.send()


def test_get_communicators_lists_zeromq():
    assert "zeromq" in MiddlewareCommunicator.get_communicators()


class Ticker(MiddlewareCommunicator):
    """Listeners wait; the publisher does not (``publisher_kwargs`` overrides ``should_wait``)."""

    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Ticker", "$topic", should_wait=True,
                                     publisher_kwargs=dict(should_wait=False))
    def tick(self, n, topic):
        return n,


def test_publish_without_waiting_loses_nothing_once_connected_and_the_counts_say_so(topic, in_thread):
    """Twin of the ``should_wait=True`` tests above: without the wait, messages published before
    the publisher knows the listener go nowhere (by design), but from the first one that arrives,
    every one arrives, in order, and the counts agree on both sides."""
    publisher, listener = Ticker(), Ticker()
    publisher.activate_communication(Ticker.tick, "publish")
    listener.activate_communication(Ticker.tick, "listen")
    arrived, changed = [], threading.Condition()

    def listen():
        while not arrived or arrived[-1] != "end":
            value, = listener.tick(None, topic)
            with changed:
                arrived.append(value)
                changed.notify_all()

    listening = in_thread(listen)
    sent = 0
    with changed:
        while not changed.wait_for(lambda: arrived, 0.05):  # until the publisher reaches the listener
            assert sent < 400, "the publisher never reached the listener"
            publisher.tick(sent, topic)
            sent += 1
    for n in range(sent, sent + 200):
        publisher.tick(n, topic)
    publisher.tick("end", topic)
    listening.result(timeout=20)
    first = arrived[0]
    assert arrived == [*range(first, sent + 200), "end"]
    heard = listener.stats()["tick"][topic]
    assert heard["received"] == len(arrived) and heard["missed"] == heard["duplicate"] == 0
    said = publisher.stats()["tick"][topic]
    assert said["sent"] == sent + 201 and said["dropped"] == 0
