"""Stacked returns are atomic: a listener's tuple never mixes parts of two calls, and the parts
that could not be paired are counted as ``incomplete``.

Real drops (``backpressure="drop"``/``"latest"``, ``queue_depth=1``) in memory, where the
sequence of drops can be made exact, and over ZeroMQ with a listener that does not read while
the publisher sends large frames.
"""

import threading

import numpy as np
import pytest

from wrapyfi_like.connect.publishers import Publisher
from wrapyfi_like.connect.wrapper import MiddlewareCommunicator
from wrapyfi_like.middlewares.envelope import Group, new_publisher_id
from wrapyfi_like.testing import inproc_middleware

pytestmark = pytest.mark.timeout(60)

CALLS = 300


class Camera(MiddlewareCommunicator):
    """A frame and its metadata: two stacked decorators, each topic with its own queue depth."""

    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Camera", "$image_topic", should_wait="$wait",
                                     publisher_kwargs=dict(backpressure="$policy", queue_depth="$image_depth"),
                                     listener_kwargs=dict(queue_depth="$image_depth"))
    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Camera", "$meta_topic", should_wait="$wait",
                                     publisher_kwargs=dict(backpressure="$policy", queue_depth="$meta_depth"))
    def capture(self, index, image_topic, meta_topic, policy="drop", image_depth=1, meta_depth=1,
                wait=False, size=16):
        return np.full(size, index, np.int64), {"index": index}


@pytest.fixture(autouse=True)
def close_everything():
    yield
    MiddlewareCommunicator.close_all_instances()


@pytest.fixture
def in_memory():
    with inproc_middleware() as bus:
        yield bus


def pair(topic, mode_a="publish", mode_b="listen"):
    camera, viewer = Camera(), Camera()
    camera.activate_communication(Camera.capture, mode=mode_a)
    viewer.activate_communication(Camera.capture, mode=mode_b)
    return camera, viewer


def check_one_call(image, meta):
    assert meta is not None and np.all(image == meta["index"]), (image[:1], meta)


def test_a_part_lost_on_one_topic_discards_its_partner_and_counts_it(topic, in_memory, caplog):
    """image queue 1, metadata queue 3: calls 2 and 3 lose their image only. Paired by arrival
    order, the viewer would return image 4 with metadata 2."""
    camera, viewer = pair(topic)
    kwargs = dict(image_topic=topic + "/image", meta_topic=topic + "/meta", image_depth=1, meta_depth=3)
    assert viewer.capture(None, **kwargs) == [None, None]  # builds the listeners; nothing yet
    for index in (1, 2, 3):
        camera.capture(index, **kwargs)
    image, meta = viewer.capture(None, **kwargs)
    assert meta == {"index": 1}
    camera.capture(4, **kwargs)
    image, meta = viewer.capture(None, **kwargs)
    check_one_call(image, meta)
    assert meta == {"index": 4}
    assert viewer.capture(None, **kwargs) == [None, None]
    stats = viewer.stats()["capture"]
    assert stats[topic + "/meta"]["incomplete"] == 2  # metadata 2 and 3, whose images were dropped
    assert stats[topic + "/image"]["missed"] == 2  # images 2 and 3: the gap seen when image 4 came
    assert stats[topic + "/image"]["incomplete"] == 0
    assert camera.stats()["capture"][topic + "/image"]["dropped"] == 2
    assert "whose other parts never arrived" in caplog.text


def test_a_non_waiting_listen_that_finds_only_some_parts_returns_the_whole_call_later(topic, in_memory):
    camera, viewer = pair(topic)
    kwargs = dict(image_topic=topic + "/image", meta_topic=topic + "/meta")
    viewer.capture(None, **kwargs)
    group = Group(new_publisher_id(), 1)
    Publisher("Camera", topic + "/image", should_wait=False).publish(np.full(16, 5), group)
    assert viewer.capture(None, **kwargs) == [None, None]  # the image alone is not returned ...
    Publisher("Camera", topic + "/meta", should_wait=False).publish({"index": 5}, group)
    image, meta = viewer.capture(None, **kwargs)  # ... it is, with its metadata, once that comes
    check_one_call(image, meta)
    assert meta == {"index": 5}
    assert viewer.stats()["capture"][topic + "/image"]["incomplete"] == 0


@pytest.mark.parametrize("policy", ["drop", "latest"])
def test_under_real_drops_no_returned_tuple_mixes_calls_and_every_part_is_accounted_for(topic, in_memory, policy):
    """A publisher flat out, a viewer thread reading: whatever is dropped, each tuple is one
    call, and per topic every part sent was dropped, returned, discarded as incomplete, or is
    still waiting."""
    camera, viewer = pair(topic)
    kwargs = dict(image_topic=topic + "/image", meta_topic=topic + "/meta", policy=policy, wait=True,
                  image_depth=1, meta_depth=3)  # queues of unequal depth: parts are lost unevenly
    returned, mixed = [], []
    changed = threading.Condition()

    def view():
        while not returned or returned[-1] < CALLS:  # until a flush call (below) came through
            image, meta = viewer.capture(None, **kwargs)
            if not np.all(image == meta["index"]):
                mixed.append((image[:1], meta))
            with changed:
                returned.append(meta["index"])
                changed.notify_all()

    viewing = threading.Thread(target=view, daemon=True)
    viewing.start()
    for index in range(CALLS):
        camera.capture(index, **kwargs)  # the first waits for the viewer's listeners
    index = CALLS
    with changed:  # flush calls until one gets through whole (the last image may have been dropped)
        while not changed.wait_for(lambda: returned and returned[-1] >= CALLS, 0.5):
            assert index < CALLS + 20, returned[-5:]
            camera.capture(index, **kwargs)
            index += 1
    viewing.join(10)
    assert not viewing.is_alive()
    assert not mixed
    assert returned == sorted(set(returned))  # in call order, none twice
    sent = camera.stats()["capture"]
    heard = viewer.stats()["capture"]
    for listener in listeners_of(viewer):
        counts, part = heard[listener.in_topic], sent[listener.in_topic]
        assert part["sent"] == index
        waiting = len(listener._transport._inbox._items)
        # "dropped" at the listener: older messages "latest" skipped for a newer one
        assert counts["received"] + counts["dropped"] + waiting == part["sent"] - part["dropped"]
        held = counts["received"] - len(returned) - counts["incomplete"]
        assert 0 <= held <= 1, counts
    assert sum(sent[t]["dropped"] + heard[t]["dropped"] for t in heard) > 0, \
        "nothing was lost: the loss path under test did not run"


