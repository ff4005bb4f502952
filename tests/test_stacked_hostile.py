"""A stacked method's listener keeps returning whole calls whatever else arrives on its topics:
a part whose partner never comes (a stray single-decorator message, a publisher that died
between two parts) is discarded and counted, never read around forever; a part forged under an
honest publisher's call group is refused, never paired, and costs no honest call.

Over ZeroMQ on 127.0.0.1; the publisher that dies mid-call is a process of its own.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from node_processes import Node, event_is
from wrapyfi_like.connect import groups
from wrapyfi_like.connect.groups import MAX_HELD, MAX_ORIGINS, MAX_OVERTAKEN, OWNER_IDLE, Aligner
from wrapyfi_like.connect.publishers import Publisher
from wrapyfi_like.connect.wrapper import MiddlewareCommunicator
from wrapyfi_like.middlewares.envelope import Group, new_publisher_id

pytestmark = pytest.mark.timeout(60)


class Camera(MiddlewareCommunicator):
    """A frame and its metadata; ``wait``: should_wait (True for the cameras, so that their
    first call waits for the viewer's listeners)."""

    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Camera", "$image_topic", should_wait="$wait",
                                     publisher_kwargs=dict(wait_timeout=10, queue_depth=4),
                                     listener_kwargs=dict(queue_depth=4))
    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Camera", "$meta_topic", should_wait="$wait",
                                     publisher_kwargs=dict(wait_timeout=10, queue_depth=4),
                                     listener_kwargs=dict(queue_depth=4))
    def capture(self, index, image_topic, meta_topic, wait=False):
        return np.full(16, index, np.int64), {"index": index}


class StackedNode(Node):
    script = Path(__file__).with_name("stacked_nodes.py")


@pytest.fixture(autouse=True)
def close_everything():
    yield
    MiddlewareCommunicator.close_all_instances()


@pytest.fixture
def other_publisher():
    """A plain publisher of another program (closed after the test)."""
    made = []

    def make(name, topic):
        made.append(Publisher(name, topic, should_wait=True, wait_timeout=10))
        return made[-1]

    yield make
    for publisher in made:
        publisher.close()


@pytest.fixture
def topics(topic):
    return dict(image_topic=topic + "/image", meta_topic=topic + "/meta")


def start(topics, wait=False):
    """A viewer (listening with should_wait=``wait``) and a camera."""
    viewer, camera = Camera(), Camera()
    viewer.activate_communication(Camera.capture, "listen")
    camera.activate_communication(Camera.capture, "publish")
    if not wait:
        assert viewer.capture(None, **topics) == [None, None]  # builds the listeners
    return viewer, camera


def counts(viewer, topics, name):
    stats = viewer.stats()["capture"]
    return [stats[topics["image_topic"]][name], stats[topics["meta_topic"]][name]]


def listen_until(viewer, topics, condition, timeout=10.0):
    """Non-waiting listens until ``condition()`` holds; every call returned, in order."""
    returned, deadline = [], time.monotonic() + timeout
    while not condition(returned):
        assert time.monotonic() < deadline, (returned[-5:], viewer.stats()["capture"])
        image, meta = viewer.capture(None, **topics)
        if meta is not None:
            assert np.all(image == meta["index"]), (image[:1], meta)
            returned.append(meta["index"])
    return returned


def publish_and_listen(viewer, camera, topics, calls):
    """Publish ``calls`` (indexes) and listen until the last came: every call returned."""
    for index in calls:
        camera.capture(index, wait=True, **topics)
    return listen_until(viewer, topics, lambda got: got and got[-1] == calls[-1])


def test_a_stray_single_part_on_one_topic_does_not_stall_the_stacked_listener(topics, other_publisher):
    """One message without a call group on the image topic (another program's single-decorator
    publisher) used to make the viewer read only the metadata topic from then on."""
    viewer, camera = start(topics)
    assert publish_and_listen(viewer, camera, topics, [1, 2]) == [1, 2]
    other_publisher("Stray", topics["image_topic"]).publish(np.full(16, -1, np.int64))
    listen_until(viewer, topics, lambda _: counts(viewer, topics, "received")[0] == 3)  # the stray is held
    calls = list(range(3, 3 + MAX_OVERTAKEN + 4))
    assert publish_and_listen(viewer, camera, topics, calls) == calls
    assert counts(viewer, topics, "incomplete") == [1, 0]  # the stray, once MAX_OVERTAKEN calls overtook it


