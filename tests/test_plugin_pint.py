"""The pint plugin: magnitudes through the codec, units as a checked plain unit expression."""

import subprocess
import sys

import numpy as np
import pytest

pint = pytest.importorskip("pint")

from scientific_samples import decode_with_fields, payload  # noqa: E402
from wrapyfi_like.encoding import Codec  # noqa: E402
from wrapyfi_like.exceptions import DecodeError  # noqa: E402
from wrapyfi_like.plugins import pint_quantity  # noqa: E402
from wrapyfi_like.testing import PluginConformance, round_trip  # noqa: E402

units = pint.get_application_registry()


def _assert_quantity_equal(expected, actual):
    assert isinstance(actual, pint.Quantity) and actual.units == expected.units
    assert type(actual.magnitude) is type(expected.magnitude)
    if isinstance(expected.magnitude, np.ndarray):
        assert actual.magnitude.dtype == expected.magnitude.dtype
        np.testing.assert_array_equal(actual.magnitude, expected.magnitude)
    else:
        assert actual.magnitude == expected.magnitude


class TestPintConformance(PluginConformance):
    plugin = pint_quantity.PintQuantity

    def samples(self):
        return {
            "int": units.Quantity(42, "meter"),
            "float per second squared": units.Quantity(9.81, "m / s ** 2"),
            "complex": units.Quantity(1 + 2j, "volt"),
            "offset unit": units.Quantity(21.5, "degC"),
            "fractional exponent": units.Quantity(2.0, "m ** 0.5"),
            "a third as exponent": 2.0 * units.meter ** (1 / 3),
            "dimensionless": units.Quantity(3, ""),
            "numpy scalar": units.Quantity(np.float32(1.5), "kg"),
            "float32 array": units.Quantity(np.arange(6, dtype=np.float32).reshape(2, 3), "newton * meter"),
        }

    def assert_equal(self, expected, actual):
        _assert_quantity_equal(expected, actual)

    def empty_sample(self):
        return units.Quantity(np.zeros((0, 3)), "second")

    def non_contiguous_sample(self):
        return units.Quantity(np.arange(40.0).reshape(4, 10)[::2, ::-3], "ampere")

    def read_only_sample(self):
        values = np.arange(8, dtype=np.int16)
        values.flags.writeable = False
        return units.Quantity(values, "mol")

    def large_sample(self):
        return units.Quantity(np.ones(1_000_000), "pascal")


def test_units_do_not_depend_on_the_registry_display_format():
    registry = pint.UnitRegistry()
    registry.formatter.default_format = "~P"
    quantity = registry.Quantity(3.0, "m/s**2")
    assert str(quantity.units) == "m/s²"  # what str() would have sent
    assert payload(quantity)[3] == "meter * second ** -2"
    _assert_quantity_equal(units.Quantity(3.0, "m/s**2"), round_trip(Codec(), quantity))


def test_received_quantities_use_the_application_registry():
    received = round_trip(Codec(), pint.UnitRegistry().Quantity(2, "km"))
    assert received + units.Quantity(1, "m") == units.Quantity(2001, "m")


@pytest.mark.parametrize("text", [
    "2 * meter", "meter / second", "(meter)", "meter ** 99999", "meter **", "meter; second",
    "__import__('os')", "meter.__class__", "", " meter", "m" * 600,
])
def test_unit_strings_that_are_not_plain_unit_expressions_are_refused(text):
    quantity = units.Quantity(1, "m")
    with pytest.raises(DecodeError, match="plain unit expression"):
        decode_with_fields(quantity, ["pint.Quantity", 1, None, text])


def test_unknown_unit_names_are_a_decode_error():
    with pytest.raises(DecodeError, match="furlongish"):
        decode_with_fields(units.Quantity(1, "m"), ["pint.Quantity", 1, None, "furlongish"])


def test_magnitudes_other_than_numbers_and_arrays_are_refused():
    for magnitude in ("12", [1, 2], {"a": 1}, None):
        with pytest.raises(DecodeError, match="magnitude"):
            decode_with_fields(units.Quantity(1, "m"), ["pint.Quantity", magnitude, None, "meter"])


@pytest.mark.timeout(60)
def test_listeners_decoding_at_once_in_a_fresh_process_all_see_the_units():
    """pint's lazy default registry, first used by several threads at once, knows no units; the
    plugin must not turn that race into DecodeErrors."""
    frames = [bytes(memoryview(frame).cast("B")) for frame in Codec().encode(units.Quantity(1.5, "m/s"))]
    script = (
        "import threading, pint; from wrapyfi_like.encoding import Codec\n"
        "results = []\n"
        f"def listen():\n    results.append(str(Codec().decode({frames!r}).units))\n"
        "threads = [threading.Thread(target=listen) for _ in range(4)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print(results)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == str(["meter / second"] * 4), result.stderr[-2000:]
