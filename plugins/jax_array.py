"""JAX arrays as raw bytes in a frame of their own, placed on a device the listener chooses.

An array travels as ``("jax.Array", raw, dtype, shape, device)``: ``raw`` is the array's bytes in
C order as a flat uint8 array. ``np.asarray`` of an array on the CPU is a view of JAX's own
buffer, so sending one costs no copy of the payload; an array on an accelerator is copied to the
host once, and a sharded array is gathered. Bytes, not numpy's dtype codes, are what let the dtypes
numpy lacks (``bfloat16``, the float8 types) travel: the receiver reads them with JAX's dtype.

On receive the bytes are viewed with the dtype and put on a device (``jax.device_put``: JAX
copies them into its own buffer). ``load_jax_device`` names the device for every array and
``map_jax_devices`` one per sender device (``{"gpu:0": "cpu", "default": "cpu:0"}``); the targets
are resolved when the listener is created, so a target this process lacks fails then (the
sources are the sender's devices, which need not exist here). Without them
an array goes to JAX's default device.

A dtype this process's JAX would silently narrow (``float64`` and ``int64`` while
``jax_enable_x64`` is off) is refused with a :class:`DecodeError` rather than changed.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from wrapyfi_like.encoding.arrays import is_shape
from wrapyfi_like.exceptions import ConfigurationError, DecodeError, EncodeError
from wrapyfi_like.utils.core_utils import Plugin, PluginRegistrar

_DTYPE_NAMES = (
    "bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
    "float16", "bfloat16", "float32", "float64", "complex64", "complex128",
    "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz",
)
DTYPES: dict[str, np.dtype] = {name: np.dtype(getattr(jnp, name)) for name in _DTYPE_NAMES if hasattr(jnp, name)}
"""The dtypes that may travel, by name (JAX's own names; ml_dtypes provides the ones numpy lacks)."""
_NAMES = {dtype: name for name, dtype in DTYPES.items()}
DEFAULT_KEY = "default"
_MAX_DEVICE_CHARS = 64


@PluginRegistrar.register(types=(jax.Array,))
class JaxArray(Plugin):
    """Sends JAX arrays of any plain dtype and shape; see the module docstring for devices."""

    codec_id = "jax.Array"

    def __init__(self, load_jax_device: Any = None, map_jax_devices: Optional[Mapping[Any, Any]] = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._targets = _device_table(load_jax_device, map_jax_devices)

    def encode(self, obj: jax.Array, *args: Any, **kwargs: Any) -> tuple[bool, dict]:
        name = _NAMES.get(np.dtype(obj.dtype))
        if name is None:
            raise EncodeError(f"JAX arrays of dtype {obj.dtype} cannot be sent; supported: {', '.join(DTYPES)}")
        if not obj.is_fully_addressable:
            raise EncodeError("a JAX array sharded over other processes cannot be sent from one of them")
        raw = np.ascontiguousarray(np.asarray(obj)).reshape(-1).view(np.uint8)
        devices = obj.devices()
        device = _device_name(next(iter(devices))) if len(devices) == 1 else DEFAULT_KEY
        return True, {"__wrapyfi__": (self.codec_id, raw, name, list(obj.shape), device)}

    def decode(self, obj_type: str, obj_full: tuple, *args: Any, **kwargs: Any) -> tuple[bool, jax.Array]:
        if len(obj_full) != 5:
            raise DecodeError(f"a jax.Array payload has 5 fields, got {len(obj_full)}")
        _, raw, name, shape, device = obj_full
        dtype = DTYPES.get(name) if type(name) is str else None
        if dtype is None:
            raise DecodeError(f"JAX dtype {name!r:.40} is not allowed on the wire")
        if jax.dtypes.canonicalize_dtype(dtype) != dtype:
            raise DecodeError(f"this process's JAX would narrow {name} to {jax.dtypes.canonicalize_dtype(dtype)}; "
                              "set jax.config.update('jax_enable_x64', True) to receive it")
        if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8 or raw.ndim != 1:
            raise DecodeError("jax.Array data must be a flat byte array")
        if not is_shape(shape):
            raise DecodeError(f"jax.Array shape must be a list of non-negative ints, got {shape!r:.80}")
        if type(device) is not str or len(device) > _MAX_DEVICE_CHARS:
            raise DecodeError(f"bad JAX device {device!r:.80}")
        expected = math.prod(shape) * dtype.itemsize
        if raw.nbytes != expected:
            raise DecodeError(f"a {name} array of shape {tuple(shape)} needs {expected} bytes, frame has {raw.nbytes}")
        target = self._targets.get(device, self._targets.get(DEFAULT_KEY))
        return True, jax.device_put(raw.view(dtype).reshape(tuple(shape)), target)


def _device_name(device: Any) -> str:
    return f"{device.platform}:{device.id}"


def _device_table(load_jax_device: Any, map_jax_devices: Optional[Mapping[Any, Any]]) -> dict[str, Any]:
    """``{source device name: target jax.Device}`` from both settings, every target resolved now."""
    if map_jax_devices is not None and not isinstance(map_jax_devices, Mapping):
        raise ConfigurationError(f"map_jax_devices must be a mapping {{source: target}}, got {map_jax_devices!r:.200}")
    table: dict[str, Any] = {}
    for source, target in (map_jax_devices or {}).items():
        key = source if source == DEFAULT_KEY else source_name(source)
        if key in table:
            raise ConfigurationError(f"map_jax_devices names the source device {key!r} twice")
        table[key] = resolve_device(target)
    if load_jax_device is not None:
        if DEFAULT_KEY in table:
            raise ConfigurationError("load_jax_device and map_jax_devices['default'] both say where arrays go: give one")
        table[DEFAULT_KEY] = resolve_device(load_jax_device)
    return table


def source_name(device: Any) -> str:
    """A sender's device as it travels (``"gpu:0"``), from a Device or ``"gpu"``/``"gpu:0"``; the
    sender's devices need not exist here, so this only reads the text."""
    if isinstance(device, jax.Device):
        return _device_name(device)
    if not isinstance(device, str) or not device:
        raise ConfigurationError(f"a JAX device must be a jax.Device or a string such as 'gpu:0', not {device!r:.80}")
    platform, _, index = device.partition(":")
    if not platform.isidentifier() or not (index or "0").isdigit():
        raise ConfigurationError(f"{device!r:.80} is not a JAX device name such as 'cpu', 'gpu:1'")
    return f"{platform}:{int(index or 0)}"


def resolve_device(device: Any) -> Any:
    """The ``jax.Device`` that ``device`` names (a Device, ``"cpu"``, ``"cpu:1"``, ``"gpu:0"``)."""
    if isinstance(device, jax.Device):
        return device
    if not isinstance(device, str):
        raise ConfigurationError(f"a JAX device must be a jax.Device or a string such as 'cpu:0', not {device!r:.80}")
    platform, _, index = device.partition(":")
    try:
        devices = jax.devices(platform)
        return devices[int(index or 0)]
    except (RuntimeError, ValueError, IndexError) as error:
        raise ConfigurationError(f"this process has no JAX device {device!r}: {error}") from None