def test_a_stray_part_does_not_deadlock_blocking_listeners_and_a_blocking_publisher(topics, in_thread,
                                                                                   other_publisher):
    """should_wait=True on both sides, queues of 4: reading only the metadata topic would leave
    the image queue full, the camera blocked on it, and the viewer waiting for metadata."""
    viewer, camera = start(topics, wait=True)
    calls = 40
    watching = in_thread(lambda: [viewer.capture(None, wait=True, **topics)[1]["index"] for _ in range(calls)])
    camera.capture(0, wait=True, **topics)  # waits for the viewer's listeners
    other_publisher("Stray", topics["image_topic"]).publish(np.full(16, -1, np.int64))
    for index in range(1, calls):
        camera.capture(index, wait=True, **topics)
    returned = watching.result(timeout=30)
    assert returned == list(range(calls))
    assert counts(viewer, topics, "incomplete") == [1, 0]


def test_a_publisher_killed_between_the_parts_of_a_call_does_not_stall_the_listener(topics):
    """The camera process publishes 3 whole calls and the image of a 4th, and is killed; a new
    camera (a new call group origin) then publishes, and every one of its calls comes through."""
    viewer = Camera()
    viewer.activate_communication(Camera.capture, "listen")
    assert viewer.capture(None, **topics) == [None, None]
    node = StackedNode("dies-mid-call", topics["image_topic"], topics["meta_topic"], "3")
    try:
        node.wait_for(event_is("half-sent"), timeout=30)
        assert listen_until(viewer, topics, lambda _: counts(viewer, topics, "received")[0] == 4) == [1, 2, 3]
    finally:
        node.kill()
    camera = Camera()
    camera.activate_communication(Camera.capture, "publish")
    calls = list(range(10, 10 + MAX_OVERTAKEN + 4))
    assert publish_and_listen(viewer, camera, topics, calls) == calls
    assert counts(viewer, topics, "incomplete") == [1, 0]  # the orphaned image of call 4


@pytest.mark.parametrize("ahead", [2**63, 40, 1])
def test_a_part_forged_under_an_honest_call_group_is_refused_and_costs_no_honest_call(topics, ahead,
                                                                                      other_publisher):
    """Anyone who listens to the image topic learns the camera's call group origin. A metadata
    part sent under it from another publisher, with a call number far ahead (which used to make
    the viewer discard every honest call after it), or a little ahead (which used to discard the
    calls in between and pair the honest image with the forged metadata), is refused."""
    viewer, camera = start(topics)
    assert publish_and_listen(viewer, camera, topics, [1, 2, 3]) == [1, 2, 3]
    origin = camera._wrapyfi_like_bindings[Camera.capture.__qualname__]._state["groups"].origin
    other_publisher("Forger", topics["meta_topic"]).publish({"index": "FORGED"}, Group(origin, min(3 + ahead, 2**64 - 1)))
    returned, index = [], 3
    while len(returned) < 50 or counts(viewer, topics, "malformed")[1] == 0:  # until the forgery was read
        assert index < 3 + 100, (returned[-5:], viewer.stats()["capture"])
        index += 1
        returned += publish_and_listen(viewer, camera, topics, [index])
    assert returned == list(range(4, index + 1))
    assert counts(viewer, topics, "malformed") == [0, 1]
    assert counts(viewer, topics, "incomplete") == [0, 0]


# -- the rules behind it, on an aligner of two stand-in listeners ----------------------------------

class Parts:
    """A stand-in listener giving ``(value, group, publisher)`` parts queued by the test."""

    def __init__(self, topic):
        self.queued, self.in_topic, self.incomplete, self.malformed = [], topic, 0, 0

    def listen_part(self):
        return self.queued.pop(0) if self.queued else None


@pytest.fixture
def aligned(monkeypatch):
    """An aligner over two stand-in listeners (image, meta), on a clock the test moves."""
    now = [1000.0]
    monkeypatch.setattr(groups, "_clock", lambda: now[0])
    image, meta = Parts("/image"), Parts("/meta")
    return Aligner([image, meta]), image, meta, now


HONEST_IMAGE, HONEST_META, FORGER = b"I" * 8, b"M" * 8, b"F" * 8


def honest_call(image, meta, origin, call):
    image.queued.append((f"image {call}", Group(origin, call), HONEST_IMAGE))
    meta.queued.append((f"meta {call}", Group(origin, call), HONEST_META))


