"""The per-message path's shortcuts keep what they shortcut: each test here fails if the guard
of one shortcut (docs/benchmarks.md, "The call layer at 1 KB: per step") is removed."""

import errno

import pytest
import zmq

from wrapyfi_like.connect.groups import Aligner
from wrapyfi_like.connect.wrapper import MiddlewareCommunicator
from wrapyfi_like.exceptions import ConfigurationError, TransportError
from wrapyfi_like.middlewares import zeromq
from wrapyfi_like.middlewares.envelope import Group, new_publisher_id
from wrapyfi_like.testing import inproc_middleware


def test_a_zmq_error_inside_the_zeromq_listeners_recv_reaches_the_user_as_ours(topic):
    """``recv`` maps ZeroMQ's errors in its own body (the generic wrapper is left off it, for
    speed): an error libzmq raises under it is still a TransportError naming the listener."""
    listener = zeromq.ListenerTransport(topic, carrier="ipc")
    try:
        assert getattr(type(listener).recv, "__wrapped__", None) is None  # no generic wrapper

        def exhausted(timeout):
            raise zmq.ZMQError(errno.EMFILE)

        listener._intake.receive = exhausted
        for timeout in (None, 0.0):
            with pytest.raises(TransportError, match=f"^listener on {topic}: ") as raised:
                listener.recv(timeout)
            assert isinstance(raised.value.__cause__, zmq.ZMQError)
    finally:
        listener.close()


class Pair(MiddlewareCommunicator):
    """Two stacked decorators; ``returns`` (when set) is what the method returns instead of ``(a, b)``."""

    returns = None

    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Pair", "$topic_a", should_wait=False)
    @MiddlewareCommunicator.register("NativeObject", "$mware_b", "Pair", "$topic_b", should_wait=False)
    def both(self, a, b, topic_a, topic_b, mware_b="zeromq"):
        return (a, b) if self.returns is None else self.returns


@pytest.fixture
def in_memory():
    with inproc_middleware():
        yield
    MiddlewareCommunicator.close_all_instances()


def _direct(instance):
    return instance.__dict__["_wrapyfi_like_bindings"]["Pair.both"].direct


def test_a_stacked_method_keeps_the_return_rules_on_its_direct_path(topic, in_memory):
    """After its first call a stacked method takes a direct path (no per-call ``Call``); a list
    of parts is still published, a wrong count still raises, and a listener that finds nothing
    still returns one None per decorator."""
    topics = dict(topic_a=topic + "/a", topic_b=topic + "/b")
    source, sink = Pair(), Pair()
    source.activate_communication(Pair.both, "publish")
    sink.activate_communication(Pair.both, "listen")
    assert sink.both(None, None, **topics) == [None, None]
    assert source.both(1, 2, **topics) == (1, 2)
    assert _direct(source) is not None and _direct(sink) is not None
    assert sink.both(None, None, **topics) == [1, 2]
    source.returns = [3, {"x": 4}]
    assert source.both(0, 0, **topics) == [3, {"x": 4}]
    assert sink.both(None, None, **topics) == [3, {"x": 4}]
    source.returns = (5,)
    with pytest.raises(ConfigurationError, match="must return a tuple of 2"):
        source.both(0, 0, **topics)
    assert sink.both(None, None, **topics) == [None, None]
    assert sink.stats()["both"][topics["topic_a"]]["incomplete"] == 0


def test_a_stacked_methods_direct_path_goes_with_its_mode(topic, in_memory):
    """activate_communication at any time: the direct paths built for one mode are not used in
    the next, whichever it is."""
    topics = dict(topic_a=topic + "/a", topic_b=topic + "/b")
    first, second = Pair(), Pair()
    first.activate_communication(Pair.both, "publish")
    second.activate_communication(Pair.both, "listen")
    second.both(None, None, **topics)
    first.both(1, 2, **topics)
    assert second.both(None, None, **topics) == [1, 2]
    first.activate_communication(Pair.both, "listen")
    second.activate_communication(Pair.both, "publish")
    assert first.both(None, None, **topics) == [None, None]
    second.both(3, 4, **topics)
    second.both(5, 6, **topics)
    assert first.both(None, None, **topics) == [3, 4]
    assert first.both(None, None, **topics) == [5, 6]
    second.activate_communication(Pair.both, None)
    assert second.both(7, 8, **topics) == (7, 8)  # runs locally, publishes nothing
    assert first.both(None, None, **topics) == [None, None]


def test_a_stacked_listen_with_an_absent_middleware_returns_none_for_it_on_every_call(topic, in_memory):
    topics = dict(topic_a=topic + "/a", topic_b=topic + "/b", mware_b="none")
    source, sink = Pair(), Pair()
    source.activate_communication(Pair.both, "publish")
    sink.activate_communication(Pair.both, "listen")
    sink.both(None, None, **topics)
    for value in (1, 2):
        source.both(value, "ignored", **topics)
        assert sink.both(None, None, **topics) == [value, None]


class _Parts:
    """A stand-in listener giving ``(value, group)`` parts of one publisher from a list; an
    exception in the list is raised."""

    def __init__(self, parts):
        self._parts = list(parts)
        self.incomplete = 0
        self.malformed = 0
        self.in_topic = "/parts"

    def listen_part(self):
        part = self._parts.pop(0) if self._parts else None
        if isinstance(part, BaseException):
            raise part
        return None if part is None else (*part, b"publisher")


def test_the_aligner_keeps_a_part_read_before_another_listener_raised():
    """The in-step read holds the parts it read when a later listener raises (Ctrl-C,
    ``on_invalid="raise"``), as the general loop does: the next read returns that call whole."""
    origin = new_publisher_id()
    first, second = Group(origin, 1), Group(origin, 2)
    aligner = Aligner([_Parts([("image 1", first), ("image 2", second)]),
                       _Parts([KeyboardInterrupt(), ("meta 1", first), ("meta 2", second)])])
    with pytest.raises(KeyboardInterrupt):
        aligner.read()
    assert aligner.read() == ["image 1", "meta 1"]
    assert aligner.read() == ["image 2", "meta 2"]


class ClosesItself(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("NativeObject", "none", "ClosesItself", "/closes/a")
    @MiddlewareCommunicator.register("NativeObject", "none", "ClosesItself", "/closes/b")
    def both(self):
        self.close()  # stands for another thread's close() landing while the call runs
        return 1, 2


def test_a_stacked_call_that_a_close_overtakes_still_returns_what_it_did():
    """The direct path is built after a call's work; a close during the call must not turn the
    finished call into a ClosedError (the publish went out, a listen's parts were taken)."""
    instance = ClosesItself()
    instance.activate_communication(ClosesItself.both, "publish")
    assert instance.both() == (1, 2)
