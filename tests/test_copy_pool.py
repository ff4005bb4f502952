"""The publisher's copy pool: ``zero_copy="safe"`` for buffers up to ``POOL_MAX_BUFFER``.

A reused 1 MiB buffer (the pool's range; tests/test_ownership.py covers 16 MiB, lent or copied
outside the pool) must never change a message in flight, and the pool must reuse its buffers
once libzmq lets go of them and never hold more than its budget.
"""

import json
import signal
import socket

import numpy as np
import pytest
import zmq

from loss_nodes import LossNode
from node_processes import event_is
from wrapyfi_like.middlewares.zeromq.copies import CopyPool

pytestmark = pytest.mark.timeout(60)

SIZE = 1024 * 1024
COUNT = 60  # more messages than the pool holds buffers (16): every buffer is reused


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("policy", [{}, {"backpressure": "drop", "queue_depth": 2},
                                    {"backpressure": "latest"}])
def test_a_reused_buffer_copied_into_the_pool_never_changes_in_flight(topic, policy):
    env = {"WRAPYFI_ZEROMQ_DISCOVERY": f"tcp://127.0.0.1:{_free_port()}"}
    listener = LossNode("listen", topic, "--count", str(COUNT), "--idle", "3", env=env)
    publisher = None
    try:
        listener.wait_for(event_is("ready"))
        publisher = LossNode("publish", topic, "--count", str(COUNT), "--size", str(SIZE),
                             "--kwargs", json.dumps(policy), env=env)
        summary = listener.wait_for(event_is("summary"), timeout=40)
        assert summary["received"] > 0
        assert summary["corrupt"] == 0, f"{summary['corrupt']} of {summary['received']} messages changed in flight"
        if not policy:
            assert summary["received"] == COUNT
    finally:
        for node in (listener, publisher):
            if node is not None:
                if node.process.poll() is None:
                    node.process.send_signal(signal.SIGCONT)
                node.stop()


def test_the_pool_reuses_released_buffers_and_stays_within_its_budget():
    unit = zmq.COPY_THRESHOLD  # smaller frames pyzmq copies itself, untracked
    pool = CopyPool(budget=3 * unit - 1)
    data = bytes(range(256)) * (unit // 256)
    first = pool.copy(data, unit)
    assert bytes(first.buffer) == data and pool.held == unit
    second = pool.copy(data, unit)
    assert second is not None and pool.held == 2 * unit
    assert pool.copy(data, unit) is None  # both in flight, and a third does not fit the budget
    assert pool.oldest_in_flight([]) is first.tracker
    assert pool.oldest_in_flight([first.tracker]) is second.tracker
    tracker = first.tracker
    del first  # libzmq's reference to a frame that was never sent goes with it
    tracker.wait(5)
    third = pool.copy(data[::-1], unit)
    assert third is not None and bytes(third.buffer) == data[::-1]
    assert pool.held == 2 * unit  # the released buffer again, no new one
    trackers = [second.tracker, third.tracker]
    del second, third
    for tracker in trackers:
        tracker.wait(5)
    bigger = pool.copy(bytes(2 * unit), 2 * unit)  # free buffers too small for it give way to it
    assert bigger is not None and pool.held <= pool.budget


def test_the_pool_refuses_what_it_cannot_copy_flat():
    pool = CopyPool()
    assert pool.copy(np.zeros((512, 256), np.uint8)[:, ::2], 65536) is None
    assert pool.held == 0
