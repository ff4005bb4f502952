"""torch.Tensor as raw storage bytes in an out-of-band frame (never ``torch.save``, never pickle).

A tensor travels as ``("torch.Tensor", raw, dtype, shape, device, requires_grad)``: ``raw`` is a
flat byte view (a memoryview) of the tensor's contiguous elements, so a contiguous CPU tensor is
sent without a copy (a non-contiguous view is made contiguous once; a GPU tensor is copied to the
CPU once). Bytes are what let dtypes numpy lacks, such as bfloat16, travel too: the receiver reads
them with torch's own dtype.

On receive the tensor is built on the received frame itself (``torch.frombuffer``; a tensor of
more than one dimension is shaped by numpy and handed over with ``torch.from_numpy``, 2.1 µs
instead of frombuffer and torch's reshape, 4.6 µs), so a tensor that stays on the CPU costs no
copy; the device table of :mod:`torch_devices` decides where it goes. Every received field is
checked: the dtype must be a plain numeric one from the list below, the shape must match the
byte count exactly.

Both directions call as few torch functions as they can. Each call passes through torch's
dispatcher, and a message sent one at a time meets a cold CPU: in lock-step, each call costs
5–10 µs, and the calls, not the bytes, were most of a 1 MB tensor's latency. For the same reason
the plugin has layouts (docs/plugins.md): a stream of CPU tensors of one dtype and shape has its
fields packed, and its received fields checked, once; each further tensor costs ``numpy()`` to
send and ``torch.frombuffer`` to receive.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch

from wrapyfi_like.encoding.arrays import flat_bytes, is_shape
from wrapyfi_like.exceptions import ConfigurationError, DecodeError, EncodeError
from wrapyfi_like.plugins.torch_devices import DeviceRouter, build_device_map, normalise_device
from wrapyfi_like.utils.core_utils import Plugin, PluginRegistrar

_DTYPE_NAMES = (
    "bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
    "float16", "bfloat16", "float32", "float64", "complex32", "complex64", "complex128",
    "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu",
)
DTYPES: dict[str, torch.dtype] = {
    name: getattr(torch, name) for name in _DTYPE_NAMES if isinstance(getattr(torch, name, None), torch.dtype)
}
_NAMES = {dtype: name for name, dtype in DTYPES.items()}
_ITEMSIZES = {name: dtype.itemsize for name, dtype in DTYPES.items()}
_MAX_DEVICE_CHARS = 64
_ARRAY_DTYPES = {DTYPES[name]: np.dtype(name) for name in (
    "bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
    "float16", "float32", "float64", "complex64", "complex128",
) if name in DTYPES}
"""numpy's dtype of each torch dtype numpy has (the one ``numpy()`` gives), so a received frame
can be shaped by numpy (see ``from_layout``); bfloat16, complex32 and float8 have none."""


@PluginRegistrar.register(types=(torch.Tensor,))
class TorchTensor(Plugin):
    """Sends tensors of any plain dtype, shape, device and layout of strides.

    ``load_torch_device`` and ``map_torch_devices`` (listener kwargs) choose where received tensors
    go; both are checked here, so a bad setting fails when the listener is created.
    """

    codec_id = "torch.Tensor"

    def __init__(self, load_torch_device: Any = None, map_torch_devices: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._router = DeviceRouter(build_device_map(load_torch_device, map_torch_devices))
        self._targets: dict[str, str] = {}  # wire device name -> target, see _target

    def encode(self, obj: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[bool, dict]:
        name = _NAMES.get(obj.dtype)
        if name is None:
            raise EncodeError(f"torch tensors of dtype {obj.dtype} cannot be sent; supported: {', '.join(DTYPES)}")
        try:
            array = obj.numpy()  # a CPU tensor without grad, conjugate or negative bit, of a dtype numpy has
        except (RuntimeError, TypeError):
            return True, self._encode_general(obj, name)
        return True, {"__wrapyfi__": (self.codec_id, flat_bytes(array), name, list(array.shape), "cpu", False)}

    def _encode_general(self, obj: torch.Tensor, name: str) -> dict:
        """Any other tensor: on another device, needing grad, with a lazy bit, or of a dtype numpy lacks."""
        if obj.layout != torch.strided:
            raise EncodeError(f"torch tensors with layout {obj.layout} cannot be sent; convert with .to_dense() first")
        if obj.device.type == "meta":
            raise EncodeError("torch tensors on the 'meta' device have no data to send")
        data = obj.detach().cpu().resolve_conj().resolve_neg().contiguous()
        raw = flat_bytes(data.reshape(-1).view(torch.uint8).numpy())
        return {"__wrapyfi__": (self.codec_id, raw, name, list(obj.shape), _device_name(obj.device), obj.requires_grad)}

    def encode_layout(self, obj: torch.Tensor) -> Optional[tuple[memoryview, tuple]]:
        """The bytes of a tensor that :meth:`encode` sends as they are (on the CPU, without grad or
        lazy bits, of a dtype numpy has), and ``(dtype, shape)``, which its other fields follow
        from: the codec packs those fields once per layout (``None``: any other tensor)."""
        try:
            array = obj.numpy()
        except (RuntimeError, TypeError):
            return None
        return flat_bytes(array), (obj.dtype, array.shape)

    def decode(self, obj_type: str, obj_full: tuple, *args: Any, **kwargs: Any) -> tuple[bool, torch.Tensor]:
        return True, self.from_layout(self.decode_layout(obj_full), obj_full[1])

    def decode_layout(self, obj_full: tuple) -> tuple[torch.dtype, tuple, str, bool, Optional[np.dtype]]:
        """Check every received field; return what :meth:`from_layout` needs to build the tensor.
        The codec keeps it for the next message with the same fields, so this runs once per stream."""
        if len(obj_full) != 6:
            raise DecodeError(f"a torch.Tensor payload has 6 fields, got {len(obj_full)}")
        _, raw, name, shape, device, requires_grad = obj_full
        dtype = DTYPES.get(name) if type(name) is str else None
        if dtype is None:
            raise DecodeError(f"torch dtype {name!r:.40} is not allowed on the wire")
        if type(raw) is not memoryview or raw.format != "B":
            raise DecodeError("torch.Tensor data must be a byte buffer")
        if not is_shape(shape):
            raise DecodeError(f"torch.Tensor shape must be a list of non-negative ints, got {shape!r:.80}")
        if requires_grad is not False and (requires_grad is not True or not (dtype.is_floating_point or dtype.is_complex)):
            raise DecodeError(f"bad requires_grad {requires_grad!r:.40} for a {name} tensor")
        if type(device) is not str or len(device) > _MAX_DEVICE_CHARS:
            raise DecodeError(f"bad torch device {device!r:.80}")
        expected = math.prod(shape) * _ITEMSIZES[name]
        if raw.nbytes != expected:
            raise DecodeError(f"a {name} tensor of shape {tuple(shape)} needs {expected} bytes, frame has {raw.nbytes}")
        target = self._targets.get(device) or self._target(device)
        return dtype, tuple(shape), target, requires_grad, _ARRAY_DTYPES.get(dtype)

    def from_layout(self, layout: tuple[torch.dtype, tuple, str, bool, Optional[np.dtype]],
                    raw: memoryview) -> torch.Tensor:
        """The tensor on ``raw`` (of the size the layout was checked with), on its target device."""
        dtype, shape, target, requires_grad, array_dtype = layout
        if array_dtype is not None and len(shape) > 1 and raw.nbytes and not raw.readonly:
            # numpy shapes the frame in 0.5 µs where torch's reshape costs 3 µs (its dispatcher);
            # from_numpy then shares the frame's memory as frombuffer does
            tensor = torch.from_numpy(np.ndarray(shape, array_dtype, raw))
        else:
            tensor = _tensor_on(raw, dtype, shape)
        if target != "cpu":
            tensor = tensor.to(target)
        return tensor.requires_grad_() if requires_grad else tensor

    def _target(self, device: str) -> str:
        """Where tensors sent from ``device`` (a name off the wire) go. As many names as the router
        remembers are kept, so a tensor costs one lookup and a peer sending ever new names cannot
        grow the table."""
        try:
            source = normalise_device(device)
        except ConfigurationError:
            raise DecodeError(f"bad torch device {device!r}") from None
        target = self._router.target(source)
        if len(self._targets) < DeviceRouter.REMEMBERED_SOURCES:
            self._targets[device] = target
        return target


def _tensor_on(raw: memoryview, dtype: torch.dtype, shape: tuple) -> torch.Tensor:
    """A tensor whose memory is ``raw`` (copied only when the frame is read-only: tensors are writable)."""
    if raw.nbytes == 0:
        return torch.empty(shape, dtype=dtype)
    if raw.readonly:
        raw = memoryview(bytearray(raw))
    tensor = torch.frombuffer(raw, dtype=dtype)
    return tensor if len(shape) == 1 else tensor.reshape(shape)


_DEVICE_NAMES: dict[torch.device, str] = {}
"""The wire name of each device this process has sent from (a few at most): parsing a device
costs about as much as the rest of encoding a small tensor."""


def _device_name(device: torch.device) -> str:
    name = _DEVICE_NAMES.get(device)
    if name is None:
        name = _DEVICE_NAMES[device] = normalise_device(device)
    return name

