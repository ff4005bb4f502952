"""The xarray, dask, zarr, pint and JAX plugins load lazily, a received codec id imports none of
those libraries unless the listener allows it, and their values travel together and in JSON mode."""

import json
import subprocess
import sys

import msgpack
import numpy as np
import pytest

from wrapyfi_like.encoding import Codec

LIBRARIES = {  # codec id: (library, the module that must stay unimported, an expression making a value)
    "xarray.DataArray": ("xarray", "xarray", "xarray.DataArray(numpy.arange(3.0), dims=['x'])"),
    "dask.Array": ("dask.array", "dask", "dask.array.arange(4, chunks=2)"),
    "zarr.Array": ("zarr", "zarr", "zarr.array(numpy.arange(4))"),
    "pint.Quantity": ("pint", "pint", "pint.get_application_registry().Quantity(2.0, 'm')"),
    "jax.Array": ("jax.numpy", "jax", "jax.numpy.arange(3.0)"),
}


def _run(script):
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _message(codec_id):
    """The frames of a real value of ``codec_id``'s library, made in this process."""
    library, module, make = LIBRARIES[codec_id]
    pytest.importorskip(library)
    frames = Codec().encode(eval(make, {"numpy": np, module: sys.modules[module]}))
    return [bytes(memoryview(frame).cast("B")) for frame in frames]


def test_importing_wrapyfi_like_imports_none_of_these_libraries():
    roots = sorted({module for _, module, _ in LIBRARIES.values()})
    script = ("import sys, wrapyfi_like.connect.wrapper, wrapyfi_like.testing, wrapyfi_like.plugins; "
              f"print([m for m in {roots!r} if m in sys.modules])")
    assert _run(script).strip() == "[]"


@pytest.mark.timeout(120)
def test_received_codec_ids_import_their_libraries_only_when_allowed():
    """For each library, a bare codec id (a 30-byte message) and a real value are refused in a fresh
    process, which stays without any of the libraries; each value decodes once the listener allows
    its codec id. (One process for all five: importing jax and dask costs seconds.)"""
    messages = {codec_id: ([msgpack.packb([1, 0, msgpack.ExtType(15, msgpack.packb([codec_id, None]))])],
                           _message(codec_id)) for codec_id in LIBRARIES}
    modules = [module for _, module, _ in LIBRARIES.values()]
    script = (
        "import json, sys; from wrapyfi_like.encoding import Codec; from wrapyfi_like.exceptions import DecodeError\n"
        f"messages = {messages!r}\n"
        "refused = {}\n"
        "for codec_id, (bare, real) in messages.items():\n"
        "    for frames in (bare, real):\n"
        "        try:\n            Codec().decode(frames)\n"
        "        except DecodeError as error:\n            refused.setdefault(codec_id, []).append(str(error))\n"
        f"imported = [m for m in {modules!r} if m in sys.modules]\n"
        "decoded = {codec_id: type(Codec(allowed_plugins=[codec_id]).decode(real)).__module__.split('.')[0]\n"
        "           for codec_id, (bare, real) in messages.items()}\n"
        "print(json.dumps([refused, imported, decoded]))\n"
    )
    refused, imported, decoded = json.loads(_run(script))
    assert imported == []
    for codec_id, (_, module, _) in LIBRARIES.items():
        assert len(refused[codec_id]) == 2, codec_id
        for error in refused[codec_id]:
            assert repr(codec_id) in error and f"allowed_plugins=[{codec_id!r}]" in error
        assert decoded[codec_id] in (module, "jaxlib")


@pytest.mark.timeout(120)
def test_first_object_of_each_library_loads_its_plugin_only():
    imports = "; ".join(f"import {library}" for library, _, _ in LIBRARIES.values())
    makes = ", ".join(f"{codec_id!r}: lambda: {make}" for codec_id, (_, _, make) in LIBRARIES.items())
    script = (
        f"import json, sys, numpy; {imports}; from wrapyfi_like.encoding import Codec\n"
        "loaded = lambda: sorted(m.rsplit('.', 1)[1] for m in sys.modules\n"
        "                        if m.startswith('wrapyfi_like.plugins.') and m.count('.') == 2)\n"
        "codec = Codec(); steps = {'before': loaded()}\n"
        f"for codec_id, make in {{{makes}}}.items():\n"
        "    codec.decode(codec.encode(make())); steps[codec_id] = loaded()\n"
        "print(json.dumps(steps))\n"
    )
    steps = json.loads(_run(script))
    assert steps.pop("before") == []
    seen = []
    for codec_id, module in zip(LIBRARIES, ("xarray_data", "dask_data", "zarr_data", "pint_quantity", "jax_array")):
        seen.append(module)
        assert [name for name in steps[codec_id] if name in LIBRARIES_MODULES] == sorted(seen), codec_id


LIBRARIES_MODULES = {"xarray_data", "dask_data", "zarr_data", "pint_quantity", "jax_array"}


def test_values_nest_across_plugins():
    """A pint quantity, an xarray and a dask array in one message: each plugin carries its part."""
    pint = pytest.importorskip("pint")
    xarray = pytest.importorskip("xarray")
    import dask.array as da

    units = pint.get_application_registry()
    message = {"q": units.Quantity(np.arange(3.0), "s"), "x": xarray.DataArray(np.ones(2), dims=["a"]),
               "d": (da.arange(4, chunks=2),)}
    codec = Codec()
    received = codec.decode([bytearray(frame) for frame in codec.encode(message)])
    assert received["q"].units == units.second and received["q"].magnitude.tolist() == [0.0, 1.0, 2.0]
    xarray.testing.assert_identical(received["x"], message["x"])
    assert received["d"][0].compute().tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("codec_id", sorted(LIBRARIES))
def test_each_library_round_trips_in_json_mode(codec_id):
    library, module, make = LIBRARIES[codec_id]
    pytest.importorskip(library)
    value = eval(make, {"numpy": np, module: sys.modules[module]})
    codec = Codec(serializer="json")
    frames = codec.encode(value)
    assert bytes(frames[0][:1]) == b"{"
    received = codec.decode([bytearray(frame) for frame in frames])
    assert type(received) is type(value)
    if codec_id == "zarr.Array":
        received, value = received[...], value[...]
    elif codec_id == "dask.Array":
        received, value = received.compute(), value.compute()
    elif codec_id == "pint.Quantity":
        assert received.units == value.units
        received, value = received.magnitude, value.magnitude
    np.testing.assert_array_equal(np.asarray(received), np.asarray(value))
