"""What a method's annotations ask of the wire: typed messages and inline serializers.

This module reads hints once, when a communicator is built, and decides:

- which type validates each decorator's value (:func:`message_type`): element *i* of a
  ``tuple[...]`` return annotation for decorator *i*, or a bare annotation for a single decorator,
  but only when the hint holds a model type (msgspec ``Struct``, pydantic ``BaseModel``,
  dataclass, ``NamedTuple``, ``TypedDict``) or an inline serializer: plain ``-> dict`` or
  ``-> tuple`` annotations change nothing;
- which inline serializers a hint carries (:func:`inline_serializers`).

No dependencies: importing this module imports neither msgspec nor pydantic.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import sys
import typing
from typing import Any, Callable, Optional

from wrapyfi_like.exceptions import ConfigurationError

logger = logging.getLogger("wrapyfi_like.annotations")
from wrapyfi_like.markers import Deserializer, Serializer


InlineTable = dict[type, tuple[Optional[Callable[[Any], Any]], Optional[Callable[[Any], Any]]]]


def is_model(hint: Any) -> bool:
    """Whether ``hint`` is a class whose values are validated field by field."""
    if not isinstance(hint, type):
        return False
    if dataclasses.is_dataclass(hint) or typing.is_typeddict(hint):
        return True
    if issubclass(hint, tuple) and hasattr(hint, "_fields"):
        return True
    return _is_struct(hint) or is_pydantic(hint)


def _is_struct(hint: type) -> bool:
    return _is_subclass(hint, "msgspec", "Struct")  # a Struct's module imported msgspec already


def is_pydantic(hint: Any) -> bool:
    return isinstance(hint, type) and _is_subclass(hint, "pydantic", "BaseModel")


def _is_subclass(hint: type, module: str, name: str) -> bool:
    """Whether ``hint`` subclasses ``module.name``, without importing ``module``. Another thread
    may be importing it right now (a listener and a publisher built at once): a module still
    half-imported has no model class anyone could have subclassed yet."""
    try:
        base = getattr(sys.modules.get(module), name, None)
    except ImportError:  # a lazy attribute of a half-imported package
        return False
    return isinstance(base, type) and issubclass(hint, base)


def walk(hint: Any, seen: Optional[set] = None) -> typing.Iterator[Any]:
    """Every hint inside ``hint``, itself included: generic arguments, ``Annotated`` metadata
    and the field hints of models, each model once."""
    seen = set() if seen is None else seen
    yield hint
    for inner in typing.get_args(hint):
        if isinstance(inner, (list, tuple)):  # Callable[[...], ...]
            for item in inner:
                yield from walk(item, seen)
        else:
            yield from walk(inner, seen)
    if typing.get_origin(hint) is typing.Annotated:
        yield from hint.__metadata__
    if is_model(hint) and hint not in seen:
        seen.add(hint)
        for field in _field_hints(hint).values():
            yield from walk(field, seen)


def _field_hints(model: type) -> dict:
    if is_pydantic(model):
        return {name: field.annotation for name, field in model.model_fields.items()}
    try:
        return typing.get_type_hints(model, include_extras=True)
    except Exception as error:
        raise ConfigurationError(f"cannot read the field annotations of {model.__qualname__}: {error}") from None


def is_typed(hint: Any) -> bool:
    """Whether ``hint`` asks for validation: it holds a model or an inline serializer."""
    return any(is_model(item) or isinstance(item, (Serializer, Deserializer)) for item in walk(hint))


def inline_serializers(hint: Any) -> InlineTable:
    """``{type: (serializer, deserializer)}`` for every ``Annotated[T, Serializer(...), ...]``
    inside ``hint``; either function may be missing (a publisher needs only the first)."""
    table: InlineTable = {}
    for item in walk(hint):
        if typing.get_origin(item) is not typing.Annotated:
            continue
        ser = next((m.fn for m in item.__metadata__ if isinstance(m, Serializer)), None)
        deser = next((m.fn for m in item.__metadata__ if isinstance(m, Deserializer)), None)
        if ser is None and deser is None:
            continue
        target = typing.get_origin(item.__origin__) or item.__origin__
        if not isinstance(target, type):
            raise ConfigurationError(f"an inline Serializer/Deserializer must annotate a class, got {target!r}")
        table[target] = (ser, deser)
    return table


@functools.lru_cache(maxsize=256)
def _hints(func: Callable) -> dict:
    """``func``'s evaluated annotations. Annotations that cannot be evaluated (names imported only
    under ``TYPE_CHECKING``) type nothing, as before typed messages existed: logged once per
    method, so a model annotation that silently stopped working can be found."""
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception as error:
        logger.warning("the annotations of %s cannot be evaluated (%s: %s), so they do not type its messages",
                       func.__qualname__, type(error).__name__, error)
        return {}


def return_hint(func: Callable, index: int, decorators: int) -> Any:
    """The hint of decorator ``index``'s value: element ``index`` of a ``tuple[...]`` return
    annotation with one element per decorator, or (one decorator) the annotation itself; None
    when there is none or it asks for nothing."""
    hint = _hints(func).get("return")
    if hint is None:
        return None
    elements = typing.get_args(hint) if typing.get_origin(hint) is tuple else ()
    if len(elements) == decorators and Ellipsis not in elements:
        hint = elements[index]
    elif decorators != 1:
        return None
    return hint if is_typed(hint) else None


def parameter_hints(func: Callable) -> Optional[inspect.Signature]:
    """``func``'s signature (without ``self``) if any parameter's annotation asks for validation."""
    hints = _hints(func)
    signature = inspect.signature(func)
    parameters = list(signature.parameters.values())[1:]
    if not any(is_typed(hints.get(p.name)) for p in parameters if p.name in hints):
        return None
    return signature.replace(parameters=[p.replace(annotation=hints.get(p.name, Any)) for p in parameters])
