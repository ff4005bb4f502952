"""Every middleware passes the transport conformance suite (wrapyfi_like.testing.TransportConformance)."""

import dataclasses
import errno
import inspect
import json
import os
import subprocess
import sys
import types

import pytest
import zmq

from wrapyfi_like.exceptions import ClosedError, ConfigurationError, TransportError, WaitTimeout, map_exceptions
from wrapyfi_like.middlewares import MIDDLEWARES, base, inproc, zeromq
from wrapyfi_like.middlewares.inproc.bus import Bus, current_bus
from wrapyfi_like.middlewares.inproc.pubsub import InprocListenerTransport, InprocPublisherTransport
from wrapyfi_like.middlewares.ports import free_port
from wrapyfi_like.middlewares.zeromq.discovery import NodeAgent
from wrapyfi_like.middlewares.zeromq.settings import ZeroMQSettings
from wrapyfi_like.testing import TransportConformance, inproc_middleware
from wrapyfi_like.testing.transports import INTERFACE

pytestmark = pytest.mark.timeout(90)


class TestZeroMQ(TransportConformance):
    middleware = "zeromq"


class TestInproc(TransportConformance):
    middleware = "inproc"

    def session(self):
        return inproc_middleware()


def _inherited(name):
    """A function of its own for check ``name``: marking the suite's function would mark it everywhere."""
    check = getattr(TransportConformance, name)

    def run(self):
        check(self)
    run.__name__ = run.__qualname__ = name
    return run


WEDGE = ("zenoh 1.10: closing a listener while a publisher's put to it is blocked by backpressure "
         "sometimes wedges the process's zenoh sessions (later checks then find no peer); open, see "
         "docs/guide/zenoh.md pitfalls")


class TestZenoh(TransportConformance):
    middleware = "zenoh"
    test_close_ends_a_send_blocked_by_backpressure = pytest.mark.skip(reason=WEDGE)(
        _inherited("test_close_ends_a_send_blocked_by_backpressure"))


class _EngineError(Exception):
    pass


def test_map_exceptions_maps_the_most_specific_engine_error_and_keeps_the_cause():
    mapping = {zmq.ZMQError: TransportError, zmq.Again: WaitTimeout}
    with pytest.raises(WaitTimeout, match="^listener on /a: ") as raised:
        with map_exceptions(mapping, "listener on /a"):
            raise zmq.Again()
    assert isinstance(raised.value.__cause__, zmq.Again)
    with pytest.raises(TransportError) as raised:
        with map_exceptions(mapping):
            raise zmq.ZMQError(zmq.EINVAL)
    assert type(raised.value) is TransportError and str(raised.value) == "Invalid argument"


def test_map_exceptions_passes_our_errors_and_unnamed_ones_through():
    with pytest.raises(ClosedError):
        with map_exceptions({Exception: TransportError}):
            raise ClosedError("closed")
    with pytest.raises(_EngineError):
        with map_exceptions({zmq.ZMQError: TransportError}):
            raise _EngineError()


# -- the suite itself fails broken transports ----------------------------------------------------

class PrefixBus:
    """A bus that finds listeners by topic prefix, as libzmq's SUB filter does."""

    def __init__(self, bus):
        self._bus = bus

    def members(self, kind, topic):
        return [inbox for (member_kind, member_topic), inboxes in list(self._bus._members.items())
                if member_kind == kind and member_topic.startswith(topic) for inbox in inboxes]

    def __getattr__(self, name):
        return getattr(self._bus, name)


