"""A decorated class and worker functions for tests/test_multiprocessing.py.

They live in a module of their own because ``spawn`` starts a fresh interpreter that imports them
by name (and a light module keeps that start short).
"""

from __future__ import annotations

import numpy as np
import torch

from wrapyfi_like.connect.wrapper import MiddlewareCommunicator


class Sensor(MiddlewareCommunicator):
    """Publishes or listens to numbered readings on the topic it was built with."""

    def __init__(self, topic: str, label: str) -> None:
        super().__init__()
        self.topic = topic
        self.label = label

    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Sensor", "$topic", should_wait=True,
                                     publisher_kwargs=dict(wait_timeout=30))
    def reading(self, seq: int, topic: str = ""):
        return {"seq": seq, "label": self.label,
                "array": np.full((4, 3), seq, np.float32), "tensor": torch.full((5,), float(seq))},

    def read(self, seq: int):
        (value,) = self.reading(seq, topic=self.topic)
        return value


def publish_readings(sensor: Sensor, count: int) -> None:
    """Worker: ``sensor`` arrives pickled with its "publish" mode; it publishes ``count`` readings."""
    for seq in range(count):
        sensor.read(seq)
    sensor.close()


def listen_and_forward(sensor: Sensor, count: int, results, taken) -> None:
    """Worker: ``sensor`` arrives with its "listen" mode; each decoded reading (arrays over the
    received frames) goes back to the parent through ``results``, a multiprocessing queue.

    Torch moves a tensor through a queue in shared memory that its sender hands over, so the
    worker stays until the parent sets ``taken`` (torch's rule for every tensor it shares).
    """
    for seq in range(count):
        results.put(sensor.read(seq))
    sensor.close()
    taken.wait(timeout=60)
