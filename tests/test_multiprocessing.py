"""Decorated instances and decoded objects under multiprocessing's ``spawn`` start method.

An instance pickles with its attributes and activated modes, never its sockets; the copy builds
its own communicators on its first call, in its own process. Real sockets, bounded waits.
"""

import multiprocessing
import pickle
import threading

import numpy as np
import pytest
import torch

from spawn_workers import Sensor, listen_and_forward, publish_readings
from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.connect.publishers import Publisher

pytestmark = pytest.mark.timeout(90)

COUNT = 5
SPAWN = multiprocessing.get_context("spawn")


def check_reading(value, seq, label):
    assert value["seq"] == seq and value["label"] == label
    np.testing.assert_array_equal(value["array"], np.full((4, 3), seq, np.float32))
    assert torch.equal(value["tensor"], torch.full((5,), float(seq)))


def finish(process):
    process.join(timeout=30)
    if process.is_alive():
        process.kill()
        pytest.fail("worker process did not finish in time")
    assert process.exitcode == 0


def test_an_instance_pickles_with_its_modes_and_without_its_sockets(topic, in_thread):
    listener = Sensor(topic, "any")
    listener.activate_communication(Sensor.reading, "listen")
    publisher = Sensor(topic, "front")
    publisher.activate_communication(Sensor.reading, "publish")
    try:
        received = in_thread(lambda: listener.read(0))
        publisher.read(0)  # its publisher now exists: a socket that must not travel
        check_reading(received.result(timeout=30), 0, "front")

        copy = pickle.loads(pickle.dumps(publisher))
        assert (type(copy), copy.topic, copy.label) == (Sensor, topic, "front")
        assert copy.stats() == {"reading": {}}  # the mode travelled, no communicator did
        assert publisher.stats()["reading"][topic]["sent"] == 1  # the original is untouched

        received = in_thread(lambda: listener.read(1))
        copy.read(1)  # the copy builds a publisher of its own on its first call
        check_reading(received.result(timeout=30), 1, "front")
        assert copy.stats()["reading"][topic]["sent"] == 1
        copy.close()
    finally:
        publisher.close()
        listener.close()


def test_an_instance_without_modes_pickles_and_runs_its_methods_locally(topic):
    copy = pickle.loads(pickle.dumps(Sensor(topic, "plain")))
    assert copy.read(3)["label"] == "plain"  # no mode: the method just runs
    assert copy.stats() == {}


def test_a_spawned_worker_publishes_while_the_parent_listens(topic, in_thread):
    listener = Sensor(topic, "parent")
    listener.activate_communication(Sensor.reading, "listen")
    worker_sensor = Sensor(topic, "worker")
    worker_sensor.activate_communication(Sensor.reading, "publish")
    received = in_thread(lambda: [listener.read(seq) for seq in range(COUNT)])
    worker = SPAWN.Process(target=publish_readings, args=(worker_sensor, COUNT))
    worker.start()
    try:
        for seq, value in enumerate(received.result(timeout=60)):
            check_reading(value, seq, "worker")
        finish(worker)
    finally:
        worker.kill()
        listener.close()


def test_a_spawned_worker_listens_and_returns_what_it_decoded(topic, in_thread):
    results, taken = SPAWN.Queue(), SPAWN.Event()
    worker_sensor = Sensor(topic, "worker")
    worker_sensor.activate_communication(Sensor.reading, "listen")
    worker = SPAWN.Process(target=listen_and_forward, args=(worker_sensor, COUNT, results, taken))
    worker.start()
    publisher = Sensor(topic, "parent")
    publisher.activate_communication(Sensor.reading, "publish")
    try:
        for seq in range(COUNT):
            publisher.read(seq)  # the first waits (up to 30 s) for the worker's listener
        for seq in range(COUNT):
            # decoded in the worker over its received frames, pickled again through the queue
            check_reading(results.get(timeout=30), seq, "parent")
        taken.set()
        finish(worker)
    finally:
        worker.kill()
        publisher.close()


def test_decoded_arrays_over_received_frames_pickle_but_a_memoryview_does_not(topic):
    listener = Listener("Test", topic)
    publisher = Publisher("Test", topic, wait_timeout=30)
    try:
        sending = threading.Thread(target=publisher.publish, args=(
            {"array": np.arange(6, dtype=np.int16), "tensor": torch.arange(3.0), "view": memoryview(b"abc")},))
        sending.start()
        value = listener.listen()
        sending.join(timeout=30)
        for key in ("array", "tensor"):
            copy = pickle.loads(pickle.dumps(value[key]))
            assert copy.dtype == value[key].dtype and copy.tolist() == value[key].tolist()
        with pytest.raises(TypeError, match="memoryview"):
            pickle.dumps(value["view"])
        assert pickle.loads(pickle.dumps(bytes(value["view"]))) == b"abc"
    finally:
        publisher.close()
        listener.close()
