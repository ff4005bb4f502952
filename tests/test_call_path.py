"""The per-message path's shortcuts keep what they shortcut: each test here fails if the guard
of one shortcut (docs/benchmarks.md, "Where a 1 KB message's time goes") is removed."""

import errno

import pytest
import zmq

from wrapyfi_like.exceptions import TransportError
from wrapyfi_like.middlewares import zeromq


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