class PrefixPublisher(InprocPublisherTransport):
    """Broken: delivers to every listener whose topic starts with its own."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._bus = PrefixBus(self._bus)


class SilentlyDroppingPublisher(InprocPublisherTransport):
    """Broken: under "block" drops what finds no room, and counts nothing."""

    def _deliver(self, inbox, message):
        inbox.put_or_drop(message, self._queue_depth, drop_oldest=False)


class DeafToCloseListener(InprocListenerTransport):
    """Broken: close() leaves the bus but does not wake a blocked recv."""

    def close(self):
        self._bus.leave(self._kind, self.topic, self._inbox)


class LeakingListener(InprocListenerTransport):
    """Broken: lets an engine error through instead of mapping it."""

    def recv(self, timeout):
        raise OSError("engine failure")


def run_check(monkeypatch, check, **transports):
    """Run the suite's ``check`` on inproc with some transports replaced by ``transports``."""
    module = types.ModuleType("broken_inproc_middleware")
    for kind in ("PublisherTransport", "ListenerTransport", "ServerTransport", "ClientTransport"):
        broken = transports.get(kind)  # a class is given its session as inproc's are; a function fetches one
        if broken is None:
            broken = getattr(inproc, kind)
        elif isinstance(broken, type):
            broken = base.with_session(broken, current_bus)
        setattr(module, kind, broken)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(MIDDLEWARES, "broken", module.__name__)

    class Suite(TransportConformance):
        middleware = "broken"
        patience = 2.0

        def session(self):
            return inproc_middleware()

    suite = Suite()
    suite.setup_method()
    try:
        getattr(suite, check)()
    finally:
        suite.teardown_method()


class LooseListener(InprocListenerTransport):
    """Broken: takes any keyword, so a misspelt one (``queue_dpeth=1``) would pass unnoticed."""

    def __init__(self, topic, *, session, **options):
        super().__init__(topic, session=session, **options)


class DuckListener:
    """Broken: behaves like a listener but is not one (no base class, so nothing checks it)."""

    def __init__(self, topic, carrier="tcp", info=None, max_message_size=1, queue_depth=None,
                 curve_server_key=None, *, session):
        self._inner = InprocListenerTransport(topic, carrier, info, session=session)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def listener_fetching_its_bus(*args, **kwargs):
    """Broken: the transport's session comes from a singleton, not from whoever builds it."""
    return InprocListenerTransport(*args, session=current_bus(), **kwargs)


def test_a_transport_that_fetches_its_session_fails_the_suite(monkeypatch):
    with pytest.raises(AssertionError, match="is not made with base.with_session"):
        run_check(monkeypatch, "test_transports_implement_the_interface", ListenerTransport=listener_fetching_its_bus)


def test_a_catch_all_constructor_fails_the_suite(monkeypatch):
    with pytest.raises(AssertionError, match=r"takes \*\*options: a misspelt keyword"):
        run_check(monkeypatch, "test_transports_implement_the_interface", ListenerTransport=LooseListener)


def test_a_transport_outside_the_interface_fails_the_suite(monkeypatch):
    with pytest.raises(AssertionError, match="does not subclass wrapyfi_like.middlewares.base.ListenerTransport"):
        run_check(monkeypatch, "test_transports_implement_the_interface", ListenerTransport=DuckListener)


def test_prefix_topic_matching_fails_the_suite(monkeypatch):
    with pytest.raises(AssertionError, match="another topic's message"):
        run_check(monkeypatch, "test_topics_match_exactly", PublisherTransport=PrefixPublisher)


def test_silent_drops_under_block_fail_the_suite(monkeypatch):
    with pytest.raises(AssertionError, match="nothing blocked"):
        run_check(monkeypatch, "test_block_loses_nothing", PublisherTransport=SilentlyDroppingPublisher)


def test_a_close_that_does_not_wake_recv_fails_the_suite(monkeypatch):
    with pytest.raises(AssertionError, match="did not end the blocked call"):
        run_check(monkeypatch, "test_close_ends_a_blocked_recv", ListenerTransport=DeafToCloseListener)


def test_an_engine_error_escaping_fails_the_suite(monkeypatch):
    with pytest.raises(AssertionError, match="builtins.OSError .* only wrapyfi_like.exceptions errors"):
        run_check(monkeypatch, "test_listener_timeout_returns_none", ListenerTransport=LeakingListener)


# -- the interface ----------------------------------------------------------------------------------

class Recorder(base.ClientTransport):
    """A client that only records what it was built with."""

    def __init__(self, topic, carrier="tcp", max_message_size=0, curve_server_key=None, *, session):
        self.topic, self.session = topic, session

    def request(self, frames, timeout):
        return frames

    def statistics(self):
        return dict.fromkeys(base.CLIENT_COUNTERS, 0)

    def close(self):
        pass


