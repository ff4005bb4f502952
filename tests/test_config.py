"""ConfigManager: YAML/dict mode configs applied to instances; typos are reported."""

import subprocess
import sys
import warnings

import pytest

from wrapyfi_like.config import ConfigManager
from wrapyfi_like.connect.wrapper import MiddlewareCommunicator
from wrapyfi_like.exceptions import ConfigurationError


class Configured(MiddlewareCommunicator):
    def __init__(self):
        super().__init__()

    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Configured", "/config/never_used")
    def value(self):
        return 1,


class NoSuperInit(MiddlewareCommunicator):
    def __init__(self):
        self.ready = True  # does not call super().__init__()

    @MiddlewareCommunicator.register("NativeObject", "zeromq", "NoSuperInit", "/config/never_used")
    def value(self):
        return 1,


@pytest.fixture(autouse=True)
def fresh_config():
    ConfigManager.reset()
    yield
    ConfigManager.reset()


def mode_of(instance, method):
    return instance._wrapyfi_like_bindings[method._wrapyfi_like_func.__qualname__].mode


def test_yaml_file_sets_modes_per_instance(tmp_path):
    path = tmp_path / "modes.yml"
    path.write_text("Configured:\n  value: [disable, null]\nNoSuperInit:\n  value: disable\n")
    manager = ConfigManager(str(path))
    assert ConfigManager() is manager and ConfigManager(None).config == manager.config
    first, second = Configured(), Configured()
    assert first.value() == [None]  # disabled by the file
    assert second.value() == (1,)  # mode None: runs normally
    assert mode_of(first, Configured.value) == "disable"


def test_applied_without_super_init_at_first_call():
    ConfigManager({"NoSuperInit": {"value": "disable"}})
    assert NoSuperInit().value() == [None]


def test_explicit_activation_after_the_config_wins():
    ConfigManager({"NoSuperInit": {"value": "disable"}})
    instance = NoSuperInit()
    instance.activate_communication(NoSuperInit.value, mode=None)
    assert instance.value() == (1,)


def test_method_typo_is_an_error_naming_it():
    ConfigManager({"Configured": {"valeu": "publish"}})
    with pytest.raises(ConfigurationError, match="'valeu' of class 'Configured'.*did you mean 'value'"):
        Configured()


def test_class_typo_is_warned_about_with_the_closest_name():
    ConfigManager({"Configurd": {"value": "publish"}})
    with pytest.warns(UserWarning, match="class 'Configurd'.*did you mean 'Configured'"):
        Configured()


def test_known_names_give_no_warning():
    ConfigManager({"Configured": {"value": "disable"}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Configured()


def test_unknown_mode_and_bad_files_are_errors(tmp_path):
    with pytest.raises(ConfigurationError, match="unknown mode 'publsh'"):
        ConfigManager({"Configured": {"value": "publsh"}})
    bad = tmp_path / "bad.yml"
    bad.write_text("Configured: [value]\n")
    with pytest.raises(ConfigurationError, match="must map method names to modes"):
        ConfigManager(str(bad))
    with pytest.raises(ConfigurationError, match="cannot read"):
        ConfigManager(str(tmp_path / "missing.yml"))


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yml"
    path.write_text("Configured: !!python/object/apply:os.system ['echo unsafe']\n")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        ConfigManager(str(path))


def test_the_config_layer_does_not_import_the_connect_layer():
    """Layers import downwards only: loading mode configs must not pull in the communicators."""
    script = ("import sys, wrapyfi_like.config.manager; "
              "print(sorted(m for m in sys.modules if m.startswith('wrapyfi_like.connect')))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_the_mode_names_are_the_modes_connect_implements():
    from wrapyfi_like.config.modes import MODES as NAMES
    from wrapyfi_like.connect.modes import MODES as IMPLEMENTED

    assert sorted(map(str, NAMES)) == sorted(map(str, IMPLEMENTED)) and len(NAMES) == len(IMPLEMENTED)
