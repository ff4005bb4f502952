"""Issue 20 A.2, A.5, A.6: Wrapyfi's names and behaviours that its example scripts rely on."""

import logging
import subprocess
import sys
import threading
import uuid

import numpy as np
import pytest

from wrapyfi_like.config.manager import ConfigManager
from wrapyfi_like.connect import fallback
from wrapyfi_like.connect.wrapper import MiddlewareCommunicator
from wrapyfi_like.exceptions import ConfigurationError
from wrapyfi_like.testing import inproc_middleware


class Channels(MiddlewareCommunicator):
    """The channeling example's shape: three returns, each over the middleware its argument names."""

    @MiddlewareCommunicator.register("NativeObject", "$mware_A", "Channels", "$topic_A", carrier="mcast",
                                     should_wait=True)
    @MiddlewareCommunicator.register("Image", "$mware_B", "Channels", "/compat/image", carrier="tcp",
                                     width=4, height=2, should_wait=False)
    @MiddlewareCommunicator.register("AudioChunk", "$mware_C", "Channels", "/compat/audio", carrier="tcp",
                                     rate=8000, chunk=4, channels=1, should_wait=False)
    def read(self, index, topic_A="/compat/native", mware_A=None, mware_B=None, mware_C=None):
        self.ran = index
        return {"index": index}, np.zeros((2, 4, 3), np.uint8), (np.zeros((4, 1), np.float32), 8000)


def test_absent_middlewares_are_wrapyfi_fallbacks_and_warn_once_by_name(caplog, monkeypatch):
    monkeypatch.setattr(fallback, "_warned", set())  # once per process: start this test from none
    with caplog.at_level(logging.WARNING, "wrapyfi_like"):
        publisher = Channels()
        publisher.activate_communication(Channels.read, "publish")
        for index in range(3):
            returns = publisher.read(index, mware_A="none", mware_B="ros2", mware_C="yarp")
        assert returns[0] == {"index": 2} and publisher.ran == 2  # the body runs; nothing is sent

        listener = Channels()
        listener.activate_communication(Channels.read, "listen")
        assert listener.read(None, mware_A="none", mware_B="ros2", mware_C="yarp") == [None, None, None]
        assert not hasattr(listener, "ran")
    absent = [r.getMessage() for r in caplog.records if "not available" in r.getMessage()]
    assert len(absent) == 2 and any("'ros2'" in m for m in absent) and any("'yarp'" in m for m in absent)
    MiddlewareCommunicator.close_all_instances()


def test_a_subset_of_listeners_hears_its_channel_while_the_others_are_absent():
    """The channeling example's 'listen on channel A only' (its docstring's process 3 and 4)."""
    topic = f"/compat/{uuid.uuid4().hex[:8]}"
    publisher, listener = Channels(), Channels()
    publisher.activate_communication(Channels.read, "publish")
    listener.activate_communication(Channels.read, "listen")
    heard = []
    listening = threading.Thread(target=lambda: heard.append(
        listener.read(None, topic_A=topic, mware_A="zeromq", mware_B="none", mware_C="none")))
    listening.start()
    publisher.read(5, topic_A=topic, mware_A="zeromq", mware_B="zeromq", mware_C="zeromq")
    listening.join(timeout=20)
    assert heard == [[{"index": 5}, None, None]]
    MiddlewareCommunicator.close_all_instances()


def test_reply_and_request_over_an_absent_middleware_behave_as_wrapyfis_fallbacks():
    class Service(MiddlewareCommunicator):
        @MiddlewareCommunicator.register("NativeObject", "mqtt", "Service", "/compat/service")
        def add(self, a, b):
            return a + b,

    server, client = Service(), Service()
    server.activate_communication(Service.add, "reply")
    client.activate_communication(Service.add, "request")
    assert server.add(2, 3) == (5,)  # the method runs with the call's own arguments
    assert client.add(2, 3) == [None]


