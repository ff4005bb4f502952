"""reply/request modes over real ZeroMQ sockets on 127.0.0.1 (servers run on background threads)."""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from wrapyfi_like.connect.wrapper import MiddlewareCommunicator
from wrapyfi_like.exceptions import RemoteError, WaitTimeout

pytestmark = pytest.mark.timeout(60)


class Calculator(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Calculator", "$topic",
                                     request_timeout="$timeout")
    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Calculator", "$topic")
    def compute(self, x, scale=1, *, topic, timeout=10.0):
        if isinstance(x, str):
            raise ValueError(f"cannot compute with {x!r}")
        return {"sum": x * scale, "who": threading.current_thread().name}, np.full((2, 2), x * scale)


def pair(topic, timeout=10.0):
    server, client = Calculator(), Calculator()
    server.activate_communication(Calculator.compute, mode="reply")
    client.activate_communication(Calculator.compute, mode="request")
    return server, client


def serve(server, topic, count):
    """Serve ``count`` requests on a background thread; the future holds what the server returned."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="server")
    future = executor.submit(lambda: [server.compute(topic=topic) for _ in range(count)])
    executor.shutdown(wait=False)
    return future


def test_request_gets_the_servers_returns_for_its_arguments(topic):
    server, client = pair(topic)
    served = serve(server, topic, 1)
    try:
        result, array = client.compute(np.float64(3.5), scale=2, topic=topic)
        assert result["sum"] == 7.0 and result["who"].startswith("server")
        np.testing.assert_array_equal(array, np.full((2, 2), 7.0))
        (server_result, server_array), = served.result(timeout=10)
        assert server_result["sum"] == 7.0
    finally:
        server.close(), client.close()


def test_timeout_without_server_then_success_once_it_runs(topic):
    server, client = pair(topic)
    try:
        with pytest.raises(WaitTimeout, match="request_timeout"):
            client.compute(1, topic=topic, timeout=0.3)
        served = serve(server, topic, 1)
        result, _ = client.compute(2, topic=topic, timeout=0.3)
        assert result["sum"] == 2
        served.result(timeout=10)
    finally:
        server.close(), client.close()


def test_a_late_reply_is_never_taken_for_the_next_one(topic):
    server, client = pair(topic)
    try:
        serve(server, topic, 1)
        # $timeout is resolved at the first call: this client's requests time out after 1 s
        assert client.compute(1, topic=topic, timeout=1.0)[0]["sum"] == 1  # the server is up and known
        with pytest.raises(WaitTimeout):
            client.compute(10, topic=topic)  # nobody serves now: times out
        served = serve(server, topic, 2)  # answers the stale request (10), then the next one
        assert client.compute(20, topic=topic)[0]["sum"] == 20
        assert [r[0]["sum"] for r in served.result(timeout=10)] == [10, 20]
    finally:
        server.close(), client.close()


def test_server_error_is_raised_in_the_client_and_the_server_goes_on(topic):
    server, client = pair(topic)
    served = serve(server, topic, 1)
    try:
        with pytest.raises(RemoteError, match="ValueError: cannot compute with 'boom'"):
            client.compute("boom", topic=topic)
        assert client.compute(5, topic=topic)[0]["sum"] == 5
        assert served.result(timeout=10)[0][0]["sum"] == 5  # the failed call did not end the serve
    finally:
        server.close(), client.close()


def test_a_client_making_the_server_raise_again_and_again_gets_one_traceback_logged(topic, caplog):
    server, client = pair(topic)
    served = serve(server, topic, 1)
    try:
        for _ in range(20):
            with pytest.raises(RemoteError, match="cannot compute"):
                client.compute("boom", topic=topic)
        assert client.compute(5, topic=topic)[0]["sum"] == 5
        served.result(timeout=10)
    finally:
        server.close(), client.close()
    raised = [r for r in caplog.records if "raised while serving" in r.getMessage()]
    assert len(raised) == 1 and raised[0].exc_info is not None  # the owner still sees one traceback


def test_two_services_on_two_topics_never_see_each_others_requests(topic):
    (server_a, client_a), (server_b, client_b) = pair(topic + "/a"), pair(topic + "/ab")
    try:
        served_a = serve(server_a, topic + "/a", 3)
        served_b = serve(server_b, topic + "/ab", 3)
        for n in range(3):
            assert client_b.compute(100 + n, topic=topic + "/ab")[0]["sum"] == 100 + n
            assert client_a.compute(n, topic=topic + "/a")[0]["sum"] == n
        assert [r[0]["sum"] for r in served_a.result(timeout=10)] == [0, 1, 2]
        assert [r[0]["sum"] for r in served_b.result(timeout=10)] == [100, 101, 102]
    finally:
        for communicator in (server_a, client_a, server_b, client_b):
            communicator.close()


def test_several_clients_call_one_server_concurrently(topic):
    server = Calculator()
    server.activate_communication(Calculator.compute, mode="reply")
    clients = [Calculator() for _ in range(4)]
    for client in clients:
        client.activate_communication(Calculator.compute, mode="request")
    served = serve(server, topic, 4 * 5)
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(
                lambda i: [clients[i].compute(i * 100 + n, topic=topic)[0]["sum"] for n in range(5)], range(4)))
        assert results == [[i * 100 + n for n in range(5)] for i in range(4)]
        assert len(served.result(timeout=10)) == 20
    finally:
        server.close()
        for client in clients:
            client.close()


def test_reply_without_wait_returns_nones_when_no_request_is_there(topic):
    class Lazy(MiddlewareCommunicator):
        @MiddlewareCommunicator.register("NativeObject", "zeromq", "Lazy", topic, should_wait=False)
        def answer(self):
            return 42,

    lazy = Lazy()
    lazy.activate_communication(Lazy.answer, mode="reply")
    try:
        assert lazy.answer() == [None]
    finally:
        lazy.close()


def test_later_requests_of_a_one_decorator_method_carry_their_own_arguments(topic):
    """After the first call a one-decorator client takes a direct path; every call must still
    send its own arguments, return one item per decorator, and raise the server's errors."""
    class Doubler(MiddlewareCommunicator):
        @MiddlewareCommunicator.register("NativeObject", "zeromq", "Doubler", topic)
        def double(self, x, offset=0):
            if x is None:
                raise ValueError("nothing to double")
            return x * 2 + offset,

    server, client = Doubler(), Doubler()
    server.activate_communication(Doubler.double, mode="reply")
    client.activate_communication(Doubler.double, mode="request")
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="server")
    served = executor.submit(lambda: [server.double(0) for _ in range(3)])
    executor.shutdown(wait=False)
    try:
        assert client.double(1) == [2]
        assert client.double(2, offset=10) == [14]
        with pytest.raises(RemoteError, match="nothing to double"):
            client.double(None)
        assert client.double(3, 100) == [106]
        assert served.result(timeout=10) == [(2,), (14,), (106,)]
    finally:
        server.close(), client.close()


