"""The typed fast path: a typed message of plain fields (a msgspec ``Struct``, dataclass or
TypedDict) skips the codec's walk on the way out and is decoded and validated by msgspec in one
step on the way in.

A typed message cost the codec's walk plus msgspec's ``convert`` on each side (the 1 KB message
of ``benchmarks/serializers.py``: 9.1 µs encode, 7.8 µs decode, 20 % more than untyped).

Sending: the value is still checked against the type (``MessageType.to_wire``, the field path
on error). Its plain tree then goes to msgpack's packer as the codec runs it (``strict_types``)
but without the codec's walk and extension hook: for a tree of plain values those are the
codec's bytes, by construction, and anything the codec would write as an extension (a tuple, a
subclass such as an ``IntEnum``, an int beyond 64 bits) makes the packer raise, and the codec
writes the message as before. bytes never reach it (the codec sends them as buffers of their
own): no eligible field holds them, and a value with a key its model does not have (which the
check ignores, so it may hold anything) goes to the codec too. So an untyped listener, a
JSON-mode peer and the wire's golden examples see no change. (msgspec's own encoder is faster but writes subclasses and
tuples as their base types; checking a value for them cost more than it saved.)

Receiving: msgspec's typed decoder (``msgspec.msgpack.Decoder(model)``) decodes and validates in
one pass; the header's size and start are checked first, the type bounds the depth, msgspec
checks every length against the bytes left and refuses extension values (code -1 included)
where the type has none. A message it refuses is decoded again by the codec and the type's
validator, so a refusal reads and counts exactly as before (the field path, ``on_invalid``,
``malformed``). A field the type does not have is skipped unread, as msgspec skips it.

Eligible (:func:`fast_path`): a Struct (not ``array_like``, no tag, no renamed field, no
``omit_defaults``), a dataclass (every field an ``__init__`` argument) or a TypedDict whose
fields are str, int, float, bool, None, lists and dicts of those, ``Optional`` of those, and
such models. Anything else takes the codec, as before.

A pydantic v2 model of such fields (:class:`PydanticFast`) takes the same two shortcuts around
pydantic, whose verdict stays the only one: on receipt pydantic validates the map msgspec
decoded, the very map the codec would have given it (the message's fields: the model ignores
other keys); on sending, its check runs unless msgspec's check of the fields and the strict
packer both take the value, which pydantic then takes too (:meth:`PydanticFast.encode_model`,
for models where nothing but the fields' types can refuse: :func:`_shadow_decides`). The models are those
whose verdict depends on nothing but their fields' values: no validators or serializers, no
aliases, no field metadata (``Strict``, constraints), default ``extra`` and ``strict``.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Optional, Sequence


from wrapyfi_like.annotations import is_pydantic
from wrapyfi_like.encoding.codec import _header_start, _plain
from wrapyfi_like.limits import MAX_HEADER_SIZE

HEADER_START = _header_start(0)
"""The codec's header before the value when a message has no buffers: ``[FORMAT_VERSION, 0, …]``."""
_BODY_LIMIT = MAX_HEADER_SIZE - len(HEADER_START)


def _packed(tree: Any) -> Optional[list]:
    """``[header]`` of a tree that holds no bytes-like value, or None: the codec's turn (the
    tree holds a value the codec writes as an extension, or the header is over the limit)."""
    try:
        body = _plain.pack(tree)  # the codec's own packer: its bytes, and it raises on a tuple, a subclass or an int beyond 64 bits
    except (TypeError, OverflowError, ValueError):
        return None
    return [HEADER_START + body] if len(body) <= _BODY_LIMIT else None


class TypedFast:
    """One model type's way to the wire without the codec's walk, and msgspec's decoder for it."""

    shadow_decides = False
    """msgspec's check of the type is the only one (see :attr:`PydanticFast.shadow_decides`)."""

    def __init__(self, hint: type, info: Any) -> None:
        import msgspec

        self.hint = hint
        self._only_fields = _guard(info)
        self._decode = msgspec.msgpack.Decoder(hint).decode

    def encode(self, value: Any, tree: Any) -> Optional[list]:
        """``[header]`` of ``tree``, the plain tree of ``value`` already checked against the type,
        or None: the codec's turn (the tree holds a value the codec writes as an extension, or
        a key the type does not have, which the check ignored and may hold bytes)."""
        return _packed(tree) if self._only_fields(value) else None

    def decode(self, frames: Sequence[Any]) -> Any:
        """The validated value of ``frames``, or None when the codec and validator must decide."""
        if len(frames) != 1:
            return None
        header = memoryview(frames[0])
        if header.nbytes > MAX_HEADER_SIZE or header[:3] != HEADER_START:
            return None
        try:
            return self._decode(header[3:])
        except Exception:  # msgspec's errors, RecursionError on deep lists …: the codec's path says what
            return None


