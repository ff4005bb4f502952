"""A stacked camera as a process of its own, for tests/test_stacked_hostile.py.

``python stacked_nodes.py dies-mid-call IMAGE_TOPIC META_TOPIC CALLS`` publishes CALLS whole
calls (image + metadata, one call group each, as a stacked method's publish does), then the
image part of one more call only, reports ``half-sent`` and waits to be killed: what a SIGKILL
landing between the two parts of a call leaves behind. Events are JSON lines on stdout
(tests/node_processes.py reads them).
"""

from __future__ import annotations

import sys

import numpy as np

from node_processes import _report


def _dies_mid_call(image_topic: str, meta_topic: str, calls: int) -> None:
    from wrapyfi_like.connect.groups import CallGroups
    from wrapyfi_like.connect.publishers import Publisher

    image = Publisher("Camera", image_topic, wait_timeout=30)
    meta = Publisher("Camera", meta_topic, wait_timeout=30)
    groups = CallGroups()
    for index in range(1, calls + 1):
        group = groups.next()
        image.publish(np.full(16, index, np.int64), group)
        meta.publish({"index": index}, group)
    image.publish(np.full(16, calls + 1, np.int64), groups.next())
    _report("half-sent", call=calls + 1)
    sys.stdin.read()  # until killed


if __name__ == "__main__":
    role, image_topic, meta_topic, calls = sys.argv[1:]
    assert role == "dies-mid-call", role
    _dies_mid_call(image_topic, meta_topic, int(calls))