def test_an_origin_claimed_first_by_another_publisher_returns_to_its_publisher_once_the_claimer_is_quiet(aligned):
    """The limit of binding an origin to the publisher first heard with it: a peer whose part
    under an origin reaches a listener before any of its publisher's (a listener that starts
    after the peer learnt the origin) owns it there. The publisher's parts on that listener are
    refused until the claimer has sent nothing under the origin for OWNER_IDLE seconds."""
    aligner, image, meta, now = aligned
    origin = new_publisher_id()
    image.queued.append(("image 1", Group(origin, 1), HONEST_IMAGE))
    meta.queued.append(("FORGED", Group(origin, 1), FORGER))
    assert aligner.read() == ["image 1", "FORGED"]  # the claimer's part, as any publisher's
    honest_call(image, meta, origin, 2)
    assert aligner.read() is None
    assert meta.malformed == 1  # the honest metadata of call 2, refused while the claimer owns the origin
    now[0] += OWNER_IDLE
    for call in (3, 4):
        honest_call(image, meta, origin, call)
        assert aligner.read() == [f"image {call}", f"meta {call}"]
    assert meta.malformed == 1
    assert image.incomplete == 1  # image 2, whose metadata was refused


def test_invented_origins_cannot_push_out_an_active_publishers_origin(aligned):
    """MAX_ORIGINS made-up origins between two calls, then a part forged under the honest
    origin: the honest origin is still owned by its publisher, so the forgery is refused."""
    aligner, image, meta, now = aligned
    origin = new_publisher_id()
    honest_call(image, meta, origin, 1)
    assert aligner.read() == ["image 1", "meta 1"]
    now[0] += OWNER_IDLE / 2
    meta.queued += [("junk", Group(new_publisher_id(), 1), FORGER) for _ in range(MAX_ORIGINS)]
    meta.queued.append(("FORGED", Group(origin, 2), FORGER))
    honest_call(image, meta, origin, 2)
    assert aligner.read() == ["image 2", "meta 2"]
    assert meta.malformed == 1


def test_a_forgery_under_the_owners_own_publisher_id_costs_at_most_max_held_calls(aligned):
    """A peer that copies the publisher id too is not told apart here (a ZeroMQ listener refuses
    it, binding each publisher id to the connection that used it first; other engines do not):
    its part with a call far ahead makes the other listener's parts of that origin dead while
    it is held, at most MAX_PASSED (= MAX_HELD) calls."""
    aligner, image, meta, now = aligned
    origin = new_publisher_id()
    meta.queued.append(("FORGED", Group(origin, 2**63), HONEST_META))
    returned = []
    for call in range(1, 2 * MAX_HELD + 10):
        honest_call(image, meta, origin, call)
        values = aligner.read()
        if values is not None:
            assert values == [f"image {call}", f"meta {call}"]
            returned.append(call)
    assert returned and returned[0] <= MAX_HELD + 2 and returned == list(range(returned[0], 2 * MAX_HELD + 10))


def test_a_part_shown_dead_by_a_part_that_dies_in_the_same_pass_is_discarded_without_error(monkeypatch):
    """Three topics: the first holds calls 3 and 5, the second call 3, the third none; then the
    third gets call 7. Calls 3 and 5 of the first die, and the second's call 3, for which the
    first's call 5 (gone by then) is found first, dies too."""
    monkeypatch.setattr(groups, "_clock", lambda: 1000.0)
    first, second, third = Parts("/a"), Parts("/b"), Parts("/c")
    aligner = Aligner([first, second, third])
    origin = new_publisher_id()
    first.queued += [("a 3", Group(origin, 3), b"A" * 8), ("a 5", Group(origin, 5), b"A" * 8)]
    second.queued.append(("b 3", Group(origin, 3), b"B" * 8))
    third.queued += [None, None, ("c 7", Group(origin, 7), b"C" * 8)]
    assert aligner.read() is None  # a 3, b 3 held; the third has nothing yet
    assert aligner.read() is None  # a 5 held too; the third still has nothing
    assert aligner.read() is None  # c 7: every other part is dead
    assert (first.incomplete, second.incomplete, third.incomplete) == (2, 1, 0)


@pytest.mark.parametrize("apart", [MAX_OVERTAKEN - 1, MAX_OVERTAKEN])
def test_two_publishers_parts_in_a_different_order_on_two_topics_pair_up_to_the_limit(aligned, apart):
    """Camera P's metadata comes before camera Q's next calls, its image after them: P's call
    still pairs when fewer than MAX_OVERTAKEN of Q's calls completed in between, and is
    discarded (counted) when that many did."""
    aligner, image, meta, now = aligned
    p, q = new_publisher_id(), new_publisher_id()
    meta.queued.append(("meta P1", Group(p, 1), b"p" * 8))
    for call in range(1, apart + 1):
        image.queued.append((f"image Q{call}", Group(q, call), b"Q" * 8))
        meta.queued.append((f"meta Q{call}", Group(q, call), b"q" * 8))
    image.queued.append(("image P1", Group(p, 1), b"P" * 8))
    returned = list(iter(aligner.read, None))  # every call it returns until one finds nothing
    expected = [[f"image Q{call}", f"meta Q{call}"] for call in range(1, apart + 1)]
    if apart < MAX_OVERTAKEN:
        assert returned == expected + [["image P1", "meta P1"]]
        assert meta.incomplete == 0
    else:
        assert returned == expected
        assert meta.incomplete == 1  # P's metadata, after MAX_OVERTAKEN of Q's calls completed past it