class PydanticFast:
    """A pydantic model's way around the codec: its fields' types as a msgspec ``Struct`` (the
    shadow) say which trees hold plain values only, and decode a message's fields for pydantic."""

    def __init__(self, hint: type, shadow: type) -> None:
        import msgspec
        import pydantic

        from wrapyfi_like.validation import _pydantic_validator, _tree_function

        self.hint = hint
        self._plain = TypedFast(shadow, msgspec.inspect.type_info(shadow))
        self._convert, self._shadow, self._asdict = msgspec.convert, shadow, msgspec.structs.asdict
        self._refused = (msgspec.ValidationError, pydantic.ValidationError)
        self._validate = _pydantic_validator(pydantic, hint)  # the validator the codec's path uses
        self.shadow_decides = _shadow_decides(hint)  # whether :meth:`encode_model` may check a value alone
        self._tree_of = _tree_function(hint)

    def encode_model(self, value: Any) -> Optional[list]:
        """``[header]`` of a value of the model's own class checked by the shadow alone, or None:
        the usual way (pydantic's check, then :meth:`encode`). The shadow takes exactly the
        str, int, float, bool, None, lists and dicts its fields' types name, and the packer
        only those builtin types themselves: a tree both take is one pydantic takes too, for a
        model whose verdict nothing but its fields' types decides (:func:`_shadow_decides`), so
        its check need not run as well (2.7 µs of a 1 KB message). Only if :attr:`shadow_decides`."""
        if type(value) is not self.hint:
            return None
        tree = self._tree_of(value)
        try:
            self._convert(tree, self._shadow)
        except self._refused:
            return None  # pydantic's check says what is wrong, or takes what the shadow did not
        return _packed(tree)

    def encode(self, value: Any, tree: Any) -> Optional[list]:
        """``[header]`` of ``tree``, or None. pydantic's check accepts values its fields would
        convert (bytes for a str), and the tree keeps them as they are: only a tree the shadow
        takes as it is holds no bytes, which the codec sends as buffers of their own."""
        if type(value) is not self.hint:  # a dict or another model: keys pydantic ignores may hold anything
            return None
        try:
            self._convert(tree, self._shadow)
        except self._refused:
            return None
        return _packed(tree)

    def decode(self, frames: Sequence[Any]) -> Any:
        """The model validated by pydantic from the message's fields, or None: msgspec refused
        them, or pydantic did (a ``model_post_init`` may), and the codec's path then gives the
        same verdict with its own error text."""
        fields = self._plain.decode(frames)
        if fields is None:
            return None
        try:
            return self._validate(self._asdict(fields))
        except self._refused:
            return None


def fast_path(hint: Any) -> Optional[TypedFast | PydanticFast]:
    """The fast path of ``hint``; None unless it is a Struct, dataclass, TypedDict or pydantic
    model of plain fields."""
    if isinstance(hint, type) and is_pydantic(hint):
        shadow = _pydantic_shadow(hint)
        return None if shadow is None else PydanticFast(hint, shadow)
    if not isinstance(hint, type) or not (hasattr(hint, "__struct_fields__") or dataclasses.is_dataclass(hint)
                                          or typing.is_typeddict(hint)):
        return None
    import msgspec

    try:
        info = msgspec.inspect.type_info(hint)
    except Exception:  # the validator reports it, as before
        return None
    return TypedFast(hint, info) if _plain_type(info, set()) else None


def _pydantic_shadow(model: type) -> Any:
    """A msgspec ``Struct`` of the pydantic ``model``'s fields, all required, or None unless the
    model's verdict on a map depends on its fields' values alone and they are of plain types."""
    import msgspec

    decorators = model.__pydantic_decorators__
    config = model.model_config
    if (any(getattr(decorators, kind) for kind in _PYDANTIC_HOOKS) or getattr(model, "__pydantic_root_model__", False)
            or any(config.get(key) for key in ("extra", "strict", "alias_generator")) or not model.model_fields):
        return None
    fields = model.model_fields
    if any(field.alias or field.validation_alias or field.metadata for field in fields.values()):
        return None
    try:
        shadow = msgspec.defstruct(f"{model.__qualname__}Fields", [(name, field.annotation)
                                                                      for name, field in fields.items()])
        info = msgspec.inspect.type_info(shadow)
    except Exception:  # a type msgspec cannot take: the codec's path, as before
        return None
    return shadow if all(_plain_type(field.type, set()) and _guard(field.type) is None for field in info.fields) else None


