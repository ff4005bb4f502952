"""The decorator and the per-instance modes: Wrapyfi's programming model, our bookkeeping.

``MiddlewareCommunicator.register`` attaches one communication spec per decorator to a method;
``activate_communication`` gives an instance a mode for that method. Calling the method then runs
it normally (mode None), publishes what it returns ("publish"), returns what arrived instead of
running it ("listen"), or returns Nones ("disable"). Publishers and listeners are built on the
first call, when ``$0``/``$name`` references to the call's arguments can be resolved.

This module only keeps books: which instance has which mode and which communicators. Encoding
lives in :mod:`wrapyfi_like.encoding`, sockets in :mod:`wrapyfi_like.middlewares`.
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.connect.publishers import Publisher
from wrapyfi_like.data_types import data_type_class
from wrapyfi_like.exceptions import ConfigurationError
from wrapyfi_like.middlewares import MIDDLEWARES

DEFAULT_COMMUNICATOR = os.environ.get("WRAPYFI_DEFAULT_COMMUNICATOR", "zeromq")
DEFAULT_COMMUNICATOR = os.environ.get("WRAPYFI_DEFAULT_MWARE", DEFAULT_COMMUNICATOR)

MODES = ("publish", "listen", "disable", None)
_ROLE_KWARGS = {"publish": "publisher_kwargs", "listen": "listener_kwargs"}
_BINDINGS_ATTR = "_wrapyfi_like_bindings"


@dataclass(frozen=True)
class _Spec:
    """One communicator as a decorator describes it, before ``$`` references are resolved."""

    data_type: str
    middleware: str
    args: tuple
    kwargs: dict

    def build(self, role: str, call_args: tuple, named: dict) -> Union[Publisher, Listener]:
        kwargs = {k: v for k, v in self.kwargs.items() if k not in _ROLE_KWARGS.values()}
        kwargs.update(self.kwargs.get(_ROLE_KWARGS[role]) or {})
        resolve = functools.partial(_resolve, call_args=call_args, named=named)
        args = tuple(resolve(arg) for arg in self.args)
        kwargs = {key: resolve(value) for key, value in kwargs.items()}
        communicator = Publisher if role == "publish" else Listener
        return communicator(*args, data_type=self.data_type, middleware=resolve(self.middleware), **kwargs)


@dataclass(frozen=True)
class _Registration:
    """What one ``register`` decorator attached: a single spec, or a list (Wrapyfi's list form,
    where one returned value is a list whose items each go to their own topic)."""

    specs: tuple[_Spec, ...]
    is_list: bool


def _resolve(value: Any, call_args: tuple, named: dict) -> Any:
    """Replace ``"$0"`` by the first argument after self and ``"$name"`` by the argument ``name``."""
    if not (isinstance(value, str) and value.startswith("$") and len(value) > 1):
        return value
    ref = value[1:]
    try:
        return call_args[int(ref)] if ref.isdigit() else named[ref]
    except (IndexError, KeyError):
        raise ConfigurationError(f"{value!r} refers to an argument the method was not called with") from None


class _Binding:
    """One instance's mode for one method, and the communicators built for it."""

    def __init__(self, mode: Optional[str]) -> None:
        self.mode = mode
        self.communicators: Optional[list] = None
        self.lock = threading.Lock()

    def communicators_for(self, registrations: list[_Registration], func: Callable,
                          instance: Any, args: tuple, kwargs: dict) -> list:
        with self.lock:
            if self.communicators is None:
                bound = inspect.signature(func).bind(instance, *args, **kwargs)
                bound.apply_defaults()
                named = dict(list(bound.arguments.items())[1:])
                self.communicators = [
                    [spec.build(self.mode, args, named) for spec in registration.specs]
                    for registration in registrations
                ]
            return self.communicators

    def close(self) -> None:
        with self.lock:
            for group in self.communicators or []:
                for communicator in group:
                    communicator.close()
            self.communicators = None