def test_a_reply_whose_client_is_gone_is_counted_and_logged_once_not_lost_silently(topic, caplog):
    """A client that is gone (here: a DEALER that sent a request and closed) costs its reply,
    counted each time and logged once (rate-limited), and never an error in the server."""
    import time

    import zmq

    from wrapyfi_like.middlewares.zeromq.reqrep import REQUEST_ID, Ticket
    from wrapyfi_like.middlewares.zeromq import ServerTransport as ZeroMQServerTransport

    server = ZeroMQServerTransport(topic)
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    try:
        dealer.connect(server.endpoint)
        dealer.send_multipart([REQUEST_ID.pack(0), b"request"])
        ticket, _ = server.recv(timeout=10)
        dealer.close(linger=0)
        deadline = time.monotonic() + 10
        while not ticket.identity.gone:  # the server's reading thread sees the connection close
            assert time.monotonic() < deadline, "the server never noticed its client was gone"
            server.recv(timeout=0.01)
        with caplog.at_level("WARNING", logger="wrapyfi_like.zeromq.reqrep"):
            for number in range(3):
                server.send(Ticket(ticket.identity, REQUEST_ID.pack(number)), [b"reply"])
        assert server.statistics() == {"received": 1, "sent": 0, "errors": 0, "dropped": 3, "malformed": 0, "refused": 0}
        assert caplog.text.count("the client is gone") == 1
    finally:
        dealer.close(linger=0)
        server.close()


FOREIGN_REPLY_FLOOD = """
import sys
from wrapyfi_like.middlewares.zeromq.reqrep import REQUEST_ID
from wrapyfi_like.middlewares.zeromq import ServerTransport as ZeroMQServerTransport

server = ZeroMQServerTransport(sys.argv[1])
ticket, _ = server.recv(timeout=20)
foreign = [REQUEST_ID.pack(10 ** 6), b"ok", b"not yours"]
print("flooding", flush=True)
sent = 0
while True:  # until the test kills it, as fast as a raw socket goes
    if not server._router.send(ticket.identity, foreign):
        continue  # its outbox is full: the client reads slower than this
    sent += 1
    if sent == 50_000:
        print("backlog", flush=True)  # queued for the client, mostly in socket buffers: ~0.5 s to read
"""


