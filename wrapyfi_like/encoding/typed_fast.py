"""The typed fast path: a msgspec ``Struct`` of plain fields encoded and decoded by msgspec in one step.

A typed message costs the codec's walk plus msgspec's ``convert`` on each side; msgspec's own
msgpack encoder and typed decoder do the same work in one C pass (the 1 KB message of
``benchmarks/serializers.py``: encode 0.8 µs instead of 7, decode and validate 2.5 µs instead of 8).
msgspec writes a Struct as the map of its fields, which is what the codec writes for the same
map, so only the header's start ``[FORMAT_VERSION, 0, …]`` is added and the bytes on the wire are
the codec's: an untyped listener, a JSON-mode peer and the wire's golden examples see no change.

Only where that equality holds by construction: a Struct (not ``array_like``, no tag, no
renamed field, no ``omit_defaults``) whose fields are str, int, float, bool, None, lists and
dicts of those, ``Optional`` of those, and such Structs (:func:`fast_path` says which). bytes
are out: the codec sends them as buffers of their own. Per message the value must hold exactly
those types (a tuple in a list field, an ``IntEnum`` or another subclass is written differently
by the codec) and ints within msgpack's 64 bits; anything else takes the codec, as before.

Receiving keeps the codec's bounds: the header's size is checked first, the type bounds the
depth, msgspec checks every length against the bytes left and refuses extension values (code -1
included) where the type has none. A message msgspec refuses is decoded again by the codec and
the type's validator, so a refusal reads and counts exactly as before (the field path, ``on_invalid``,
``malformed``). A field the type does not have is skipped unread, as msgspec skips it.
"""

from __future__ import annotations

import operator
from typing import Any, Callable, Optional, Sequence

from wrapyfi_like.encoding.codec import FORMAT_VERSION
from wrapyfi_like.limits import MAX_HEADER_SIZE

HEADER_START = bytes([0x93, FORMAT_VERSION, 0])
"""The codec's header before the value when a message has no buffers: ``[FORMAT_VERSION, 0, …]``."""
_BODY_LIMIT = MAX_HEADER_SIZE - len(HEADER_START)


class TypedFast:
    """One Struct type's msgspec encoder and decoder, and the check that a value is written by
    msgspec as the codec writes it."""

    def __init__(self, hint: type, exact: Callable[[Any], bool]) -> None:
        import msgspec

        self.hint = hint
        self._exact = exact
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode = msgspec.msgpack.Decoder(hint).decode
        self._errors = (msgspec.DecodeError, msgspec.ValidationError)

    def encode(self, value: Any) -> Optional[list]:
        """``[header]`` for a value already checked against the type, or None: the codec's turn."""
        if not self._exact(value):
            return None
        try:
            body = self._encode(value)
        except OverflowError:  # an int beyond 64 bits: the codec's BIGINT
            return None
        return [HEADER_START + body] if len(body) <= _BODY_LIMIT else None

    def decode(self, frames: Sequence[Any]) -> Any:
        """The validated value of ``frames``, or None when the codec and validator must decide."""
        if len(frames) != 1:
            return None
        header = memoryview(frames[0])
        if header.nbytes > MAX_HEADER_SIZE or header[:3] != HEADER_START:
            return None
        try:
            return self._decode(header[3:])
        except self._errors:
            return None


def fast_path(hint: Any) -> Optional[TypedFast]:
    """The fast path of ``hint``, or None when it is not a Struct of plain fields."""
    if not isinstance(hint, type) or not hasattr(hint, "__struct_fields__"):
        return None
    import msgspec

    try:
        info = msgspec.inspect.type_info(hint)
    except Exception:  # the validator reports it, as before
        return None
    exact = _checker(info, set())
    return None if exact is None else TypedFast(hint, exact)


_SCALARS = {"StrType": str, "IntType": int, "BoolType": bool}


def _checker(info: Any, open_structs: set) -> Optional[Callable[[Any], bool]]:
    """Whether a value of the type ``info`` (msgspec.inspect) holds only types msgspec writes as
    the codec does; None if the type allows others."""
    kind = type(info).__name__
    if kind in _SCALARS:
        scalar = _SCALARS[kind]
        return lambda value: type(value) is scalar
    if kind == "FloatType":  # an int passes the validator too, and both write it as an int
        return lambda value: type(value) is float or type(value) is int
    if kind == "NoneType":
        return lambda value: value is None
    if kind == "UnionType":
        others = [item for item in info.types if type(item).__name__ != "NoneType"]
        if len(others) != 1 or len(info.types) != 2:
            return None
        inner = _checker(others[0], open_structs)
        return None if inner is None else lambda value: value is None or inner(value)
    if kind == "ListType":
        return _list_checker(info.item_type, open_structs)
    if kind == "DictType":
        keys, values = _checker(info.key_type, open_structs), _checker(info.value_type, open_structs)
        if keys is None or values is None:
            return None
        return lambda value: type(value) is dict and all(map(keys, value)) and all(map(values, value.values()))
    if kind == "StructType":
        return _struct_checker(info, open_structs)
    return None


def _list_checker(item: Any, open_structs: set) -> Optional[Callable[[Any], bool]]:
    """A list's check: lists of one scalar type are counted at C speed."""
    check = _checker(item, open_structs)
    if check is None:
        return None
    name = type(item).__name__
    one = _SCALARS.get(name) or (float if name == "FloatType" else None)
    count = operator.countOf
    if one is None:
        return lambda value: type(value) is list and all(map(check, value))
    return lambda value: type(value) is list and (count(map(type, value), one) == len(value) or all(map(check, value)))


def _struct_checker(info: Any, open_structs: set) -> Optional[Callable[[Any], bool]]:
    cls = info.cls
    if (cls in open_structs or info.array_like or info.tag_field is not None
            or cls.__struct_config__.omit_defaults or cls.__struct_encode_fields__ != cls.__struct_fields__):
        return None
    open_structs.add(cls)
    checks = [(field.name, _checker(field.type, open_structs)) for field in info.fields]
    open_structs.discard(cls)
    if any(check is None for _, check in checks):
        return None
    getter = operator.attrgetter(*cls.__struct_fields__) if cls.__struct_fields__ else lambda value: ()
    field_checks = [check for _, check in checks]
    if len(field_checks) == 1:
        single = field_checks[0]
        return lambda value: type(value) is cls and single(getter(value))
    return lambda value: type(value) is cls and all(map(_call, field_checks, getter(value)))


def _call(check: Callable[[Any], bool], value: Any) -> bool:
    return check(value)
