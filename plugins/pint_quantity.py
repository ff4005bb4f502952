"""pint Quantity as its magnitude (through the codec) and its units as a plain unit expression.

A quantity travels as ``("pint.Quantity", magnitude, shape, units)``. The magnitude is a numpy
array (a raw buffer in a frame of its own, dtype and shape exact) or a Python or numpy number;
other magnitudes (lists become arrays in pint; Decimal, uncertainties, dask) are an
:class:`EncodeError` or refused on receive. ``shape`` repeats an array magnitude's
shape (``None`` for a scalar), so a cut array cannot pass as a shorter quantity.

The units are written here, from the quantity's unit items, as ``"meter * second ** -2"``: never
with the registry's display format, which a user may have set to something (``"~P"``: ``m/s²``)
that another process cannot parse back. On receive the string must be such a plain product of
unit names with integer or decimal exponents before pint's parser sees it, and it is parsed by
pint's application registry (``pint.set_application_registry`` chooses it), so a received
quantity can be combined with the receiver's own. A unit the registry does not define is a
:class:`DecodeError`.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import numpy as np
import pint

from wrapyfi_like.exceptions import DecodeError, EncodeError
from wrapyfi_like.utils.core_utils import Plugin, PluginRegistrar

MAX_UNITS_CHARS = 512
"""Characters a received unit expression may have."""
_NAME = r"[^\W\d]\w*"
_EXPONENT = r"-?\d{1,3}(?:\.\d{1,17})?"
_FACTOR = rf"{_NAME}(?: \*\* {_EXPONENT})?"
UNITS_SYNTAX = re.compile(rf"{_FACTOR}(?: \* {_FACTOR})*")
"""What a received unit expression may be: unit names, each with an optional exponent, joined by
``*``. No numbers as factors, no parentheses, no function calls."""
DIMENSIONLESS = "dimensionless"
_SCALARS = (bool, int, float, complex)
_REGISTRY_LOCK = threading.Lock()
"""pint's default application registry loads its definitions on first use, and threads using it
at once then see no units at all (``UndefinedUnitError('meter')``): listeners decode on threads of
their own, so units are parsed under this lock."""


@PluginRegistrar.register(types=(pint.Quantity,))
class PintQuantity(Plugin):
    """Sends any quantity whose magnitude the codec can send (numbers, numpy arrays, …)."""

    codec_id = "pint.Quantity"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        with _REGISTRY_LOCK:  # load the registry now, not on the first message
            pint.get_application_registry().parse_units(DIMENSIONLESS)

    def encode(self, obj: pint.Quantity, *args: Any, **kwargs: Any) -> tuple[bool, dict]:
        magnitude = obj.magnitude
        shape = list(magnitude.shape) if isinstance(magnitude, np.ndarray) else None
        if shape is None and type(magnitude) not in _SCALARS and not isinstance(magnitude, np.generic):
            raise EncodeError(f"pint quantities with a {type(magnitude).__qualname__} magnitude cannot be sent; "
                              "a magnitude must be a number or a numpy array")
        return True, {"__wrapyfi__": (self.codec_id, magnitude, shape, units_to_wire(obj))}

    def decode(self, obj_type: str, obj_full: tuple, *args: Any, **kwargs: Any) -> tuple[bool, pint.Quantity]:
        if len(obj_full) != 4:
            raise DecodeError(f"a pint.Quantity payload has 4 fields, got {len(obj_full)}")
        _, magnitude, shape, units = obj_full
        if isinstance(magnitude, np.ndarray):
            if shape != list(magnitude.shape):
                raise DecodeError(f"pint magnitude of shape {magnitude.shape} announced as {shape!r:.80}")
        elif type(magnitude) not in _SCALARS and not isinstance(magnitude, np.generic):
            raise DecodeError(f"a pint magnitude must be a number or a numpy array, got {type(magnitude).__name__}")
        elif shape is not None:
            raise DecodeError(f"a scalar pint magnitude has no shape, got {shape!r:.80}")
        text = units_from_wire(units)
        with _REGISTRY_LOCK:
            registry = pint.get_application_registry()
            return True, registry.Quantity(magnitude, registry.parse_units(text))


def units_to_wire(quantity: pint.Quantity) -> str:
    """``quantity``'s units as ``"name ** exponent * …"``, independent of any display format."""
    factors = []
    for name, exponent in quantity.unit_items():
        if float(exponent).is_integer():
            exponent = int(exponent)
        factors.append(name if exponent == 1 else f"{name} ** {exponent}")
    text = " * ".join(factors) or DIMENSIONLESS
    if UNITS_SYNTAX.fullmatch(text) is None:
        raise EncodeError(f"pint units {text!r:.200} cannot be written as a plain unit expression")
    return text


def units_from_wire(units: Any) -> str:
    """A received unit expression, checked before pint parses it."""
    if type(units) is not str or len(units) > MAX_UNITS_CHARS or UNITS_SYNTAX.fullmatch(units) is None:
        raise DecodeError(f"pint units must be a plain unit expression such as 'meter * second ** -2', "
                          f"got {units!r:.80}")
    return units