def test_two_publishers_parts_pair_whichever_topic_carries_the_earlier_part(aligned):
    """As above with P's image first: the metadata topic, which can complete P's call, is read
    ahead, and P's call pairs too (no later than the other way round), each publisher's calls
    in order."""
    aligner, image, meta, now = aligned
    p, q = new_publisher_id(), new_publisher_id()
    image.queued.append(("image P1", Group(p, 1), b"P" * 8))
    for call in range(1, MAX_OVERTAKEN):
        image.queued.append((f"image Q{call}", Group(q, call), b"Q" * 8))
        meta.queued.append((f"meta Q{call}", Group(q, call), b"q" * 8))
    meta.queued.append(("meta P1", Group(p, 1), b"p" * 8))
    returned = list(iter(aligner.read, None))  # every call it returns until one finds nothing
    qs = [[f"image Q{call}", f"meta Q{call}"] for call in range(1, MAX_OVERTAKEN)]
    assert [values for values in returned if values[0] != "image P1"] == qs
    assert ["image P1", "meta P1"] in returned
    assert image.incomplete == meta.incomplete == 0


class Blocked(Exception):
    """What a stand-in waiting listener raises where a real one would wait for ever."""


class Waiting(Parts):
    """A stand-in ``should_wait=True`` listener: reading it with nothing queued would block."""

    def listen_part(self):
        if not self.queued:
            raise Blocked(self.in_topic)
        return super().listen_part()


def test_waiting_listeners_read_the_one_whose_next_part_completes_a_call_not_the_one_lacking_an_orphan(monkeypatch):
    """Publisher B died between its two parts: the metadata of its call 3 is queued before the
    metadata of A's call 5, whose image is the last image to come. The image listener lacks only
    B's orphan, the metadata listener lacks A's image: reading the image listener (the fewest
    held, lowest index) would wait for ever with A's call 5 complete in the queues."""
    monkeypatch.setattr(groups, "_clock", lambda: 1000.0)
    image, meta = Waiting("/image"), Waiting("/meta")
    a, b = new_publisher_id(), new_publisher_id()
    image.queued.append(("image A5", Group(a, 5), b"I" * 8))
    meta.queued += [("meta B3", Group(b, 3), b"B" * 8), ("meta A5", Group(a, 5), b"M" * 8)]
    aligner = Aligner([image, meta])
    assert aligner.read() == ["image A5", "meta A5"]
    assert not image.queued and not meta.queued


def test_strays_among_every_few_calls_cost_no_honest_call_when_a_listen_finds_one_topic_drained(aligned):
    """A stray on the image topic every 4 calls: the metadata topic is read ahead and runs out
    first, and a non-waiting listen then reads the image topic, which still has the parts that
    complete the last calls: all 40 come back, and only strays are discarded."""
    aligner, image, meta, now = aligned
    honest, stray = new_publisher_id(), new_publisher_id()
    for call in range(1, 41):
        if call % 4 == 0:
            image.queued.append((-call, Group(stray, call), b"S" * 8))
        image.queued.append((call, Group(honest, call), b"I" * 8))
        meta.queued.append((call, Group(honest, call), b"M" * 8))
    returned = list(iter(aligner.read, None))
    assert all(image_part == meta_part for image_part, meta_part in returned)
    assert [image_part for image_part, _ in returned] == list(range(1, 41))
    assert meta.incomplete == 0 and image.incomplete + len(aligner._held[0]) == 10  # strays only


def test_three_waiting_listeners_read_the_one_whose_next_part_completes_a_call(monkeypatch):
    """The same with three topics: image and depth hold A's call 5, the metadata topic holds
    B's orphan and has A's call 5 queued behind it; each listener holds one part."""
    monkeypatch.setattr(groups, "_clock", lambda: 1000.0)
    image, depth, meta = Waiting("/image"), Waiting("/depth"), Waiting("/meta")
    a, b = new_publisher_id(), new_publisher_id()
    image.queued.append(("image A5", Group(a, 5), b"I" * 8))
    depth.queued.append(("depth A5", Group(a, 5), b"D" * 8))
    meta.queued += [("meta B3", Group(b, 3), b"B" * 8), ("meta A5", Group(a, 5), b"M" * 8)]
    aligner = Aligner([image, depth, meta])
    assert aligner.read() == ["image A5", "depth A5", "meta A5"]
