"""An external plugin: fractions.Fraction and decimal.Decimal, sent exactly.

wrapyfi_like finds this file only because its parent folder is listed in WRAPYFI_PLUGIN_PATHS
(``WRAPYFI_PLUGIN_PATHS=examples/encoders``): every ``<path>/plugins/*.py`` is imported then.
Both sides need it: the publisher to encode, the listener to decode.

The payloads are small, so they travel inside the message header as plain values (ints and a
string); a plugin for large data would return bytes or numpy arrays instead (docs/plugins.md).
"""

from decimal import Decimal, InvalidOperation
from fractions import Fraction

from wrapyfi_like.exceptions import DecodeError
from wrapyfi_like.utils.core_utils import Plugin, PluginRegistrar

MAX_DECIMAL_CHARS = 4096  # received text is untrusted: bound what Decimal() will parse


@PluginRegistrar.register(types=(Fraction,))
class ExactFraction(Plugin):
    codec_id = "examples.fractions.Fraction"

    def encode(self, obj, *args, **kwargs):
        return True, {"__wrapyfi__": (self.codec_id, obj.numerator, obj.denominator)}

    def decode(self, obj_type, obj_full, *args, **kwargs):
        if len(obj_full) != 3 or type(obj_full[1]) is not int or type(obj_full[2]) is not int or obj_full[2] <= 0:
            raise DecodeError(f"bad Fraction payload {obj_full!r:.80}")
        return True, Fraction(obj_full[1], obj_full[2])


@PluginRegistrar.register(types=(Decimal,))
class ExactDecimal(Plugin):
    codec_id = "examples.decimal.Decimal"

    def encode(self, obj, *args, **kwargs):
        return True, {"__wrapyfi__": (self.codec_id, str(obj))}

    def decode(self, obj_type, obj_full, *args, **kwargs):
        if len(obj_full) != 2 or not isinstance(obj_full[1], str) or len(obj_full[1]) > MAX_DECIMAL_CHARS:
            raise DecodeError(f"bad Decimal payload {obj_full!r:.80}")
        try:
            return True, Decimal(obj_full[1])
        except InvalidOperation:
            raise DecodeError(f"not a decimal number: {obj_full[1]!r:.80}") from None
