"""The xarray plugins: DataArray and Dataset variables as numpy buffers, dims/coords/attrs/names exact."""

import numpy as np
import pandas as pd
import pytest

xr = pytest.importorskip("xarray")

from scientific_samples import decode_with_fields, payload  # noqa: E402
from wrapyfi_like.encoding import Codec  # noqa: E402
from wrapyfi_like.exceptions import DecodeError, EncodeError  # noqa: E402
from wrapyfi_like.plugins import xarray_data  # noqa: E402
from wrapyfi_like.testing import PluginConformance, round_trip, wire_copy  # noqa: E402


def _weather(data=None):
    data = np.random.default_rng(0).random((4, 3)) if data is None else data
    return xr.DataArray(
        data, dims=["time", "space"], name="example",
        coords={"time": pd.date_range("2000-01-01", periods=data.shape[0]), "space": ["IA", "IL", "IN"][:data.shape[1]],
                "elevation": ("space", np.arange(data.shape[1], dtype=np.int16)), "station": "north"},
        attrs={"units": "K", "valid": (0.0, 1.0), "count": 3, "flags": np.array([1, 2], np.uint8)},
    )


def _assert_identical(expected, actual):
    assert type(actual) is type(expected)
    xr.testing.assert_identical(actual, expected)
    if isinstance(expected, xr.DataArray):
        assert actual.dtype == expected.dtype
    for name, variable in expected.coords.variables.items():
        assert actual.coords.variables[name].dtype == variable.dtype, name
    for name, variable in getattr(expected, "data_vars", {}).items():
        assert actual[name].dtype == variable.dtype, name


class TestDataArrayConformance(PluginConformance):
    plugin = xarray_data.XarrayDataArray

    def samples(self):
        return {
            "weather": _weather(),
            "unnamed, no coords": xr.DataArray(np.arange(6, dtype=">i4").reshape(2, 3)),
            "integer name and dims": xr.DataArray(np.ones(2, np.complex64), dims=[7], name=3),
            "0-d": xr.DataArray(np.float32(1.5), attrs={"note": "scalar"}),
            "timedelta and bool": xr.DataArray(np.array([1, 2], "m8[s]"), dims=["d"], coords={"ok": ("d", [True, False])}),
        }

    def assert_equal(self, expected, actual):
        _assert_identical(expected, actual)

    def empty_sample(self):
        return xr.DataArray(np.zeros((0, 3)), dims=["time", "space"], coords={"space": ["a", "b", "c"]})

    def non_contiguous_sample(self):
        return _weather(np.arange(40.0).reshape(8, 5)[::2, ::-2])

    def read_only_sample(self):
        data = np.arange(12.0).reshape(4, 3)
        data.flags.writeable = False
        return _weather(data)

    def large_sample(self):
        return xr.DataArray(np.ones((1000, 500)), dims=["y", "x"], coords={"x": np.arange(500.0)})


class TestDatasetConformance(PluginConformance):
    plugin = xarray_data.XarrayDataset

    def samples(self):
        weather = _weather()
        return {
            "two variables": xr.Dataset({"temperature": weather, "rain": weather.astype(np.float32) * 2},
                                        attrs={"source": "test", "version": (1, 2)}),
            "empty dataset": xr.Dataset(),
            "only coords": xr.Dataset(coords={"x": [1, 2, 3]}),
        }

    def assert_equal(self, expected, actual):
        _assert_identical(expected, actual)

    def empty_sample(self):
        return xr.Dataset({"v": ("t", np.zeros(0))}, coords={"t": np.zeros(0, "M8[ns]")})

    def non_contiguous_sample(self):
        return xr.Dataset({"v": (("a", "b"), np.arange(60).reshape(6, 10)[1::2, ::3])})

    def read_only_sample(self):
        values = np.arange(5)
        values.flags.writeable = False
        return xr.Dataset({"v": ("t", values)}, coords={"t": values * 10})

    def large_sample(self):
        return xr.Dataset({"a": ("x", np.ones(500_000)), "b": ("x", np.zeros(500_000, np.float32))})


def test_wrapyfi_example_array_arrives_identical():
    """Wrapyfi's xarray example's DataArray: a date axis and string locations."""
    array = xr.DataArray(np.random.rand(4, 3), coords=[pd.date_range("2000-01-01", periods=4), ["IA", "IL", "IN"]],
                         dims=["time", "space"], name="example")
    _assert_identical(array, round_trip(Codec(), array))


def test_data_and_coordinates_travel_as_buffers_and_arrive_in_the_received_frames():
    array = xr.DataArray(np.arange(100_000.0), dims=["t"], coords={"t": np.arange(100_000)})
    codec = Codec()
    frames = codec.encode(array)
    assert len(frames[0]) < 500 and len(frames) == 3
    received_frames = wire_copy(frames)
    received = codec.decode(received_frames)
    received_frames[1][:8] = np.float64(-1.0).tobytes()
    assert received.values[0] == -1.0  # the DataArray's data is the received frame itself
    dataset = xr.Dataset({"v": ("t", np.arange(10.0))})
    received_frames = wire_copy(codec.encode(dataset))
    received = codec.decode(received_frames)
    received_frames[1][:8] = np.float64(-1.0).tobytes()
    assert received["v"].values[0] == -1.0


def test_object_coordinates_are_an_encode_error_naming_the_variable():
    array = xr.DataArray([1, 2], dims=["x"], coords={"label": ("x", np.array(["a", None], dtype=object))})
    with pytest.raises(EncodeError, match="'label'.*pickle"):
        Codec().encode(array)


def test_shapes_that_do_not_match_the_dimension_sizes_are_refused():
    array = xr.DataArray(np.arange(4.0), dims=["x"])
    fields = payload(array)
    fields[2] = [["x"], np.arange(3.0), {}]
    with pytest.raises(DecodeError, match=r"needs shape \(4,\)"):
        decode_with_fields(array, fields)
    fields = payload(array)
    fields[2] = [["y"], np.arange(4.0), {}]
    with pytest.raises(DecodeError, match="not among"):
        decode_with_fields(array, fields)


def test_variables_wrapping_other_array_types_are_an_encode_error():
    """A pint-backed DataArray would lose its units as numpy: refused, not stripped."""
    pint = pytest.importorskip("pint")
    array = xr.DataArray(pint.get_application_registry().Quantity(np.arange(3.0), "m"), dims=["x"])
    with pytest.raises(EncodeError, match="pint.*units"):
        Codec().encode(array)


def test_a_variable_backed_by_dask_is_computed_on_send():
    dask_array = pytest.importorskip("dask.array")
    array = xr.DataArray(dask_array.arange(6, chunks=2), dims=["x"], coords={"x": np.arange(6) * 10})
    received = round_trip(Codec(), array)
    assert type(received.variable.data) is np.ndarray
    xr.testing.assert_identical(received, array.compute())