def _shadow_decides(model: type) -> bool:
    """Whether pydantic takes every tree of exact builtin values the model's shadow takes. Each
    of these may refuse more than the fields' types, so any one of them leaves the verdict to
    pydantic: a ``model_post_init``; a custom ``__init__`` (pydantic's validation calls it); a
    ``__get_pydantic_core_schema__`` that wraps the model's schema (its type is then not
    ``"model"``); a pydantic plugin (the validator is then not a plain ``SchemaValidator``); a
    setting outside :data:`_NEUTRAL_SETTINGS`, which change schemas, serialisation, errors or
    leniency only (``allow_inf_nan`` or ``str_max_length`` refuse more; ``defer_build`` leaves
    the schema unbuilt, so it cannot be read here)."""
    from pydantic_core import SchemaValidator

    if (model.__pydantic_post_init__ is not None or model.__pydantic_custom_init__
            or not model.model_config.keys() <= _NEUTRAL_SETTINGS):
        return False
    schema = model.__pydantic_core_schema__
    return (schema.get("type") == "model" and schema.get("post_init") is None
            and type(model.__pydantic_validator__) is SchemaValidator)


_NEUTRAL_SETTINGS = frozenset({
    "title", "frozen", "arbitrary_types_allowed", "from_attributes", "populate_by_name", "protected_namespaces",
    "json_schema_extra", "hide_input_in_errors", "revalidate_instances", "validate_assignment",
    "use_attribute_docstrings", "ser_json_timedelta", "ser_json_bytes", "ser_json_inf_nan", "ser_json_temporal",
    "validation_error_cause", "cache_strings", "coerce_numbers_to_str", "use_enum_values", "validate_default",
    "validate_return", "loc_by_alias"})
"""pydantic settings under which a tree of exact values of a model's field types stays valid."""


_PYDANTIC_HOOKS = ("validators", "field_validators", "root_validators", "field_serializers", "model_serializers",
                   "model_validators", "computed_fields")
"""pydantic's decorator kinds: a model with any of them may judge more than its fields' values."""
_LEAVES = frozenset({"StrType", "IntType", "FloatType", "BoolType", "NoneType"})


def _plain_type(info: Any, open_structs: set) -> bool:
    """Whether the type ``info`` (msgspec.inspect) holds only values msgpack carries natively and
    is written by msgspec as the map the codec writes (a Struct's fields under their own names)."""
    kind = type(info).__name__
    if kind in _LEAVES:
        return True
    if kind == "UnionType":  # Optional[...] only: msgspec's other unions decide by the wire type
        others = [item for item in info.types if type(item).__name__ != "NoneType"]
        return len(others) == 1 and len(info.types) == 2 and _plain_type(others[0], open_structs)
    if kind == "ListType":
        return _plain_type(info.item_type, open_structs)
    if kind == "DictType":
        return type(info.key_type).__name__ in _LEAVES and _plain_type(info.value_type, open_structs)
    if kind in ("DataclassType", "TypedDictType"):  # their fields keep their names
        if kind == "DataclassType" and not all(field.init for field in dataclasses.fields(info.cls)):
            return False
        return _plain_fields(info, open_structs)
    if kind != "StructType":
        return False
    cls = info.cls
    if (info.array_like or info.tag_field is not None
            or cls.__struct_config__.omit_defaults or cls.__struct_encode_fields__ != cls.__struct_fields__):
        return False
    return _plain_fields(info, open_structs)


def _plain_fields(info: Any, open_structs: set) -> bool:
    """Whether every field of a model is of a plain type (a model inside itself is not)."""
    if info.cls in open_structs:
        return False
    open_structs.add(info.cls)
    plain = all(_plain_type(field.type, open_structs) for field in info.fields)
    open_structs.discard(info.cls)
    return plain


def _guard(info: Any) -> Any:
    """Whether a checked value of the plain type ``info`` holds its models' fields only; None
    where it holds no model. The check ignores a key a model does not have, so a dict given for
    a model (at the top or inside) is taken only with the model's keys, and a model of another
    class not at all; every other position the check has seen to be of a plain type."""
    kind = type(info).__name__
    if kind in _LEAVES:
        return None
    if kind == "UnionType":
        inner = _guard(next(item for item in info.types if type(item).__name__ != "NoneType"))
        return None if inner is None else lambda value: value is None or inner(value)
    if kind in ("ListType", "DictType"):
        inner = _guard(info.item_type if kind == "ListType" else info.value_type)
        if inner is None:
            return None
        return (lambda value: all(map(inner, value))) if kind == "ListType" else (
            lambda value: all(map(inner, value.values())))
    inside = [(field.name, guard) for field in info.fields if (guard := _guard(field.type)) is not None]
    cls = info.cls
    if kind == "TypedDictType":
        names = frozenset(field.name for field in info.fields)
        return lambda value: (type(value) is dict and value.keys() <= names
                              and all(guard(value[name]) for name, guard in inside if name in value))
    if not inside:
        return lambda value: type(value) is cls
    return lambda value: type(value) is cls and all(guard(getattr(value, name)) for name, guard in inside)
