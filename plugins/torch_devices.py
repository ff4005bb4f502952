"""Where received tensors go: ``load_torch_device`` and ``map_torch_devices`` made into one table.

The sender writes the tensor's device as a string (``"cpu"``, ``"cuda:1"``). The listener's
settings say where each source device goes; ``"default"`` catches every device the map does not
name, and ``load_torch_device=X`` alone means ``{"default": X}``. Users write devices as
``torch.device`` objects, strings or ints, so every key and value is normalised to one string
first; otherwise ``torch.device("cuda", 1)`` and ``"cuda:1"`` would be different keys and a
tensor could silently miss its mapping. A device with no index means index 0 (a sender always
reports one), and ``cpu`` never has one.

All checks run when the table is built (when the listener is created), never per message:
a source device given two different targets, or a target this process does not have, is a
:class:`ConfigurationError` then.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

import torch

from wrapyfi_like.exceptions import ConfigurationError

DEFAULT_KEY = "default"

logger = logging.getLogger("wrapyfi_like.plugins.torch")


def normalise_device(device: Any) -> str:
    """The canonical string of ``device`` (``torch.device``, ``"cuda:1"``, ``"cuda"`` or an int)."""
    if isinstance(device, bool) or not isinstance(device, (str, int, torch.device)):
        raise ConfigurationError(f"a torch device must be a torch.device, str or int, not {device!r}")
    if isinstance(device, int):
        accelerator = torch.accelerator.current_accelerator()
        device = torch.device(accelerator.type if accelerator is not None else "cuda", device)
    try:
        parsed = torch.device(device)
    except RuntimeError as error:
        raise ConfigurationError(f"{device!r} is not a torch device: {error}") from None
    if parsed.type == "cpu":
        return "cpu"
    return f"{parsed.type}:{0 if parsed.index is None else parsed.index}"


def device_available(device: str) -> bool:
    """Whether this process can put a tensor on ``device`` (a normalised string)."""
    if device == "cpu":
        return True
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError):  # AssertionError: "Torch not compiled with CUDA enabled"
        return False
    return True


def build_device_map(load_torch_device: Any = None,
                     map_torch_devices: Optional[Mapping[Any, Any]] = None) -> dict[str, str]:
    """Merge and normalise both settings into ``{source: target}``; the inputs are not modified."""
    if map_torch_devices is not None and not isinstance(map_torch_devices, Mapping):
        raise ConfigurationError(
            f"map_torch_devices must be a mapping of source device to target device, "
            f"not {type(map_torch_devices).__name__}"
        )
    pairs = [(source, target) for source, target in (map_torch_devices or {}).items()]
    if load_torch_device is not None:
        pairs.append((DEFAULT_KEY, load_torch_device))
    table: dict[str, str] = {}
    for source, target in pairs:
        key = DEFAULT_KEY if source == DEFAULT_KEY else normalise_device(source)
        value = normalise_device(target)
        if table.get(key, value) != value:
            raise ConfigurationError(
                f"torch device {key!r} is mapped to both {table[key]!r} and {value!r} "
                f"(after merging load_torch_device={load_torch_device!r} and "
                f"map_torch_devices={map_torch_devices!r}); give it one target"
            )
        table[key] = value
    for target in set(table.values()):
        if not device_available(target):
            raise ConfigurationError(
                f"received tensors are mapped to torch device {target!r}, which this process "
                f"does not have; map them to a device it has (e.g. 'cpu')"
            )
    return table


class DeviceRouter:
    """Picks the device each received tensor goes to, from a table built by :func:`build_device_map`.

    A source device that the table does not cover and that this process lacks (a ``cuda:1``
    tensor reaching a CPU-only listener) goes to the CPU, with one warning per source device.
    Source devices come from the network, so at most :data:`REMEMBERED_SOURCES` are remembered;
    past that, each further unknown device is checked and warned about once per tensor.
    """

    REMEMBERED_SOURCES = 64

    def __init__(self, table: dict[str, str]) -> None:
        self._table = table
        self._fallbacks: dict[str, str] = {}

    def target(self, source: str) -> str:
        target = self._table.get(source) or self._table.get(DEFAULT_KEY)
        if target is not None:
            return target
        fallback = self._fallbacks.get(source)
        if fallback is None:
            fallback = source if device_available(source) else "cpu"
            if fallback != source:
                logger.warning(
                    "received tensors from torch device %r, which this process does not have; "
                    "loading them on the CPU (set load_torch_device or map_torch_devices to choose)",
                    source,
                )
            if len(self._fallbacks) < self.REMEMBERED_SOURCES:
                self._fallbacks[source] = fallback
        return fallback
