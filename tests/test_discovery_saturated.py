"""A directory host that is behind (a start-up burst: more syncs than its thread serves in an
entry's lifetime) keeps the nodes whose syncs wait in its queue or in their connections, and
still drops a node that went away. Real connections to a real :class:`ZmtpHost`; the directory's
clock is moved by hand, so "behind" is exact and the test does not depend on the machine's load."""

import time

import pytest
import zmq

from wrapyfi_like.middlewares.ports import free_port
from wrapyfi_like.middlewares.zeromq.discovery import protocol
from wrapyfi_like.middlewares.zeromq.discovery.directory import ENTRY_TTL, GRACE_ROUNDS
from wrapyfi_like.middlewares.zeromq.discovery.hosting import QUEUED_REQUESTS, ZmtpHost
from wrapyfi_like.middlewares.zeromq.discovery.protocol import Synced, decode_reply
from directory_state import serve_until


pytestmark = pytest.mark.timeout(60)

NODES = QUEUED_REQUESTS + 16
"""More agents than the host's queue holds: some syncs wait unread in their connections."""
KEY = "\0listener /burst"


def wait_until(condition, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def sync_all(host, dealers, seq):
    """Every dealer syncs (its node announcing one listener) and gets its reply, served by ``host``."""
    for index, dealer in dealers.items():
        dealer.send(protocol.sync(seq, f"node{index}", [[KEY, f"tcp://127.0.0.1:{4000 + index}", {}]], [], ""))
    replies = {}

    def all_answered():
        for index, dealer in dealers.items():
            if index not in replies and dealer.poll(0):
                replies[index] = decode_reply(dealer.recv())
        return len(replies) == len(dealers)

    serve_until(host, all_answered)
    assert all(isinstance(reply, Synced) and reply.seq == seq for reply in replies.values())


def test_a_directory_behind_a_burst_keeps_the_nodes_whose_syncs_wait_and_drops_one_that_left(warm, clock):
    host = ZmtpHost(f"tcp://127.0.0.1:{free_port()}", warm)
    dealers = {}
    try:
        for index in range(NODES):
            dealer = dealers[index] = zmq.Context.instance().socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.setsockopt(zmq.ROUTING_ID, protocol.agent_routing_id(b"node%d" % index))
            dealer.connect(host._router.endpoint)
        sync_all(host, dealers, 1)
        assert warm.statistics()["nodes"] == NODES
        # the burst: every node's next sync is sent, and the host's thread does not get to them
        # within an entry lifetime; the queue is full and the rest wait in their connections
        for index, dealer in dealers.items():
            dealer.send(protocol.sync(2, f"node{index}", [[KEY, f"tcp://127.0.0.1:{4000 + index}", {}]], [], ""))
        wait_until(lambda: host._router.queued() > QUEUED_REQUESTS, "the host's queue did not fill")
        clock.now += ENTRY_TTL + 1.0
        assert host.expire() == 0, "nodes whose syncs wait for the directory were dropped"
        replies = {}

        def all_answered():
            for index, dealer in dealers.items():
                if index not in replies and dealer.poll(0):
                    replies[index] = decode_reply(dealer.recv())
            return len(replies) == NODES

        serve_until(host, all_answered)
        assert all(isinstance(reply, Synced) and reply.seq == 2 for reply in replies.values())
        assert warm.statistics()["nodes"] == NODES and warm.statistics()["renewed_late"] == NODES
        assert warm.statistics()["expired"] == 0

        # one node leaves; the others keep syncing: once every connection had its turns, it is dropped
        dealers.pop(0).close()
        wait_until(lambda: host._router.connections() == NODES - 1, "the closed connection was not dropped")
        clock.now += ENTRY_TTL + 1.0
        for seq in range(3, 3 + GRACE_ROUNDS + 1):
            sync_all(host, dealers, seq)
        assert host.expire() == 1
        assert warm.statistics()["nodes"] == NODES - 1 and warm.statistics()["expired"] == 1
    finally:
        for dealer in dealers.values():
            dealer.close()
        host.close()