def test_a_server_flooding_foreign_replies_cannot_hold_a_request_past_its_timeout(topic):
    """Replies with other request ids are thrown away; a stream of them from a hostile server
    process must not keep the client reading past ``request_timeout``."""
    import subprocess
    import sys
    import time

    from wrapyfi_like.connect.clients import Client
    from wrapyfi_like.connect.formats import ValueFormat

    flooder = subprocess.Popen([sys.executable, "-c", FOREIGN_REPLY_FLOOD, topic], stdout=subprocess.PIPE, text=True)
    lines = {"flooding": threading.Event(), "backlog": threading.Event()}
    threading.Thread(target=lambda: [lines[line.strip()].set() for line in flooder.stdout], daemon=True).start()
    client = Client("Flood", topic, value_formats=[ValueFormat()], request_timeout=0.1)
    try:
        while not lines["flooding"].is_set():  # until the flooder has taken a request: it answers none
            with pytest.raises(WaitTimeout):
                client.request((1,), {})
        assert lines["backlog"].wait(20)
        started = time.monotonic()
        with pytest.raises(WaitTimeout):
            client.request((2,), {})
        assert time.monotonic() - started < 0.4
        assert client.statistics()["dropped"] > 0
    finally:
        client.close()
        flooder.kill()
        flooder.communicate()


def test_a_large_reply_sent_just_before_the_server_closes_still_reaches_its_client(topic, in_thread):
    """Closing waits (up to ``SERVER_LINGER``) for replies the kernel has not taken yet, as
    libzmq's ``ZMQ_LINGER`` did: a server that answers its last request and exits loses nothing."""
    import zmq

    from wrapyfi_like.middlewares.zeromq import ServerTransport as ZeroMQServerTransport
    from wrapyfi_like.middlewares.zeromq.reqrep import REQUEST_ID

    server = ZeroMQServerTransport(topic)
    client = zmq.Context.instance().socket(zmq.DEALER)
    client.setsockopt(zmq.LINGER, 0)
    try:
        client.connect(server.endpoint)
        client.send_multipart([REQUEST_ID.pack(1), b"request"])
        ticket, _ = server.recv(timeout=10)
        payload = np.arange(4 << 20, dtype=np.float32)  # 16 MB: far more than the socket buffers take
        reply = in_thread(lambda: client.recv_multipart() if client.poll(10_000) else None)
        server.send(ticket, [payload])
        server.close()
        frames = reply.result(timeout=10)
        assert frames[:2] == [REQUEST_ID.pack(1), b"ok"]
        assert np.array_equal(np.frombuffer(frames[2], np.float32), payload)
        assert server.statistics()["sent"] == 1
    finally:
        client.close()
        server.close()


def test_a_call_travels_as_the_list_pair_and_a_server_reads_the_tuple_pair_too(topic, in_thread):
    """docs/wire.md: the request body's value is ``[args, kwargs]`` (a plain msgpack array, cheaper
    than the tuple); a server also reads the tuple ``(args, kwargs)`` earlier clients sent."""
    from wrapyfi_like.connect.clients import Client
    from wrapyfi_like.connect.formats import ValueFormat
    from wrapyfi_like.connect.servers import Server
    from wrapyfi_like.encoding import Codec

    server = Server("Calc", topic, value_formats=[ValueFormat()])
    client = Client("Calc", topic, value_formats=[ValueFormat()])
    sent = []
    request = client._transport.request
    client._transport.request = lambda frames, timeout: sent.append(frames) or request(frames, timeout)

    def serve_two():
        calls = []
        for _ in range(2):
            call = server.await_request()
            calls.append((call.args, call.kwargs))
            server.reply(call, [call.args[0] * call.kwargs["scale"]])
        return calls

    served = in_thread(serve_two)
    try:
        assert client.request((3,), {"scale": 2}) == [6]
        assert Codec().decode(sent[0]) == [[3], {"scale": 2}]
        tuple_pair = Codec().encode(((5,), {"scale": 10}))
        reply = request(tuple_pair, 10.0)
        assert Codec().decode(reply[1:]) == 50
        assert served.result(timeout=10) == [((3,), {"scale": 2}), ((5,), {"scale": 10})]
    finally:
        server.close(), client.close()


def test_a_served_method_returning_the_wrong_shape_on_a_later_call_gets_its_client_an_error(topic):
    """After the first request a one-decorator server takes a direct path; a return that is not
    a one-item tuple still goes the general way: the client gets the explanation, and the server
    goes on serving."""
    class Echo(MiddlewareCommunicator):
        @MiddlewareCommunicator.register("NativeObject", "zeromq", "Echo", topic)
        def echo(self, x):
            return x if x == "bare" else (x,)

    server, client = Echo(), Echo()
    server.activate_communication(Echo.echo, mode="reply")
    client.activate_communication(Echo.echo, mode="request")
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="server")
    served = executor.submit(lambda: [server.echo(None) for _ in range(2)])
    executor.shutdown(wait=False)
    try:
        assert client.echo(1) == [1]
        with pytest.raises(RemoteError, match="must return a tuple of 1 value"):
            client.echo("bare")
        assert client.echo(2) == [2]
        assert served.result(timeout=10) == [(1,), (2,)]
        binding = server.__dict__["_wrapyfi_like_bindings"][Echo.echo.__qualname__]
        assert binding.direct is not None, "the later calls took the direct path"
    finally:
        server.close(), client.close()
