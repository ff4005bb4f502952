"""Typed messages: validate a value against a type on the way out and on the way in.

The wire stays plain (FastStream's model): a typed value travels as a map of its fields (a
``NamedTuple`` as the tuple it is), its arrays and tensors untouched, so binary mode still sends
them as buffers without a copy and an untyped listener gets a dict. The receiver's type decides:
:meth:`MessageType.from_wire` validates the decoded tree into the type, and
:meth:`MessageType.to_wire` checks a value before it is sent.

Engines, imported only when a typed message is built: msgspec (``msgspec.convert``, ~0.6 µs a
small message) for everything but pydantic models, pydantic v2 (``TypeAdapter``) when the type
holds a ``BaseModel``. Either missing raises :class:`ConfigurationError` naming the extra.
"""

from __future__ import annotations

import dataclasses
import operator
import typing
from typing import Any, Callable

from wrapyfi_like import annotations
from wrapyfi_like.exceptions import ConfigurationError, ValidationError
from wrapyfi_like.logs import truncate

_PLAIN_LEAVES = frozenset({str, int, float, bool, type(None), bytes})


class MessageType:
    """One topic's typed message: built once (the engine's validator, the way from a value to its
    wire tree, and the cheapest check that gives the engine's verdict), used per message.

    Per message the engine's own check is the floor (msgspec: ~1.3 µs for the 1 KB dict of
    ``benchmarks/serializers.py``, most of it the list of 100 floats); everything else is bound
    once, so that little more is paid: :meth:`to_wire` and :meth:`from_wire` are closures over
    what they need, a value of the model's own class becomes its tree in one step, and a
    dataclass or TypedDict is checked by a msgspec ``Struct`` with the same fields
    (:func:`_shadow_struct`), which msgspec checks in half the time of the class itself.
    A model of plain fields in binary mode skips the codec around this check
    (:mod:`wrapyfi_like.encoding.typed_fast`, hooked in by ``ValueFormat``).
    """

    def __init__(self, hint: Any) -> None:
        self.hint = hint
        self.name = getattr(hint, "__qualname__", None) or repr(hint)
        shadow = None
        if any(annotations.is_pydantic(item) for item in annotations.walk(hint)):
            pydantic = _engine("pydantic", "pydantic")
            self._errors: tuple = (pydantic.ValidationError,)
            validate = _pydantic_validator(pydantic, hint)
            convert: Any = lambda tree, _: validate(tree)  # noqa: E731
        else:
            msgspec = _engine("msgspec", "typed")
            self._errors = (msgspec.ValidationError,)
            convert = msgspec.convert
            shadow = _shadow_struct(hint)
        # Only models inside the top one need the recursive walk; a value of a flat model becomes
        # the map of its fields in one step (a 1 KB message: 0.2 µs instead of 6).
        nested = any(annotations.is_model(item) for item in annotations.walk(hint) if item is not hint)
        self.to_wire = self._bind_to_wire(convert, hint, nested, shadow or hint)
        self.from_wire = self.validate = self._bind_from_wire(convert, hint, shadow)

    to_wire: Callable[[Any], Any]
    """The plain tree of a value after checking it against the type; a wrong value raises
    :class:`ValidationError` naming the field path, before anything is sent. Models do not all
    check their fields when built (msgspec Structs, dataclasses, pydantic's ``model_construct``),
    so instances are checked too: the engine converts their tree."""

    from_wire: Callable[[Any], Any]
    """A received tree as a validated instance of the type; :class:`ValidationError` if not.
    Also named ``validate``."""

    def _bind_to_wire(self, convert: Any, hint: Any, nested: bool, exact_check: Any) -> Any:
        errors, invalid = self._errors, self._invalid

        def to_wire(value: Any) -> Any:
            if nested:
                tree = plain(value)
            else:  # a dict, or a model of another class with the same fields: one level is enough
                fields = _fields(type(value))
                if fields is None:
                    tree = value
                elif isinstance(value, tuple):  # NamedTuple: the tuple it is
                    tree = tuple(value)
                else:
                    tree = {name: getattr(value, name) for name in fields}
            try:
                convert(tree, hint)
            except errors as error:
                raise invalid(error) from None
            return tree

        if nested or not isinstance(hint, type):
            return to_wire
        exact, tree_of = (dict, None) if typing.is_typeddict(hint) else (hint, _tree_function(hint))
        if exact is hint and tree_of is None:  # a model without fields to read
            return to_wire

        def to_wire_exact(value: Any) -> Any:
            """The publisher's usual value, of the model's own class (a TypedDict's: a dict)."""
            if type(value) is not exact:
                return to_wire(value)
            tree = value if tree_of is None else tree_of(value)
            try:
                convert(tree, exact_check)
            except errors as error:
                raise invalid(error) from None
            return tree

        return to_wire_exact

    def _bind_from_wire(self, convert: Any, hint: Any, shadow: Any) -> Any:
        errors, invalid = self._errors, self._invalid
        if shadow is not None and typing.is_typeddict(hint):  # the same dict msgspec builds for the TypedDict
            import msgspec

            asdict, hint = msgspec.structs.asdict, shadow
        else:
            asdict = None

        def from_wire(tree: Any) -> Any:
            try:
                value = convert(tree, hint)
            except errors as error:
                raise invalid(error) from None
            return value if asdict is None else asdict(value)

        return from_wire

    def _invalid(self, error: Exception) -> ValidationError:
        return ValidationError(f"not a valid {self.name}: {truncate(_one_line(error))}")


