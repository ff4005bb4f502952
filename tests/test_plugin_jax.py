"""The JAX plugin: raw bytes out of band, every JAX dtype, device placement chosen by the listener."""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from scientific_samples import decode_with_fields, payload  # noqa: E402
from wrapyfi_like.encoding import Codec  # noqa: E402
from wrapyfi_like.exceptions import ConfigurationError, DecodeError, EncodeError  # noqa: E402
from wrapyfi_like.plugins import jax_array  # noqa: E402
from wrapyfi_like.testing import PluginConformance, round_trip  # noqa: E402


def _assert_jax_equal(expected, actual):
    assert isinstance(actual, jax.Array)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    assert np.asarray(actual).tobytes() == np.asarray(expected).tobytes()


class TestJaxConformance(PluginConformance):
    plugin = jax_array.JaxArray

    def samples(self):
        found = {name: jnp.arange(6).reshape(2, 3).astype(dtype) for name, dtype in jax_array.DTYPES.items()
                 if jax.dtypes.canonicalize_dtype(dtype) == dtype}
        found["scalar"] = jnp.float32(2.5) * jnp.ones(())
        return found

    def assert_equal(self, expected, actual):
        _assert_jax_equal(expected, actual)

    def empty_sample(self):
        return jnp.zeros((0, 3))

    def non_contiguous_sample(self):
        # JAX arrays have no strides: a transpose is a new dense array; this checks that the
        # bytes still go out in the order of the logical shape
        return jnp.arange(24, dtype=jnp.int32).reshape(4, 6).T[::2]

    def read_only_sample(self):
        # np.asarray of every JAX array is a read-only view of JAX's buffer: encoding must not write it
        return jnp.linspace(0, 1, 10)

    def large_sample(self):
        return jnp.ones((1000, 1000), dtype=jnp.float32)


def test_bfloat16_and_float8_travel_as_bytes_numpy_lacks_dtypes_for():
    for name in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
        value = jnp.array([0.5, -1.0, 2.0], dtype=getattr(jnp, name))
        fields = payload(value)
        assert fields[2] == name and fields[1].dtype == np.uint8
        _assert_jax_equal(value, round_trip(Codec(), value))


def test_a_dtype_the_receiver_would_narrow_is_refused():
    """Without jax_enable_x64 JAX would turn a received float64 array into float32 silently."""
    assert not jax.config.jax_enable_x64
    with pytest.raises(DecodeError, match="jax_enable_x64"):
        decode_with_fields(jnp.ones(2), ["jax.Array", np.zeros(16, np.uint8), "float64", [2], "cpu:0"])


def test_load_jax_device_places_received_arrays():
    device = jax.devices("cpu")[0]
    received = round_trip(Codec(load_jax_device="cpu:0"), jnp.ones(3))
    assert received.devices() == {device}
    received = round_trip(Codec(map_jax_devices={"cpu:0": device}), jnp.ones(3))
    assert received.devices() == {device}


def test_arrays_from_a_device_this_process_lacks_go_where_the_map_says():
    codec = Codec(map_jax_devices={"gpu": "cpu:0", "default": "cpu"})
    fields = ["jax.Array", np.arange(4, dtype=np.uint8), "uint8", [4], "gpu:0"]
    received = decode_with_fields(jnp.ones(1), fields, codec)
    assert received.devices() == {jax.devices("cpu")[0]} and received.tolist() == [0, 1, 2, 3]


def test_devices_this_process_lacks_fail_when_the_listener_is_built():
    for kwargs in ({"load_jax_device": "cpu:7"}, {"load_jax_device": "tpu"}, {"map_jax_devices": {"cpu": "gpu:3"}},
                   {"map_jax_devices": ["cpu"]}, {"load_jax_device": 0}, {"map_jax_devices": {"gpu:x": "cpu"}},
                   {"map_jax_devices": {"gpu": "cpu", "gpu:0": "cpu"}}):
        with pytest.raises(ConfigurationError):
            Codec(**kwargs)
    with pytest.raises(ConfigurationError, match="give one"):
        Codec(load_jax_device="cpu", map_jax_devices={"default": "cpu"})


def test_received_array_has_the_received_values_not_a_view_of_the_frame():
    """jax.device_put copies: writing the receive buffer afterwards must not change the array."""
    codec = Codec()
    frames = [bytearray(frame) for frame in codec.encode(jnp.arange(4, dtype=jnp.int32))]
    received = codec.decode(frames)
    frames[1][:] = bytes(len(frames[1]))
    assert received.tolist() == [0, 1, 2, 3]


def test_a_cpu_array_is_sent_from_jaxs_own_buffer():
    value = jnp.arange(1000, dtype=jnp.float32)
    raw = payload(value)[1]
    assert np.shares_memory(raw, np.asarray(value))


def test_four_bit_dtypes_are_an_encode_error():
    with pytest.raises(EncodeError, match="int4 cannot be sent"):
        Codec().encode(jnp.zeros(2, jnp.int4))