def test_a_misspelt_middleware_is_still_an_error_naming_the_closest():
    with pytest.raises(ConfigurationError, match="did you mean 'ros2'"):
        class Typo(MiddlewareCommunicator):
            @MiddlewareCommunicator.register("NativeObject", "rso2", "Typo", "/compat/typo")
            def send(self):
                return 1,


def test_a_listener_ignores_keyword_arguments_its_method_does_not_declare():
    class Camera(MiddlewareCommunicator):
        @MiddlewareCommunicator.register("NativeObject", "inproc", "Camera", "/compat/cam", should_wait=False)
        def collect_cam(self, img_width=320):
            return img_width,

    with inproc_middleware():
        viewer = Camera()
        viewer.activate_communication(Camera.collect_cam, "listen")
        assert viewer.collect_cam(img_source=0, img_width=4) == [None]  # as cam_mic.py calls it
        sender = Camera()
        sender.activate_communication(Camera.collect_cam, "publish")
        with pytest.raises(TypeError, match="img_source"):  # the body runs here, as in Wrapyfi
            sender.collect_cam(img_source=0)


def test_activate_communication_takes_id_postfix_and_instances_show_the_config():
    class Configured(MiddlewareCommunicator):
        @MiddlewareCommunicator.register("NativeObject", "inproc", "Configured", "/compat/config", should_wait=False)
        def value(self):
            return 1,

    ConfigManager.reset()
    try:
        assert Configured().config == {}
        ConfigManager({"Configured": {"value": "listen"}})
        instance = Configured()
        assert instance.config == {"Configured": {"value": "listen"}}
        instance.activate_communication(Configured.value, mode="disable", id_postfix=":rec")
        assert instance.value() == [None]

        class OwnConfig(Configured):
            def __init__(self):
                super().__init__()
                self.config = "mine"  # a subclass may still use the name for itself

        assert OwnConfig().config == "mine"
    finally:
        ConfigManager.reset()


WRAPYFI_STYLE_PLUGIN = '''
import base64
from wrapyfi_like.utils.core_utils import *


class Celsius:
    def __init__(self, degrees):
        self.degrees = degrees


@PluginRegistrar.register(types=(Celsius,))
class CelsiusPlugin(Plugin):
    def __init__(self, **kwargs):
        self.where = os.path.sep  # a Wrapyfi plugin may use the star import's os

    def encode(self, obj, *args, **kwargs):
        return True, dict(__wrapyfi__=(str(self.__class__.__name__), str(obj.degrees)))

    def decode(self, obj_type, obj_full, *args, **kwargs):
        return True, Celsius(float(obj_full[1]))
'''


def test_a_wrapyfi_plugin_file_loads_with_only_its_import_line_changed(tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "celsius.py").write_text(WRAPYFI_STYLE_PLUGIN)
    script = (
        "import sys\n"
        "from wrapyfi_like.encoding import Codec\n"
        "from wrapyfi_like.utils.core_utils import PluginRegistrar\n"
        "codec = Codec()\n"
        "Celsius = PluginRegistrar.decoder_registry['CelsiusPlugin'].__init__.__globals__['Celsius']\n"
        "print(codec.decode(codec.encode({'t': Celsius(21.5)}))['t'].degrees)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**__import__("os").environ, "WRAPYFI_PLUGIN_PATHS": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "21.5"


def test_a_misspelt_default_middleware_names_its_variable_when_a_class_is_defined(tmp_path):
    script = (
        "from wrapyfi_like.connect.wrapper import MiddlewareCommunicator\n"
        "class Sensor(MiddlewareCommunicator):\n"
        "    @MiddlewareCommunicator.register('NativeObject')\n"
        "    def read(self):\n"
        "        return 1,\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**__import__("os").environ, "WRAPYFI_DEFAULT_MWARE": "zeromk"})
    assert done.returncode == 1
    assert "WRAPYFI_DEFAULT_MWARE: unknown middleware 'zeromk'; did you mean 'zeromq'?" in done.stderr
