"""Image and AudioChunk: checks, compression, and transfer over real sockets (pub/sub and req/rep)."""

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.connect.publishers import Publisher
from wrapyfi_like.connect.wrapper import MiddlewareCommunicator
from wrapyfi_like.data_types.audio import AudioChunk
from wrapyfi_like.data_types.image import Image
from wrapyfi_like.exceptions import ConfigurationError, DecodeError, ShapeError

pytestmark = pytest.mark.timeout(60)


def gradient(height=48, width=64, rgb=True):
    """A smooth test picture (JPEG-friendly, so the PSNR bound is meaningful)."""
    y, x = np.mgrid[0:height, 0:width]
    channels = [(x * 255 // width), (y * 255 // height), ((x + y) * 255 // (width + height))]
    image = np.stack(channels, axis=-1).astype(np.uint8)
    return image if rgb else image[..., 0].copy()


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


@pytest.fixture
def background():
    with ThreadPoolExecutor(max_workers=1) as executor:
        yield executor


def transfer(topic, background, value, data_type, **kwargs):
    listener = Listener("Test", topic, data_type=data_type, **kwargs.pop("listener", {}), **kwargs)
    publisher = Publisher("Test", topic, data_type=data_type, wait_timeout=10, **kwargs)
    try:
        received = background.submit(listener.listen)
        publisher.publish(value)
        return received.result(timeout=10)
    finally:
        publisher.close(), listener.close()


# -- Image -----------------------------------------------------------------------------------------

def test_raw_image_is_the_array_itself_on_the_wire():
    image = gradient()
    assert Image(width=64, height=48).to_wire(image) is image  # the codec sends its memory as one frame


def test_raw_colour_and_float_gray_images_arrive_exactly(topic, background):
    image = gradient()
    received = transfer(topic, background, image, "Image", width=64, height=48, rgb=True)
    np.testing.assert_array_equal(received, image)
    assert received.flags.writeable
    gray = np.random.default_rng(1).random((48, 64), dtype=np.float32)
    received = transfer(topic + "/fp", background, gray, "Image", width=64, height=48, rgb=False, fp=True)
    np.testing.assert_array_equal(received, gray)
    assert received.dtype == np.float32


@pytest.mark.parametrize("jpg", [True, {"quality": 95}])
def test_jpeg_round_trip_over_sockets_within_a_psnr_bound(topic, background, jpg):
    image = gradient()
    received = transfer(topic, background, image, "Image", width=64, height=48, rgb=True, jpg=jpg)
    assert received.shape == image.shape and received.dtype == np.uint8
    assert psnr(received, image) > 35


def test_jpeg_quality_is_applied():
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    low = Image(jpg={"quality": 10}).to_wire(image)[1]
    high = Image(jpg={"quality": 95}).to_wire(image)[1]
    assert len(low) < len(high)


def test_png_round_trip_is_lossless_and_decodes_without_declaring_png():
    image = gradient(rgb=False)
    wire = Image(rgb=False, png=True).to_wire(image)
    np.testing.assert_array_equal(Image(rgb=False).from_wire(wire), image)


@pytest.mark.parametrize("kwargs, image, message", [
    (dict(width=32, height=48), gradient(), "64x48 .* but 32x48 is declared"),
    (dict(rgb=False), gradient(), r"rgb=False declares \(height, width\)"),
    (dict(rgb=True), gradient(rgb=False), r"rgb=True declares \(height, width, 3\)"),
    (dict(fp=True), gradient(), "fp=True declares float32"),
])
def test_sender_shape_mismatch_is_a_clear_error(kwargs, image, message):
    with pytest.raises(ShapeError, match=message):
        Image(**kwargs).to_wire(image)


def test_listener_skips_and_logs_an_image_that_does_not_match_its_declaration(topic, background, caplog):
    listener = Listener("Test", topic, data_type="Image", width=32, height=24)
    publisher = Publisher("Test", topic, data_type="Image", wait_timeout=10)
    try:
        with caplog.at_level(logging.WARNING, logger="wrapyfi_like.listeners"):
            received = background.submit(listener.listen)
            publisher.publish(gradient())  # 64x48: not what the listener declared
            publisher.publish(gradient(24, 32))
            assert received.result(timeout=10).shape == (24, 32, 3)
        assert listener.malformed == 1 and "64x48 (width x height), but 32x24 is declared" in caplog.text
    finally:
        publisher.close(), listener.close()


def test_jpeg_of_the_wrong_size_is_refused_before_decoding():
    wire = Image(jpg=True).to_wire(gradient())
    with pytest.raises(DecodeError, match="64x48 .* but 640x480 is declared"):
        Image(width=640, height=480).from_wire(wire)


def test_garbage_jpeg_is_a_decode_error():
    with pytest.raises(DecodeError, match="Pillow cannot decode"):
        Image().from_wire(("image/jpeg", b"not a jpeg at all"))


def test_contradicting_image_kwargs_are_rejected():
    with pytest.raises(ConfigurationError):
        Image(jpg=True, fp=True)
    with pytest.raises(ConfigurationError):
        Image(jpg=True, png=True)
    with pytest.raises(ConfigurationError, match="quality"):
        Image(jpg={"quality": 500})


# -- AudioChunk ------------------------------------------------------------------------------------

def tone(chunk=256, channels=2, rate=16000):
    t = np.arange(chunk, dtype=np.float32) / rate
    return np.stack([np.sin(2 * np.pi * 440 * t)] * channels, axis=1).astype(np.float32), rate


def test_audio_chunk_arrives_as_samples_and_rate(topic, background):
    samples, rate = tone()
    received, received_rate = transfer(topic, background, (samples, rate), "AudioChunk",
                                       chunk=256, channels=2, rate=16000)
    np.testing.assert_array_equal(received, samples)
    assert received_rate == 16000 and received.dtype == np.float32


def test_audio_listener_without_wait_returns_none_and_its_rate(topic):
    listener = Listener("Test", topic, data_type="AudioChunk", rate=16000, should_wait=False)
    try:
        assert listener.listen() == (None, 16000)
    finally:
        listener.close()


@pytest.mark.parametrize("kwargs, value, message", [
    (dict(chunk=128, channels=2, rate=16000), tone(), "256 samples x 2 channels, but 128 x 2"),
    (dict(channels=1, rate=16000), tone(), "2 channels, but any x 1"),
    (dict(channels=2, rate=44100), tone(), "rate 16000, but 44100 is declared"),
    (dict(channels=2, rate=16000), (tone()[0].astype(np.int16), 16000), "int16"),
])
def test_audio_shape_mismatch_is_a_clear_error(kwargs, value, message):
    with pytest.raises(ShapeError, match=message):
        AudioChunk(**kwargs).to_wire(value)
    with pytest.raises(DecodeError, match=message):
        AudioChunk(**kwargs).from_wire((value[0], value[1]))


# -- both over request/reply -----------------------------------------------------------------------

class Sensors(MiddlewareCommunicator):
    @MiddlewareCommunicator.register("NativeObject", "zeromq", "Sensors", "$topic")
    @MiddlewareCommunicator.register("Image", "zeromq", "Sensors", "$topic", width=64, height=48, jpg=True)
    @MiddlewareCommunicator.register("AudioChunk", "zeromq", "Sensors", "$topic", chunk=256, channels=2, rate=16000)
    def capture(self, label, *, topic):
        return {"label": label}, gradient(), tone()


def test_image_and_audio_over_request_reply(topic, background):
    server, client = Sensors(), Sensors()
    server.activate_communication(Sensors.capture, mode="reply")
    client.activate_communication(Sensors.capture, mode="request")
    try:
        served = background.submit(server.capture, topic=topic)
        message, image, (samples, rate) = client.capture("frame 1", topic=topic)
        assert message == {"label": "frame 1"}
        assert image.shape == (48, 64, 3) and psnr(image, gradient()) > 35
        np.testing.assert_array_equal(samples, tone()[0])
        assert rate == 16000
        assert served.result(timeout=10)[0] == {"label": "frame 1"}
    finally:
        server.close(), client.close()