def listeners_of(viewer):
    return [group[0] for group in viewer._wrapyfi_like_bindings[Camera.capture.__qualname__]._communicators["listen"]]


def test_a_list_form_decorator_aligns_too(topic, in_memory):
    class Pair(MiddlewareCommunicator):
        @MiddlewareCommunicator.register([["NativeObject", "zeromq", "Pair", topic + "/a",
                                           {"should_wait": False, "publisher_kwargs": {"backpressure": "drop",
                                                                                       "queue_depth": 1}}],
                                          ["NativeObject", "zeromq", "Pair", topic + "/b",
                                           {"should_wait": False, "publisher_kwargs": {"backpressure": "drop",
                                                                                       "queue_depth": 3}}]])
        def both(self, n):
            return [n, -n],

    sender, receiver = Pair(), Pair()
    sender.activate_communication(Pair.both, "publish")
    receiver.activate_communication(Pair.both, "listen")
    receiver.both(0)
    for n in (1, 2, 3):
        sender.both(n)
    assert receiver.both(0) == [[1, -1]]
    sender.both(4)
    assert receiver.both(0) == [[4, -4]]
    assert receiver.stats()["both"][topic + "/b"]["incomplete"] == 2


def test_a_single_decorator_publish_sends_no_group(topic, in_memory):
    """The fast path stays as it was: one decorator, one message, no call group."""
    class Single(MiddlewareCommunicator):
        @MiddlewareCommunicator.register("NativeObject", "zeromq", "Single", topic, should_wait=False)
        def send(self, n):
            return n,

    sender, receiver = Single(), Single()
    sender.activate_communication(Single.send, "publish")
    receiver.activate_communication(Single.send, "listen")
    receiver.send(0)
    for n in range(3):
        sender.send(n)
    (listener,), = receiver._wrapyfi_like_bindings[Single.send.__qualname__]._communicators["listen"]
    assert [listener.listen_part()[:2] for _ in range(3)] == [(0, None), (1, None), (2, None)]


class WaitingCamera(MiddlewareCommunicator):
    """:class:`Camera` whose publishers wait for their listeners and whose listeners block."""

    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Camera", "$image_topic", should_wait=True,
                                     publisher_kwargs=dict(backpressure="drop", queue_depth=1, wait_timeout=20),
                                     listener_kwargs=dict(queue_depth=1))
    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Camera", "$meta_topic", should_wait=True,
                                     publisher_kwargs=dict(backpressure="drop", queue_depth=1000, wait_timeout=20))
    def capture(self, index, image_topic, meta_topic):
        return np.full(1 << 17, index, np.int64), {"index": index}  # 1 MB image, small metadata


def test_over_zeromq_a_listener_that_fell_behind_never_returns_mixed_calls(topic):
    """1 MB images with queue_depth 1 and small metadata with room for all, sent while the viewer
    reads nothing: images are dropped, metadata not. Every tuple the viewer then gets is one call."""
    camera, viewer = WaitingCamera(), WaitingCamera()
    camera.activate_communication(WaitingCamera.capture, "publish")
    viewer.activate_communication(WaitingCamera.capture, "listen")
    topics = dict(image_topic=topic + "/image", meta_topic=topic + "/meta")
    burst = 60
    returned, mixed = [], []
    changed, burst_sent = threading.Condition(), threading.Event()

    def view():
        while not returned or returned[-1] < burst:  # until a flush call (below) came through
            image, meta = viewer.capture(None, **topics)
            if not np.all(image == meta["index"]):
                mixed.append(meta)
            with changed:
                returned.append(meta["index"])
                changed.notify_all()
            burst_sent.wait(30)  # fall behind: read nothing while the burst goes out

    viewing = threading.Thread(target=view, daemon=True)
    viewing.start()
    for index in range(burst):  # the first waits for the viewer's listeners
        camera.capture(index, **topics)
    burst_sent.set()
    index = burst
    with changed:  # flush calls until one gets through whole (the last image may have been dropped)
        while not changed.wait_for(lambda: returned and returned[-1] >= burst, 1.0):
            assert index < burst + 30, returned[-5:]
            camera.capture(index, **topics)
            index += 1
    viewing.join(10)
    assert not mixed
    assert returned == sorted(set(returned))
    heard = viewer.stats()["capture"]
    assert heard[topic + "/meta"]["incomplete"] > 0, "no image was dropped: nothing tested"
    assert heard[topic + "/image"]["missed"] > 0