def _pydantic_validator(pydantic: Any, hint: Any) -> Any:
    """The type's compiled validator, called directly (``TypeAdapter.validate_python`` adds a
    Python call with its default arguments around it); the adapter's method when the schema is
    not built yet (a model with ``defer_build``)."""
    adapter = pydantic.TypeAdapter(hint)
    validator = getattr(adapter, "validator", None)
    from pydantic_core import SchemaValidator

    return validator.validate_python if isinstance(validator, SchemaValidator) else adapter.validate_python


def _shadow_struct(model: Any) -> Any:
    """A msgspec ``Struct`` with the fields of the flat dataclass or TypedDict ``model``, or None.

    msgspec checks a Struct in about half the time it checks a dataclass (1.3 µs instead of 2.3
    for the 1 KB dict) or a TypedDict (3.5 µs). Its verdict on a tree with every field is the
    model's when nothing but the fields' types decides: so only for dataclasses whose fields
    are all ``__init__`` arguments and which have no ``__post_init__`` (a check msgspec would
    run), and TypedDicts whose keys are all required (a Struct cannot leave a key out)."""
    if not isinstance(model, type):
        return None
    if typing.is_typeddict(model):
        try:
            hints = typing.get_type_hints(model, include_extras=True)
        except Exception:  # the engine reports it on the first message, as before
            return None
        if frozenset(hints) != model.__required_keys__:
            return None
        fields = [(name, _required(hint)) for name, hint in hints.items()]
    elif dataclasses.is_dataclass(model) and not hasattr(model, "__post_init__"):
        declared = dataclasses.fields(model)
        if not all(field.init for field in declared):
            return None
        try:
            hints = typing.get_type_hints(model, include_extras=True)
        except Exception:
            return None
        fields = [(field.name, hints[field.name]) for field in declared]
    else:
        return None
    import msgspec

    try:
        return msgspec.defstruct(f"{model.__qualname__}Fields", fields)
    except Exception:  # a key that cannot name a Struct field: the model's own check it is
        return None


_KEY_WRAPPERS = tuple(filter(None, (getattr(typing, "Required", None), getattr(typing, "NotRequired", None))))
"""``Required``/``NotRequired`` (Python 3.11 on; setup.cfg allows 3.10, which has neither)."""


def _required(hint: Any) -> Any:
    """A TypedDict key's type without its ``Required[...]``/``NotRequired[...]`` wrapper."""
    return typing.get_args(hint)[0] if typing.get_origin(hint) in _KEY_WRAPPERS else hint


def _tree_function(model: type) -> Any:
    """How a value of the flat ``model`` becomes the map of its fields (a NamedTuple: the tuple
    it is), found once per type; None for a type whose values travel as they are (TypedDict)."""
    fields = _fields(model)
    if fields is None:
        return None
    if issubclass(model, tuple):
        return tuple
    if hasattr(model, "__struct_fields__"):
        import msgspec

        return msgspec.structs.asdict
    getter = operator.attrgetter(*fields)
    if len(fields) == 1:
        by_attribute = lambda value: {fields[0]: getter(value)}  # noqa: E731
    else:
        by_attribute = lambda value: dict(zip(fields, getter(value)))  # noqa: E731
    if "__dict__" not in dir(model):  # a dataclass with slots
        return by_attribute
    names = frozenset(fields)

    def from_instance_dict(value: Any) -> dict:
        """A dataclass's or pydantic model's fields are its instance dict, as a rule: copying it
        takes a sixth of the time of reading each attribute. Anything else in it (an attribute
        set in ``__post_init__``) and the attributes are read one by one."""
        tree = value.__dict__.copy()
        return tree if tree.keys() == names else by_attribute(value)

    return from_instance_dict


