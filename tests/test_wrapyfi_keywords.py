"""Issue 20 A.1: every register keyword Wrapyfi's examples use is accepted with its meaning; any
other is a ConfigurationError with the closest names, raised when the class is defined."""

import logging

import numpy as np
import pytest

from wrapyfi_like.connect import keywords
from wrapyfi_like.connect.wrapper import MiddlewareCommunicator
from wrapyfi_like.exceptions import ConfigurationError
from wrapyfi_like.testing import inproc_middleware
from wrapyfi_like.utils.core_utils import Plugin, PluginRegistrar


def _define(*args, **kwargs):
    class Defined(MiddlewareCommunicator):
        @MiddlewareCommunicator.register(*args, **kwargs)
        def send(self, value=None):
            return value,

    return Defined


def test_a_misspelt_keyword_fails_at_class_definition_with_did_you_mean():
    with pytest.raises(ConfigurationError, match="unknown keyword 'backpresure'.*did you mean 'backpressure'"):
        _define("NativeObject", "inproc", "Typo", "/kw/typo", backpresure="drop")
    with pytest.raises(ConfigurationError, match="'wait_timout' in publisher_kwargs.*did you mean 'wait_timeout'"):
        _define("NativeObject", "inproc", "Typo", "/kw/typo", publisher_kwargs=dict(wait_timout=1))
    with pytest.raises(ConfigurationError, match="did you mean 'width'"):
        _define("Image", "inproc", "Typo", "/kw/typo", widht=4)


def test_a_keyword_of_the_other_side_says_where_it_belongs():
    with pytest.raises(ConfigurationError, match="'backpressure' in listener_kwargs.*give it in publisher_kwargs"):
        _define("NativeObject", "inproc", "Side", "/kw/side", listener_kwargs=dict(backpressure="drop"))
    with pytest.raises(ConfigurationError, match="must be a dict"):
        _define("NativeObject", "inproc", "Side", "/kw/side", publisher_kwargs=["drop"])


def test_a_data_type_keyword_on_another_data_type_is_unknown():
    with pytest.raises(ConfigurationError, match="unknown keyword 'chunk' for a NativeObject"):
        _define("NativeObject", "inproc", "Kind", "/kw/kind", chunk=100)


# Every keyword Wrapyfi 0.5.0's examples and communicators take for zeromq (measured from its examples/
# and its ZeroMQ publisher, listener, server and client signatures).
WRAPYFI_EXAMPLE_KWARGS = dict(
    carrier="", multi_threaded=True, persistent=True,
    socket_ip="127.0.0.1", socket_pub_port=5555, socket_sub_port=5556, socket_req_port=5558,
    socket_rep_port=5559, zeromq_kwargs={"SNDHWM": 5}, start_proxy_broker=False, proxy_broker_spawn="thread",
    pubsub_monitor_topic="ZEROMQ/CONNECTIONS", start_pubsub_monitor_broker=False,
    pubsub_monitor_listener_spawn="thread", serializer_kwargs={}, deserializer_kwargs={},
    load_torch_device="cpu", map_torch_devices={"cpu": "cpu"}, load_mxnet_device=None,
)


def test_wrapyfi_keywords_are_accepted_and_an_image_still_travels():
    camera = _define("Image", "inproc", "Camera", "/kw/camera", width=4, height=2, jpg=True, should_wait=False,
                     queue_size=10, publisher_kwargs={"class_name": "Camera", "out_topic": "/kw/camera"},
                     listener_kwargs={"class_name": "Viewer", "in_topic": "/kw/camera"}, **WRAPYFI_EXAMPLE_KWARGS)
    with inproc_middleware():
        viewer, sender = camera(), camera()
        viewer.activate_communication("send", "listen")
        sender.activate_communication("send", "publish")
        assert viewer.send() == [None]
        sender.send(np.full((2, 4, 3), 200, np.uint8))
        (frame,) = viewer.send()
        assert frame.shape == (2, 4, 3) and abs(int(frame.mean()) - 200) <= 2  # JPEG: near, not exact


def test_queue_size_is_the_queue_depth():
    counter = _define("NativeObject", "inproc", "Counter", "/kw/queue", should_wait=False, queue_size=2,
                      publisher_kwargs=dict(backpressure="drop"), **WRAPYFI_EXAMPLE_KWARGS)
    with inproc_middleware():
        viewer, sender = counter(), counter()
        viewer.activate_communication("send", "listen")
        sender.activate_communication("send", "publish")
        assert viewer.send() == [None]
        for value in range(5):
            sender.send(value)
        assert sender.stats()["send"]["/kw/queue"]["dropped"] == 3
        assert [viewer.send()[0] for _ in range(3)] == [0, 1, None]


def test_for_kind_drops_no_effect_keywords_applies_queue_size_and_keeps_plugin_settings():
    built = keywords.for_kind("publish", dict(socket_ip="1.2.3.4", zeromq_kwargs={}, multi_threaded=True,
                                              queue_size=7, request_timeout=3, load_torch_device="cpu",
                                              backpressure="drop"), "/t")
    assert built == {"queue_depth": 7, "load_torch_device": "cpu", "backpressure": "drop"}
    assert keywords.for_kind("publish", dict(queue_size=7, queue_depth=2), "/t") == {"queue_depth": 2}
    assert keywords.for_kind("request", dict(request_timeout=3, backpressure="drop"), "/t") == {"request_timeout": 3}


def test_unknown_carriers_use_tcp_with_one_warning_per_name(caplog, monkeypatch):
    monkeypatch.setattr(keywords, "_warned_carriers", set())  # once per process: start this test from none
    with caplog.at_level(logging.WARNING, "wrapyfi_like.connect"):
        assert keywords.carrier("tcp", "/t") == "tcp" and keywords.carrier("ipc", "/t") == "ipc"
        assert [keywords.carrier(name, "/t") for name in ("mcast", "", "mcast", "udp", "")] == ["tcp"] * 5
    warnings = [r.getMessage() for r in caplog.records if "carrier" in r.getMessage()]
    assert [w.split()[1] for w in warnings] == ["'mcast'", "''", "'udp'"]


def test_a_plugins_init_parameters_and_accepted_kwargs_are_keywords():
    class Marker:
        pass

    class Reading:
        pass

    @PluginRegistrar.register(types=(Marker,))
    class MarkerPlugin(Plugin):
        codec_id = "tests.keywords.Marker"

        def __init__(self, marker_scale: int = 1, **kwargs):
            self.scale = marker_scale

        def encode(self, obj, *args, **kwargs):
            return True, {"__wrapyfi__": ("tests.keywords.Marker", str(self.scale))}

        def decode(self, obj_type, obj_full, *args, **kwargs):
            return True, Marker()

    @PluginRegistrar.register(types=(Reading,))
    class ReadingPlugin(Plugin):  # reads its setting from **kwargs, so it declares it
        codec_id = "tests.keywords.Reading"
        accepted_kwargs = ("reading_unit",)

        def encode(self, obj, *args, **kwargs):
            return True, {"__wrapyfi__": ("tests.keywords.Reading", "")}

        def decode(self, obj_type, obj_full, *args, **kwargs):
            return True, Reading()

    _define("NativeObject", "inproc", "Plugged", "/kw/plugged", marker_scale=3,
            listener_kwargs=dict(reading_unit="K"))
    with pytest.raises(ConfigurationError, match="did you mean 'marker_scale'"):
        _define("NativeObject", "inproc", "Plugged", "/kw/plugged", marker_scal=3)