def test_with_session_fills_the_session_from_the_middleware_unless_one_is_passed():
    sessions = iter(["first", "second"])
    ClientTransport = base.with_session(Recorder, lambda: next(sessions))
    assert ClientTransport("/a", carrier="ipc").session == "first"
    assert ClientTransport("/a", session="mine").session == "mine"
    assert ClientTransport("/a").session == "second"


def test_a_transport_missing_part_of_the_interface_cannot_be_built():
    class NoStatistics(base.ClientTransport):
        def __init__(self, topic, *, session):
            pass

        def request(self, frames, timeout):
            return frames

        def close(self):
            pass

    with pytest.raises(TypeError, match="statistics"):
        NoStatistics("/a", session=None)


def test_the_in_memory_bus_and_the_discovery_agent_are_sessions():
    assert isinstance(Bus("a bus"), base.Session)
    assert isinstance(NodeAgent.get(), base.Session)


def test_every_counter_belongs_to_a_kind_and_every_kind_counter_is_defined():
    kinds = {*base.PUBLISHER_COUNTERS, *base.ACKED_PUBLISHER_COUNTERS, *base.LISTENER_COUNTERS, *base.SERVER_COUNTERS, *base.CLIENT_COUNTERS}
    assert kinds == set(base.COUNTERS) and set(base.PER_PUBLISHER_COUNTERS) <= kinds


@pytest.mark.parametrize("middleware", [zeromq, inproc], ids=["zeromq", "inproc"])
@pytest.mark.parametrize("kind", sorted(INTERFACE))
def test_zeromq_and_inproc_take_exactly_the_interface_parameters(middleware, kind):
    """Names, order, kinds and defaults: a transport built directly behaves as one the connect layer builds."""
    interface = INTERFACE[kind][0]
    expected = [(p.name, p.kind, p.default) for p in inspect.signature(interface.__init__).parameters.values()]
    actual = [(p.name, p.kind, p.default)
              for p in inspect.signature(getattr(middleware, kind).transport.__init__).parameters.values()]
    assert actual == expected


# -- sessions are passed in ---------------------------------------------------------------------

def test_a_zeromq_transport_meets_only_the_transports_of_the_agent_it_is_given(topic):
    """A private agent (a discovery directory of its own) isolates its transports from the
    process's agent, with no singleton touched."""
    settings = dataclasses.replace(ZeroMQSettings.from_environment(), discovery=f"tcp://127.0.0.1:{free_port()}")
    agent = NodeAgent(zmq.Context.instance(), settings)
    made = []
    try:
        private = zeromq.ListenerTransport(topic, session=agent)
        made.append(private)
        public = zeromq.ListenerTransport(topic)  # same topic, the process's agent
        made.append(public)
        publisher = zeromq.PublisherTransport(topic, wait_timeout=10, session=agent)
        made.append(publisher)
        publisher.send([b"h", b"private"])
        assert [bytes(frame) for frame in private.recv(10)] == [b"h", b"private"]
        assert publisher.statistics()["outlets"] == 1, "the publisher found a listener its agent does not list"
        assert public.recv(0) is None
        assert NodeAgent.get() is not agent
    finally:
        for transport in reversed(made):
            transport.close()
        agent.close()


def test_an_inproc_transport_meets_only_the_transports_of_the_bus_it_is_given(topic):
    bus = Bus("a private bus")
    public = inproc.ListenerTransport(topic)  # same topic, the current bus
    try:
        private = inproc.ListenerTransport(topic, session=bus)
        server = inproc.ServerTransport(topic + "/service", session=bus)
        inproc.PublisherTransport(topic, wait_timeout=5, session=bus).send([b"h", b"private"])
        assert [bytes(frame) for frame in private.recv(5)] == [b"h", b"private"]
        assert public.recv(0) is None
        assert bus.topics() == [topic] and bus.topics("service") == [topic + "/service"]
        bus.close()
        with pytest.raises(ClosedError):
            private.recv(0)
        with pytest.raises(ClosedError):
            server.recv(0)
    finally:
        public.close()


