"""Inline serializers: ``Annotated[T, Serializer(f), Deserializer(g)]`` anywhere in a return
annotation (or ``serializers={T: (f, g)}``) sends T values through f and g on that topic only,
with f's output encoded by the normal codec; a receiver without g gets a DecodeError that says
how to add it."""

import json
from typing import Annotated

import msgspec
import numpy as np
import pytest

from wrapyfi_like import Deserializer, Serializer
from wrapyfi_like.connect.formats import ValueFormat
from wrapyfi_like.connect.wrapper import MiddlewareCommunicator
from wrapyfi_like.encoding import Codec
from wrapyfi_like.exceptions import DecodeError
from wrapyfi_like.testing import inproc_middleware

pytestmark = pytest.mark.timeout(60)


class Rotation:
    """Stands for scipy's Rotation: an object no built-in encoder or plugin carries."""

    def __init__(self, quat):
        self.quat = np.asarray(quat, dtype=np.float64)

    def as_quat(self):
        return self.quat

    @classmethod
    def from_quat(cls, quat):
        return cls(quat)


Quat = Annotated[Rotation, Serializer(Rotation.as_quat), Deserializer(Rotation.from_quat)]


class Pose(msgspec.Struct):
    stamp: float
    rot: Quat


class Robot(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Robot", "$topic", should_wait="$wait")
    def joints(self, value, topic, wait=False) -> tuple[dict[str, list[Quat]]]:
        return value,

    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Robot", "$topic", should_wait="$wait")
    def pose(self, value, topic, wait=False) -> Pose:
        return value,


@pytest.fixture(autouse=True)
def in_memory():
    with inproc_middleware() as bus:
        yield bus
    MiddlewareCommunicator.close_all_instances()


def test_an_annotated_serializer_deep_in_the_return_annotation_applies(topic):
    robot, viewer = Robot(), Robot()
    robot.activate_communication(Robot.joints, mode="publish")
    viewer.activate_communication(Robot.joints, mode="listen")
    assert viewer.joints(None, topic) == [None]
    robot.joints({"arm": [Rotation([0, 0, 0, 1]), Rotation([1, 0, 0, 0])]}, topic)
    ((received,),) = [viewer.joints(None, topic, wait=True)]
    assert [type(r) for r in received["arm"]] == [Rotation, Rotation]
    np.testing.assert_array_equal(received["arm"][1].quat, [1, 0, 0, 0])


def test_an_annotated_serializer_in_a_model_field_applies(topic):
    robot, viewer = Robot(), Robot()
    robot.activate_communication(Robot.pose, mode="publish")
    viewer.activate_communication(Robot.pose, mode="listen")
    assert viewer.pose(None, topic) == [None]
    robot.pose(Pose(2.0, Rotation([0, 1, 0, 0])), topic)
    (pose,) = viewer.pose(None, topic, wait=True)
    assert type(pose) is Pose and type(pose.rot) is Rotation
    np.testing.assert_array_equal(pose.rot.quat, [0, 1, 0, 0])


def test_the_serializers_output_is_encoded_by_the_codec_so_arrays_stay_buffers():
    table = {Rotation: (Rotation.as_quat, Rotation.from_quat)}
    frames = ValueFormat(serializers=table).encode({"r": Rotation(np.arange(4.0))})
    assert len(frames) == 2 and bytes(frames[1]) == np.arange(4.0).tobytes()  # the quaternion is buffer 0
    (body,) = ValueFormat(serializers=table, serializer="json").encode({"r": Rotation(np.arange(4.0))})
    marker = json.loads(body)["value"]["r"]["__wrapyfi__"]
    assert marker[:2] == ["plugin", "inline:test_serializers_inline.Rotation"] and set(marker[2]) == {
        "data_b64", "shape", "dtype"}
    for frames in (ValueFormat(serializers=table).encode(Rotation([1, 2, 3, 4])), [body]):
        received = ValueFormat(serializers=table).decode(frames)
        assert type(received) in (Rotation, dict)


def test_a_receiver_without_the_deserializer_is_told_which_type_and_how_to_add_it():
    frames = ValueFormat(serializers={Rotation: (Rotation.as_quat, Rotation.from_quat)}).encode(Rotation([0, 0, 0, 1]))
    with pytest.raises(DecodeError, match=r"inline:test_serializers_inline\.Rotation.*Annotated.*serializers="):
        Codec().decode(frames)


def test_inline_serializers_are_per_topic_and_come_before_built_in_encoders():
    """``Annotated[np.ndarray, ...]`` changes how arrays travel on that topic only."""
    halves = {np.ndarray: (lambda a: a.astype(np.float16), lambda a: a.astype(np.float32))}
    sent = np.arange(3, dtype=np.float32)
    for serializer in ("binary", "json"):
        on_topic = ValueFormat(serializers=halves, serializer=serializer)
        received = on_topic.decode(on_topic.encode(sent))
        assert received.dtype == np.float32
        np.testing.assert_array_equal(received, sent)
    on_topic = ValueFormat(serializers=halves)
    assert bytes(on_topic.encode(sent)[1]) == sent.astype(np.float16).tobytes()
    assert ValueFormat().decode(ValueFormat().encode(sent)).dtype == np.float32  # other topics unchanged
