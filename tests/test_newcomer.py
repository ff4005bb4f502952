"""What a newcomer meets when following the docs with only what `make demo` installs."""

import sys

import numpy as np
import pytest

from wrapyfi_like.connect.wrapper import MiddlewareCommunicator
from wrapyfi_like.exceptions import ConfigurationError
from wrapyfi_like.testing import inproc_middleware


def test_a_png_image_without_pillow_is_a_configuration_error_naming_the_extra(monkeypatch):
    """docs/guide/data-types.md: `png=True` needs the pillow extra, which `make demo` does not install."""
    monkeypatch.setitem(sys.modules, "PIL", None)  # as if Pillow were not installed

    class Camera(MiddlewareCommunicator):
        @MiddlewareCommunicator.register("Image", "inproc", "Camera", "/newcomer/png", width=4, height=2,
                                         png=True, should_wait=False)
        def capture(self, frame):
            return frame,

    with inproc_middleware():
        camera = Camera()
        camera.activate_communication(Camera.capture, mode="publish")
        with pytest.raises(ConfigurationError, match="needs Pillow.*pillow"):
            camera.capture(np.zeros((2, 4, 3), np.uint8))
