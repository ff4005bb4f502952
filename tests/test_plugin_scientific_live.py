"""xarray, dask, zarr, pint and JAX values published and received over real ZeroMQ sockets."""

import numpy as np
import pandas as pd
import pytest

from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.connect.publishers import Publisher

pytestmark = pytest.mark.timeout(60)


def _xarray():
    xr = pytest.importorskip("xarray")
    value = xr.Dataset({"t": (("time", "space"), np.random.default_rng(0).random((4, 3)))},
                       coords={"time": pd.date_range("2000-01-01", periods=4), "space": ["IA", "IL", "IN"]})
    return value, lambda got: xr.testing.assert_identical(got, value)


def _dask():
    da = pytest.importorskip("dask.array")
    dd = pytest.importorskip("dask.dataframe")
    array = da.random.default_rng(0).random((300, 200), chunks=(100, 50))
    frame = dd.from_pandas(pd.DataFrame({"a": np.arange(10), "b": np.arange(10.0)}), npartitions=3)

    def check(got):
        assert got[0].chunks == array.chunks and got[1].divisions == frame.divisions
        np.testing.assert_array_equal(got[0].compute(), array.compute())
        pd.testing.assert_frame_equal(got[1].compute(), frame.compute())

    return (array, frame), check


def _zarr():
    zarr = pytest.importorskip("zarr")
    value = zarr.array(np.arange(100, dtype=np.int32).reshape(10, 10), chunks=(5, 5))

    def check(got):
        assert got.chunks == value.chunks and got.dtype == value.dtype
        np.testing.assert_array_equal(got[...], value[...])

    return value, check


def _pint():
    pint = pytest.importorskip("pint")
    units = pint.get_application_registry()
    value = units.Quantity(np.linspace(0, 1, 5), "m / s")

    def check(got):
        assert got.units == value.units
        np.testing.assert_array_equal(got.magnitude, value.magnitude)

    return value, check


def _jax():
    jnp = pytest.importorskip("jax.numpy")
    value = jnp.arange(12, dtype=jnp.bfloat16).reshape(3, 4)

    def check(got):
        assert got.dtype == value.dtype and got.shape == value.shape
        assert np.asarray(got).tobytes() == np.asarray(value).tobytes()

    return value, check


@pytest.mark.parametrize("make", [_xarray, _dask, _zarr, _pint, _jax], ids=lambda make: make.__name__[1:])
def test_value_arrives_exactly_over_zeromq(make, topic, in_thread):
    value, check = make()
    listener = Listener("Test", topic, should_wait=True)
    publisher = Publisher("Test", topic, should_wait=True, wait_timeout=20)
    try:
        received = in_thread(listener.listen)
        publisher.publish({"value": value})
        check(received.result(timeout=30)["value"])
    finally:
        publisher.close()
        listener.close()