# -- ZeroMQ's errors are ours --------------------------------------------------------------------

UNUSABLE_ENDPOINTS = """
import json, sys
from wrapyfi_like.middlewares import zeromq
outcomes = []
for kind in ("ListenerTransport", "ServerTransport"):
    try:
        getattr(zeromq, kind)("/unusable", carrier=sys.argv[1]).close()
        outcomes.append([kind, None, ""])
    except Exception as error:
        outcomes.append([kind, type(error).__qualname__, str(error)])
print(json.dumps(outcomes))
"""


@pytest.mark.parametrize("carrier, variable, value", [
    ("tcp", "WRAPYFI_ZEROMQ_SOCKET_IP", "192.0.2.1"),  # TEST-NET-1: never a local address
    ("ipc", "WRAPYFI_ZEROMQ_IPC_DIR", "d" * 150),  # over the 107-byte ipc path limit
])
def test_an_unusable_endpoint_is_a_configuration_error_naming_the_setting(tmp_path, carrier, variable, value):
    """The user gets one ConfigurationError naming the variable at fault, never zmq.ZMQError or
    OSError, from a listener (our intake binds) and a server (libzmq binds) alike."""
    value = str(tmp_path / value) if carrier == "ipc" else value
    result = subprocess.run([sys.executable, "-c", UNUSABLE_ENDPOINTS, carrier], env={**os.environ, variable: value},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    outcomes = json.loads(result.stdout)
    assert [error for _, error, _ in outcomes] == ["ConfigurationError"] * 2, outcomes
    assert all(variable in text for _, _, text in outcomes), outcomes


def test_a_zmq_error_inside_a_transport_method_reaches_the_user_as_ours():
    from wrapyfi_like.middlewares.zeromq.errors import MapsZMQErrors

    class Exhausted(MapsZMQErrors, role="listener"):
        def __init__(self):
            self.topic = "/camera"

        def recv(self, timeout):
            raise zmq.ZMQError(errno.EMFILE)

        def close(self):
            raise zmq.ContextTerminated()

    with pytest.raises(TransportError, match="^listener on /camera: ") as raised:
        Exhausted().recv(0)
    assert isinstance(raised.value.__cause__, zmq.ZMQError)
    with pytest.raises(ClosedError):
        Exhausted().close()
    assert all(isinstance(cls, type) and issubclass(cls, MapsZMQErrors)
               for cls in (zeromq.PublisherTransport.transport, zeromq.ListenerTransport.transport,
                           zeromq.ServerTransport.transport, zeromq.ClientTransport.transport))


def test_inproc_imports_nothing_of_the_zeromq_middleware():
    script = ("import sys\n"
              "from wrapyfi_like.middlewares import inproc\n"
              "listener = inproc.ListenerTransport('/a')\n"
              "inproc.PublisherTransport('/a').send([b'h'])\n"
              "server, client = inproc.ServerTransport('/s'), inproc.ClientTransport('/s')\n"
              "assert bytes(listener.recv(5)[0]) == b'h'\n"
              "print(sorted(m for m in sys.modules if m.startswith('wrapyfi_like.middlewares.zeromq')))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("kind", sorted(INTERFACE))
def test_a_zeromq_transport_refused_at_construction_holds_no_file_descriptor(kind, topic):
    """Settings refused (an unknown carrier, a bad CURVE key) cost nothing that outlives the
    error: a program that retries with corrected settings never runs out of descriptors."""
    import gc

    curve = "curve_secret_key" if kind in ("PublisherTransport", "ServerTransport") else "curve_server_key"
    attempts = [dict(carrier="udp"), {curve: "not a key"}]
    zeromq.ListenerTransport(topic + "/warm-up").close()  # the agent and the context exist before counting
    gc.collect()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(10):
        for settings in attempts:
            with pytest.raises(ConfigurationError):
                getattr(zeromq, kind)(topic, **settings)
    gc.collect()
    # 20 refusals: a leak of one descriptor each shows; the discovery thread's own churn (a socket
    # or two opened meanwhile) does not
    assert len(os.listdir("/proc/self/fd")) <= before + 4