class MiddlewareCommunicator:
    """Base class for classes whose methods communicate; Wrapyfi-compatible public API."""

    _instances: "weakref.WeakSet[MiddlewareCommunicator]" = weakref.WeakSet()
    _activation_order: dict[str, list] = {}
    _class_lock = threading.Lock()

    def __init__(self) -> None:
        pass

    @classmethod
    def register(cls, data_type: Union[str, list], middleware: str = DEFAULT_COMMUNICATOR,
                 *args: Any, **kwargs: Any) -> Callable:
        """Decorate a method; stack several for a method returning a tuple (top = element 0).

        ``args`` are ``class_name, topic`` as in Wrapyfi; kwargs include ``carrier``,
        ``should_wait``, ``publisher_kwargs``, ``listener_kwargs`` and anything the data type or
        plugins take. Any of them may be ``"$0"``/``"$name"``, resolved from the first call.
        """
        registration = _registration(data_type, middleware, args, kwargs)

        def encapsulate(func: Callable) -> Callable:
            registrations = getattr(func, "_wrapyfi_like_registrations", None)
            if registrations is not None:
                registrations.insert(0, registration)
                return func

            @functools.wraps(func)
            def wrapper(self, *call_args: Any, **call_kwargs: Any) -> Any:
                binding = getattr(self, _BINDINGS_ATTR, {}).get(func.__qualname__)
                if binding is None or binding.mode is None:
                    return func(self, *call_args, **call_kwargs)
                registrations = wrapper._wrapyfi_like_registrations
                if binding.mode == "disable":
                    return [None] * len(registrations)
                communicators = binding.communicators_for(registrations, func, self, call_args, call_kwargs)
                if binding.mode == "publish":
                    return _publish(func, self, call_args, call_kwargs, registrations, communicators)
                return [_listen(group, registration) for group, registration in zip(communicators, registrations)]

            wrapper._wrapyfi_like_registrations = [registration]
            wrapper._wrapyfi_like_func = func
            return wrapper

        return encapsulate

    def activate_communication(self, func: Union[str, Callable], mode: Union[str, None, list]) -> None:
        """Give this instance ``mode`` for ``func`` (a method or its name).

        A list of modes gives the n-th instance (in order of activation) the n-th mode.
        """
        method = getattr(type(self), func) if isinstance(func, str) else func
        inner = getattr(method, "_wrapyfi_like_func", None)
        if inner is None:
            raise ConfigurationError(f"{getattr(method, '__qualname__', method)!r} is not decorated with register")
        qualname = inner.__qualname__
        if isinstance(mode, list):
            index = self._activation_index(qualname)
            if index >= len(mode):
                raise ConfigurationError(
                    f"{len(mode)} modes given for {qualname}, but this is instance number {index + 1}"
                )
            mode = mode[index]
        if mode not in MODES:
            raise ConfigurationError(f"unknown mode {mode!r}; available: {', '.join(map(str, MODES))}")
        bindings = self.__dict__.setdefault(_BINDINGS_ATTR, {})
        if qualname in bindings:
            bindings[qualname].close()
        bindings[qualname] = _Binding(mode)
        MiddlewareCommunicator._instances.add(self)

    def _activation_index(self, qualname: str) -> int:
        with MiddlewareCommunicator._class_lock:
            order = MiddlewareCommunicator._activation_order.setdefault(qualname, [])
            order[:] = [ref for ref in order if ref() is not None]
            for index, ref in enumerate(order):
                if ref() is self:
                    return index
            order.append(weakref.ref(self))
            return len(order) - 1

    def close(self) -> None:
        """Close this instance's publishers and listeners; its methods then run normally."""
        for binding in self.__dict__.pop(_BINDINGS_ATTR, {}).values():
            binding.close()

    @classmethod
    def close_all_instances(cls) -> None:
        for instance in list(MiddlewareCommunicator._instances):
            instance.close()

    @staticmethod
    def get_communicators() -> set[str]:
        """The names of the available middlewares."""
        return set(MIDDLEWARES)


def _registration(data_type: Union[str, list], middleware: str, args: tuple, kwargs: dict) -> _Registration:
    if isinstance(data_type, str):
        _check_data_type(data_type)
        return _Registration((_Spec(data_type, middleware, args, kwargs),), is_list=False)
    if isinstance(data_type, list):
        specs = []
        for item in data_type:
            item_kwargs = next((a for a in item[2:] if isinstance(a, dict)), {})
            specs.append(_Spec(_check_data_type(item[0]), item[1],
                               tuple(a for a in item[2:] if not isinstance(a, dict)), item_kwargs))
        return _Registration(tuple(specs), is_list=True)
    raise ConfigurationError(f"data_type must be a name or a list of specs, got {data_type!r}")


def _check_data_type(name: str) -> str:
    data_type_class(name)
    return name


def _publish(func: Callable, instance: Any, args: tuple, kwargs: dict,
             registrations: list[_Registration], communicators: list) -> Any:
    returns = func(instance, *args, **kwargs)
    if not isinstance(returns, (tuple, list)) or len(returns) != len(registrations):
        raise ConfigurationError(
            f"{func.__qualname__} has {len(registrations)} register decorator(s), so it must return a "
            f"tuple of {len(registrations)} value(s) (e.g. `return value,`), got {type(returns).__name__}"
        )
    for value, group, registration in zip(returns, communicators, registrations):
        if registration.is_list:
            if not isinstance(value, (tuple, list)) or len(value) != len(group):
                raise ConfigurationError(
                    f"{func.__qualname__}: a list-form register decorator names {len(group)} topics, "
                    f"so its value must be a list of {len(group)} items"
                )
            for item, publisher in zip(value, group):
                publisher.publish(item)
        else:
            group[0].publish(value)
    return returns


def _listen(group: list, registration: _Registration) -> Any:
    if registration.is_list:
        return [listener.listen() for listener in group]
    return group[0].listen()
