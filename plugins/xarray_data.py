"""xarray DataArray and Dataset as their variables' numpy data plus dims, coords, attrs and names.

Every variable (the data, each coordinate, each data variable) travels as
``[dims, data, attrs]``: ``data`` is its values as a numpy array, which the codec sends as a raw
buffer in a frame of its own (dtype, shape and memory order exact; a non-contiguous view is made
contiguous once), and which the receiver's array wraps without a copy. Coordinates are arrays too,
so a long time axis costs no more header than a short one. The message also carries the size of
every dimension, and each received variable's shape must match the sizes of its dims, so a cut
array is a :class:`DecodeError`, not a shorter object.

A DataArray is ``("xarray.DataArray", sizes, variable, coords, name)``; a Dataset is
``("xarray.Dataset", sizes, {"data_vars": …, "coords": …, "attrs": …})``, with ``coords`` and
``data_vars`` lists of ``[name, variable]`` (order kept). Names, dims and attrs are values the codec carries
(strings, numbers, tuples, arrays, datetimes …); anything else in them is an
:class:`EncodeError` at publish.

Not carried: ``.encoding`` (netCDF storage hints), indexes other than xarray's default ones
(the receiver rebuilds the default index of each dimension coordinate), and values numpy keeps as
objects (Python strings in an object array, time-zone-aware timestamps, MultiIndex levels): those
raise :class:`EncodeError` naming the variable, and so do variables wrapping other array types
(pint quantities, sparse or GPU arrays), which numpy would strip of their units, sparsity or device.
A variable backed by dask is computed on send.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from wrapyfi_like.exceptions import DecodeError, EncodeError
from wrapyfi_like.utils.core_utils import Plugin, PluginRegistrar

_DATASET_KEYS = frozenset({"data_vars", "coords", "attrs"})


@PluginRegistrar.register(types=(xr.DataArray,))
class XarrayDataArray(Plugin):
    """Sends DataArrays whose data and coordinates are numpy-typed (numbers, bools, datetimes, strings)."""

    codec_id = "xarray.DataArray"

    def encode(self, obj: xr.DataArray, *args: Any, **kwargs: Any) -> tuple[bool, dict]:
        return True, {"__wrapyfi__": (
            self.codec_id, _sizes_to_wire(obj.sizes), _variable_to_wire(obj.name, obj.variable),
            _variables_to_wire(obj.coords.variables), obj.name,
        )}

    def decode(self, obj_type: str, obj_full: tuple, *args: Any, **kwargs: Any) -> tuple[bool, xr.DataArray]:
        if len(obj_full) != 5:
            raise DecodeError(f"an xarray.DataArray payload has 5 fields, got {len(obj_full)}")
        _, sizes, variable, coords, name = obj_full
        sizes = _sizes_from_wire(sizes)
        data = _variable_from_wire(variable, sizes)
        _check_hashable(name, "name")
        return True, xr.DataArray(data, coords=_variables_from_wire(coords, sizes), name=name)


@PluginRegistrar.register(types=(xr.Dataset,))
class XarrayDataset(Plugin):
    """Sends Datasets whose variables are numpy-typed; see the module docstring."""

    codec_id = "xarray.Dataset"

    def encode(self, obj: xr.Dataset, *args: Any, **kwargs: Any) -> tuple[bool, dict]:
        body = {"data_vars": _variables_to_wire(obj.data_vars.variables),
                "coords": _variables_to_wire(obj.coords.variables), "attrs": dict(obj.attrs)}
        return True, {"__wrapyfi__": (self.codec_id, _sizes_to_wire(obj.sizes), body)}

    def decode(self, obj_type: str, obj_full: tuple, *args: Any, **kwargs: Any) -> tuple[bool, xr.Dataset]:
        if len(obj_full) != 3:
            raise DecodeError(f"an xarray.Dataset payload has 3 fields, got {len(obj_full)}")
        _, sizes, body = obj_full
        sizes = _sizes_from_wire(sizes)
        if not isinstance(body, dict) or set(body) != _DATASET_KEYS or not isinstance(body["attrs"], dict):
            raise DecodeError(f"an xarray.Dataset body must be a dict with keys {sorted(_DATASET_KEYS)} and dict attrs")
        return True, xr.Dataset(_variables_from_wire(body["data_vars"], sizes),
                                coords=_variables_from_wire(body["coords"], sizes), attrs=body["attrs"])


def _sizes_to_wire(sizes: Any) -> list:
    return [[dim, size] for dim, size in sizes.items()]


def _variables_to_wire(variables: Any) -> list:
    return [[name, _variable_to_wire(name, variable)] for name, variable in variables.items()]


def _variable_to_wire(name: Any, variable: xr.Variable) -> list:
    data = variable.data
    if not isinstance(data, np.ndarray) and type(data).__module__.partition(".")[0] != "dask":  # pint has __dask_graph__ too
        raise EncodeError(
            f"xarray variable {name!r:.80} wraps a {type(data).__module__}.{type(data).__qualname__}, not a numpy or "
            "dask array; as numpy it would lose what that type adds (units, sparsity, device): convert it first"
        )
    values = np.asarray(variable.values)
    if values.dtype == object:
        raise EncodeError(
            f"xarray variable {name!r:.80} holds Python objects (strings in an object array, time-zone-aware "
            "timestamps or MultiIndex levels), which travel only by pickle; convert it to a numpy dtype "
            "(e.g. .astype(str)) or reset the index first"
        )
    return [list(variable.dims), values, dict(variable.attrs)]


def _sizes_from_wire(sizes: Any) -> dict:
    if type(sizes) is not list or not all(type(pair) is list and len(pair) == 2 for pair in sizes):
        raise DecodeError("xarray sizes must be a list of [dim, size] pairs")
    found = {}
    for dim, size in sizes:
        _check_hashable(dim, "dimension")
        if type(size) is not int or size < 0:
            raise DecodeError(f"bad size {size!r:.40} of xarray dimension {dim!r:.80}")
        found[dim] = size
    if len(found) != len(sizes):
        raise DecodeError("xarray sizes name a dimension twice")
    return found


def _variables_from_wire(variables: Any, sizes: dict) -> dict:
    if type(variables) is not list or not all(type(pair) is list and len(pair) == 2 for pair in variables):
        raise DecodeError("xarray variables must be a list of [name, variable] pairs")
    for name, _ in variables:
        _check_hashable(name, "variable name")
    found = {name: _variable_from_wire(variable, sizes) for name, variable in variables}
    if len(found) != len(variables):
        raise DecodeError("xarray variables name a variable twice")
    return found


def _variable_from_wire(variable: Any, sizes: dict) -> xr.Variable:
    if type(variable) is not list or len(variable) != 3:
        raise DecodeError("an xarray variable must be [dims, data, attrs]")
    dims, data, attrs = variable
    if type(dims) is not list or not isinstance(data, np.ndarray) or not isinstance(attrs, dict):
        raise DecodeError("an xarray variable must be [list of dims, numpy array, dict of attrs]")
    try:
        expected = tuple(sizes[dim] for dim in dims)
    except (KeyError, TypeError):
        raise DecodeError(f"xarray variable dims {dims!r:.80} are not among the message's dimensions") from None
    if data.shape != expected:
        raise DecodeError(f"xarray variable of dims {dims!r:.80} needs shape {expected}, got {data.shape}")
    return xr.Variable(dims, data, attrs)


def _check_hashable(value: Any, what: str) -> None:
    """xarray keys names and dims by value: a received one must be hashable (a list or dict is not)."""
    try:
        hash(value)
    except TypeError:
        raise DecodeError(f"an xarray {what} must be hashable, got {type(value).__name__}") from None
