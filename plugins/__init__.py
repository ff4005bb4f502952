"""Built-in plugins, installed as ``wrapyfi_like.plugins``.

This module is only an index: importing it imports no plugin and no third-party library. Each
entry names the module, the libraries whose objects it encodes, the codec ids it decodes and the
kwargs it takes; :mod:`wrapyfi_like.utils.plugin_discovery` loads a module on first need.
"""

from wrapyfi_like.utils.plugin_discovery import BuiltinPlugin

BUILTIN_PLUGINS: tuple[BuiltinPlugin, ...] = (
    BuiltinPlugin("torch_tensor", ("torch",), ("torch.Tensor",), ("load_torch_device", "map_torch_devices")),
    BuiltinPlugin("pandas_data", ("pandas",), ("pandas.DataFrame", "pandas.Series")),
    BuiltinPlugin(
        "pyarrow_data", ("pyarrow",),
        ("pyarrow.Array", "pyarrow.ChunkedArray", "pyarrow.RecordBatch", "pyarrow.Table"),
    ),
    BuiltinPlugin("pillow_image", ("PIL",), ("PIL.Image",), ("pillow_encoded",)),
    BuiltinPlugin("xarray_data", ("xarray",), ("xarray.DataArray", "xarray.Dataset")),
    BuiltinPlugin("dask_data", ("dask",), ("dask.Array", "dask.DataFrame")),
    BuiltinPlugin("zarr_data", ("zarr",), ("zarr.Array", "zarr.Group")),
    BuiltinPlugin("pint_quantity", ("pint",), ("pint.Quantity",)),
    BuiltinPlugin("jax_array", ("jax",), ("jax.Array",), ("load_jax_device", "map_jax_devices")),
)