def _engine(module: str, extra: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise ConfigurationError(
            f"typed messages of this type need {module}; from the wrapyfi_like checkout: "
            f"pip install -c constraints.txt -e '.[{extra}]'"
        ) from None


def _one_line(error: Exception) -> str:
    errors = getattr(error, "errors", None)
    if callable(errors):  # pydantic: the first error with its path, as msgspec writes it
        first = errors()[0]
        path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"])
        return f"{first['msg']} - at $" + path
    return str(error)


def plain(value: Any) -> Any:
    """``value`` with every model replaced by the map of its fields, recursively; arrays, tensors
    and other leaves are kept as they are (the codec carries them)."""
    kind = type(value)
    if kind in _PLAIN_LEAVES:
        return value
    if kind is dict:
        if _PLAIN_LEAVES.issuperset(map(type, value.values())):
            return value
        return {key: plain(item) for key, item in value.items()}
    if kind is list or kind is tuple:
        if not value or _one_plain_type(value) or _PLAIN_LEAVES.issuperset(map(type, value)):
            return value
        return kind(plain(item) for item in value)
    fields = _fields(kind)
    if fields is None:
        return value
    if issubclass(kind, tuple):  # NamedTuple: the tuple it is
        return tuple(plain(item) for item in value)
    return {name: plain(getattr(value, name)) for name in fields}


def _one_plain_type(items: Any) -> bool:
    """Whether a non-empty list holds leaves of one plain type: the common list of numbers,
    counted at C speed (half the time of a type set)."""
    first = type(items[0])
    return first in _PLAIN_LEAVES and operator.countOf(map(type, items), first) == len(items)


_FIELDS: dict[type, Any] = {}


def _fields(kind: type) -> Any:
    """The field names of a model class (cached per class), or None for anything else."""
    if kind in _FIELDS:
        return _FIELDS[kind]
    if dataclasses.is_dataclass(kind):
        names = tuple(field.name for field in dataclasses.fields(kind))
    elif issubclass(kind, tuple) and hasattr(kind, "_fields"):
        names = kind._fields
    elif hasattr(kind, "__struct_fields__"):
        names = kind.__struct_fields__
    elif annotations.is_pydantic(kind):
        names = tuple(kind.model_fields)
    else:
        names = None
    _FIELDS[kind] = names
    return names


def check_call(signature: Any, args: tuple, kwargs: dict, types: dict) -> tuple[tuple, dict]:
    """Bind a request's ``args``/``kwargs`` to ``signature`` and validate each typed argument
    (``types``: parameter name to :class:`MessageType`); :class:`ValidationError` names the
    parameter and the field path."""
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as error:
        raise ValidationError(f"the arguments do not fit {signature}: {error}") from None
    for name, value in list(bound.arguments.items()):
        message_type = types.get(name)
        if message_type is None:
            continue
        try:
            bound.arguments[name] = message_type.from_wire(value)
        except ValidationError as error:
            raise ValidationError(f"argument {name!r}: {error}") from None
    return bound.args, bound.kwargs


def wire_call(signature: Any, args: tuple, kwargs: dict, types: dict) -> tuple[tuple, dict]:
    """A request's ``args``/``kwargs`` as they travel: each typed argument as the plain tree of
    its fields, so a client may pass model instances. Checking them is the server's job (it
    answers with the parameter and the path), so arguments that do not fit go as they are."""
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError:
        return args, kwargs
    for name, value in list(bound.arguments.items()):
        if name in types:
            bound.arguments[name] = plain(value)
    return bound.args, bound.kwargs


def call_types(signature: Any) -> dict[str, MessageType]:
    """One :class:`MessageType` per parameter of ``signature`` whose annotation asks for one."""
    return {name: MessageType(parameter.annotation) for name, parameter in signature.parameters.items()
            if parameter.annotation is not typing.Any and annotations.is_typed(parameter.annotation)}
