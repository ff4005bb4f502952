"""Typed messages: a model annotation (or ``message_type=``) makes listeners return validated
instances, publishers check values before sending, servers check request arguments; invalid
messages are skipped, logged with the field path and counted as malformed."""

import dataclasses
import logging
import re
import subprocess
import sys
import typing

import msgspec
import numpy as np
import pydantic
import pytest

from wrapyfi_like.connect.formats import ValueFormat
from wrapyfi_like.connect.wrapper import MiddlewareCommunicator
from wrapyfi_like.exceptions import ConfigurationError, DecodeError, RemoteError, ValidationError
from wrapyfi_like.testing import inproc_middleware

pytestmark = pytest.mark.timeout(60)


class Pose(msgspec.Struct):
    stamp: float
    xyz: tuple[float, float, float]
    depth: np.ndarray


class PosePD(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
    stamp: float
    xyz: tuple[float, float, float]
    depth: np.ndarray


@dataclasses.dataclass
class PoseDC:
    stamp: float
    xyz: tuple[float, float, float]
    depth: np.ndarray


class PoseTD(typing.TypedDict):
    stamp: float
    xyz: tuple[float, float, float]
    depth: np.ndarray


class PoseNT(typing.NamedTuple):
    stamp: float
    xyz: tuple[float, float, float]
    depth: np.ndarray


MODELS = [Pose, PosePD, PoseDC, PoseTD, PoseNT]


def make(model, stamp=1.5):
    fields = dict(stamp=stamp, xyz=(1.0, 2.0, 3.0), depth=np.arange(6, dtype=np.float32).reshape(2, 3))
    return fields if model is PoseTD else model(**fields)


def field(value, name):
    return value[name] if isinstance(value, dict) else getattr(value, name)


@pytest.fixture(autouse=True)
def in_memory():
    with inproc_middleware() as bus:
        yield bus
    MiddlewareCommunicator.close_all_instances()


@pytest.mark.parametrize("serializer", ["binary", "json"])
@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_kind_of_model_round_trips_as_a_validated_instance(model, serializer):
    sender = ValueFormat(message_type=model, serializer=serializer)
    receiver = ValueFormat(message_type=model)
    frames = sender.encode(make(model))
    received = receiver.decode([bytes(memoryview(frame).cast("B")) for frame in frames])
    assert type(received) is (dict if model is PoseTD else model)
    assert field(received, "xyz") == (1.0, 2.0, 3.0) and type(field(received, "xyz")) is tuple
    np.testing.assert_array_equal(field(received, "depth"), make(model)["depth"] if model is PoseTD
                                  else make(model).depth)
    if serializer == "binary":  # the array is a buffer of its own, not in the header
        assert len(frames) == 2 and len(frames[0]) < 200


@pytest.mark.parametrize("model", [Pose, PosePD, PoseDC, PoseTD], ids=lambda m: m.__name__)
def test_the_wire_is_a_plain_map_that_an_untyped_listener_gets_as_a_dict(model):
    received = ValueFormat().decode(ValueFormat(message_type=model).encode(make(model)))
    assert type(received) is dict and set(received) == {"stamp", "xyz", "depth"}
    assert type(received["depth"]) is np.ndarray


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_a_wrong_value_raises_at_the_call_site_with_the_field_path(model):
    """Models that do not check their fields when built (msgspec, dataclasses …), pydantic's
    unchecked ``model_construct``, and plain dicts are all checked before sending."""
    if model is PosePD:
        wrong = PosePD.model_construct(**make(PoseTD, stamp="not a float"))
    else:
        wrong = make(model, stamp="not a float")
    path = r"\$\[0\]" if model is PoseNT else r"\$\.stamp"  # a NamedTuple travels as its tuple
    for value in (wrong, make(PoseTD, stamp="not a float")):
        with pytest.raises(ValidationError, match=path if value is wrong else "PoseNT|stamp"):
            ValueFormat(message_type=model).encode(value)


class Camera(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Camera", "$topic", should_wait="$wait")
    def pose(self, value, topic, wait=False) -> tuple[Pose]:
        return value,

    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Camera", "$topic", should_wait="$wait",
                                     listener_kwargs=dict(on_invalid="raise"))
    def strict_pose(self, value, topic, wait=False) -> Pose:
        return value,

    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Camera", "$topic", should_wait="$wait")
    def untyped(self, value, topic, wait=False) -> tuple[dict]:
        return value,


def test_a_listener_returns_a_pose_and_skips_counts_and_logs_an_invalid_message(topic, caplog):
    camera, viewer, raw = Camera(), Camera(), Camera()
    camera.activate_communication(Camera.pose, mode="publish")
    viewer.activate_communication(Camera.pose, mode="listen")
    raw.activate_communication(Camera.untyped, mode="publish")
    assert viewer.pose(None, topic) == [None]  # builds the listener
    raw.untyped({"stamp": "late", "xyz": [1, 2, 3], "depth": np.zeros(1)}, topic)  # an untyped peer's bad map
    camera.pose(make(Pose, 7.0), topic)
    with caplog.at_level(logging.WARNING, logger="wrapyfi_like"):
        (pose,) = viewer.pose(None, topic, wait=True)
    assert type(pose) is Pose and pose.stamp == 7.0
    assert viewer.stats()["pose"][topic]["malformed"] == 1
    assert "$.stamp" in caplog.text and "Pose" in caplog.text


def test_on_invalid_raise_hands_the_error_to_the_caller(topic):
    viewer, raw = Camera(), Camera()
    viewer.activate_communication(Camera.strict_pose, mode="listen")
    raw.activate_communication(Camera.untyped, mode="publish")
    assert viewer.strict_pose(None, topic) == [None]
    raw.untyped({"stamp": 1.0, "xyz": [1, 2], "depth": np.zeros(1)}, topic)
    with pytest.raises(ValidationError, match=r"\$\.xyz"):
        viewer.strict_pose(None, topic, wait=True)
    assert viewer.stats()["strict_pose"][topic]["malformed"] == 1


def test_plain_annotations_change_nothing(topic):
    camera, viewer = Camera(), Camera()
    camera.activate_communication(Camera.untyped, mode="publish")
    viewer.activate_communication(Camera.untyped, mode="listen")
    assert viewer.untyped(None, topic) == [None]
    camera.untyped({"any": ("shape",)}, topic)
    assert viewer.untyped(None, topic, wait=True) == [{"any": ("shape",)}]


class Planner(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Planner", "$topic", message_type=Pose)
    def plan(self, goal: Pose, topic, speed: float = 1.0):
        return Pose(goal.stamp + speed, goal.xyz, goal.depth * 2),


def test_a_server_validates_the_arguments_and_the_client_gets_the_path(topic, in_thread):
    server, client = Planner(), Planner()
    server.activate_communication(Planner.plan, mode="reply")
    client.activate_communication(Planner.plan, mode="request")
    served = in_thread(lambda: server.plan(None, topic))  # skips the invalid request, serves the next
    bad = {"stamp": 1.0, "xyz": (1.0, "two", 3.0), "depth": np.zeros(2)}
    with pytest.raises(RemoteError, match=r"goal.*\$\.xyz\[1\]"):
        client.plan(bad, topic)
    (reply,) = client.plan({"stamp": 1.0, "xyz": (1.0, 2.0, 3.0), "depth": np.ones(2)}, topic, speed=0.5)
    assert type(reply) is Pose and reply.stamp == 1.5
    np.testing.assert_array_equal(reply.depth, [2.0, 2.0])
    served.result(timeout=30)


def test_a_model_without_its_engine_raises_configuration_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "msgspec", None)  # as if not installed
    with pytest.raises(ConfigurationError, match=r"-e '\.\[typed\]'"):
        ValueFormat(message_type=PoseDC)


def test_invalid_received_message_is_a_decode_error_for_listeners():
    with pytest.raises(DecodeError, match=r"\$\.depth"):
        ValueFormat(message_type=Pose).decode(ValueFormat().encode({"stamp": 1.0, "xyz": (1, 2, 3), "depth": [1]}))


def test_import_wrapyfi_like_imports_no_engine_and_no_orjson():
    code = "import sys, wrapyfi_like; print(sorted(m for m in ('msgspec', 'pydantic', 'orjson') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)
    assert out.stdout.strip() == "[]"


def test_annotations_that_cannot_be_evaluated_type_nothing_and_are_logged_once(caplog):
    from wrapyfi_like.annotations import return_hint

    def method(self) -> "NotImportedHere":  # noqa: F821  (a TYPE_CHECKING-only import)
        return None,

    with caplog.at_level(logging.WARNING, logger="wrapyfi_like"):
        assert return_hint(method, 0, 1) is None
        assert return_hint(method, 0, 1) is None
    assert caplog.text.count("cannot be evaluated") == 1


def test_a_tensor_inside_a_model_stays_a_buffer_of_its_own():
    torch = pytest.importorskip("torch")

    class Scan(msgspec.Struct):
        ranges: torch.Tensor

    fmt = ValueFormat(message_type=Scan)
    tensor = torch.arange(256, dtype=torch.float32)
    frames = fmt.encode(Scan(tensor))
    assert len(frames) == 2 and bytes(frames[1]) == tensor.numpy().tobytes() and len(frames[0]) < 200
    received = fmt.decode(frames)
    assert type(received) is Scan and torch.equal(received.ranges, tensor)


class Point(typing.NamedTuple):
    x: float
    y: float


class Points(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Points", "$topic", should_wait=True,
                                     serializer="$serializer")
    def point(self, x, topic, serializer="binary") -> Point:
        return Point(x, 2.0 * x),


@pytest.mark.parametrize("serializer", ["binary", "json"])
def test_a_named_tuple_comes_back_as_itself_in_listen_mode(topic, serializer, in_thread):
    source, viewer = Points(), Points()
    source.activate_communication(Points.point, mode="publish")
    viewer.activate_communication(Points.point, mode="listen")
    sent = in_thread(lambda: source.point(1.5, topic, serializer))
    (point,) = viewer.point(None, topic, serializer)
    sent.result(timeout=30)
    assert type(point) is Point and point == (1.5, 3.0)


@pytest.mark.parametrize("serializer", ["binary", "json"])
def test_a_named_tuple_comes_back_as_itself_in_request_mode(topic, serializer, in_thread):
    server, client = Points(), Points()
    server.activate_communication(Points.point, mode="reply")
    client.activate_communication(Points.point, mode="request")
    served = in_thread(lambda: server.point(None, topic, serializer))
    (point,) = client.point(2.5, topic, serializer)
    served.result(timeout=30)
    assert type(point) is Point and point == (2.5, 5.0)


def test_models_are_told_apart_while_another_thread_is_importing_their_engine(monkeypatch):
    """A publisher and a listener built at once: one imports msgspec while the other asks
    whether a hint is a Struct, and must not see a half-imported module's missing class."""
    import types

    from wrapyfi_like import annotations

    monkeypatch.setitem(sys.modules, "msgspec", types.ModuleType("msgspec"))  # half-imported: no Struct yet
    monkeypatch.setitem(sys.modules, "pydantic", types.ModuleType("pydantic"))
    assert annotations.is_model(Point) and not annotations.is_model(int) and not annotations.is_pydantic(Point)


class Navigator(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Navigator", "$topic", should_wait=True)
    def goto(self, goal: Pose, via: Point, topic) -> tuple[Pose]:
        return Pose(goal.stamp + via.x, goal.xyz, goal.depth),


def test_a_client_passes_model_instances_as_arguments_and_the_server_gets_them_validated(topic, in_thread):
    server, client = Navigator(), Navigator()
    server.activate_communication(Navigator.goto, mode="reply")
    client.activate_communication(Navigator.goto, mode="request")
    served = in_thread(lambda: server.goto(None, None, topic))
    (reply,) = client.goto(make(Pose, 1.0), Point(0.5, 0.0), topic)
    served.result(timeout=30)
    assert type(reply) is Pose and reply.stamp == 1.5


@dataclasses.dataclass
class Checked:
    """A ``__post_init__`` is part of the model's check: it runs on the publisher's value too."""
    stamp: float

    def __post_init__(self):
        if self.stamp < 0:
            raise ValueError("stamp must not be negative")


@dataclasses.dataclass
class Labelled:
    stamp: float
    label: str = dataclasses.field(init=False, default="")


@dataclasses.dataclass(slots=True)
class Slotted:
    stamp: float
    xyz: tuple[float, float, float]


class Partial(typing.TypedDict, total=False):
    stamp: typing.Required[float]
    note: str


class Stamped(typing.TypedDict):
    stamp: float
    count: int


@pytest.mark.parametrize("value", [Checked(1.0), Checked.__new__(Checked)], ids=["valid", "post_init_refuses"])
def test_a_dataclass_post_init_is_part_of_the_check_before_sending(value):
    if not hasattr(value, "stamp"):
        value.stamp = -1.0  # built without __init__: only the check before sending can see it
        with pytest.raises(ValidationError, match="must not be negative"):
            ValueFormat(message_type=Checked).encode(value)
    else:
        assert ValueFormat().decode(ValueFormat(message_type=Checked).encode(value)) == {"stamp": 1.0}


def test_an_instance_sends_exactly_its_fields_whatever_else_it_holds():
    labelled, slotted = Labelled(1.0), Slotted(2.0, (1.0, 2.0, 3.0))
    labelled.cache = object()  # an attribute that is no field, in the instance dict
    assert ValueFormat().decode(ValueFormat(message_type=Labelled).encode(labelled)) == {"stamp": 1.0, "label": ""}
    assert ValueFormat().decode(ValueFormat(message_type=Slotted).encode(slotted)) == {
        "stamp": 2.0, "xyz": (1.0, 2.0, 3.0)}
    with pytest.raises(ValidationError, match=r"\$\.xyz"):
        ValueFormat(message_type=Slotted).encode(Slotted(2.0, (1.0, "y", 3.0)))


@pytest.mark.parametrize("model", [Stamped, Partial, PoseDC, Slotted], ids=lambda m: m.__name__)
def test_a_received_value_is_what_msgspec_makes_of_it_for_the_model(model):
    """Some models are checked through a Struct with their fields (faster): the verdicts and the
    values received are the engine's own for the model, invalid trees included."""
    trees = [{"stamp": 1, "count": 2, "extra": "dropped"}, {"stamp": 1.5, "count": True}, {"stamp": "x"},
             {"count": 1}, {"stamp": 1.0, "note": "n"}, {"stamp": 1.0, "note": 3}, [1.0],
             {"stamp": 1.0, "xyz": [1, 2, 3], "depth": np.zeros(2)}, {"stamp": 1.0, "xyz": (1.0, 2.0)}]
    receiver, sender = ValueFormat(message_type=model), ValueFormat(message_type=model)
    for tree in trees:
        try:
            expected = msgspec.convert(tree, model)
        except msgspec.ValidationError as error:
            message = str(error).replace("`", r"\`").replace("$", r"\$").replace(".", r"\.")
            with pytest.raises(DecodeError, match=message.replace("[", r"\[").replace("]", r"\]")):
                receiver.decode(ValueFormat().encode(tree))
            with pytest.raises(ValidationError):
                sender.encode(tree)
            continue
        received = receiver.decode(ValueFormat().encode(tree))
        assert type(received) is type(expected) and _builtins(received) == _builtins(expected)


def _builtins(value):
    return repr(msgspec.to_builtins(value, builtin_types=(np.ndarray,)))
