"""What each mode does with one call of a decorated method.

| mode | the method body | returns |
|---|---|---|
| ``publish`` | runs; its returns are published | the returns |
| ``listen`` | skipped | what arrived, one item per decorator |
| ``reply`` | runs with the arguments of a client's request; its returns go back | the returns |
| ``request`` | skipped; a server runs it with this call's arguments | the server's returns |
| ``transceive`` | runs; its returns are published, then the listener side is heard | what arrived |
| ``reemit`` | runs with what arrived appended to the arguments; its returns are published | the returns |
| ``receive`` | like ``reemit``, without publishing | the returns |

Publishing uses the decorators' ``publisher_kwargs``, listening their ``listener_kwargs`` (where a
transceiver's listener names the ``in_topic`` that the reemitter publishes on). Everything here is
plain blocking code: no event loop is started, so every mode also works when called from inside a
running asyncio loop (the call blocks that loop's thread while it waits, as any blocking call does).

The service of a ``reply``/``request`` method is its top decorator's topic; one request carries the
call's ``(args, kwargs)`` and one reply carries every returned value, each encoded by its own
decorator's data type and codec.

A communicator whose middleware is absent (``"none"``, or one Wrapyfi has and this package does
not) is a no-op stand-in (:mod:`wrapyfi_like.connect.fallback`), so the method's other decorators
still communicate, as in Wrapyfi. Kwargs are filtered per kind by
:mod:`wrapyfi_like.connect.keywords`.
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any, Callable, Optional

from wrapyfi_like.connect import keywords
from wrapyfi_like.connect.clients import Client
from wrapyfi_like.annotations import parameter_hints
from wrapyfi_like.config.modes import MODES
from wrapyfi_like.logs import RateLimitedLog
from wrapyfi_like.connect.fallback import Absent
from wrapyfi_like.connect.formats import ValueFormat, typed_kwargs
from wrapyfi_like.connect.groups import Aligner, CallGroups
from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.connect.publishers import Publisher
from wrapyfi_like.connect.servers import Server
from wrapyfi_like.exceptions import ClosedError, ConfigurationError
from wrapyfi_like.middlewares import is_available

logger = logging.getLogger("wrapyfi_like.modes")
_serving_errors = RateLimitedLog(logger)
"""A client can make a served method raise at will: one traceback per topic and error type per 10 s."""

ROLE_KWARGS = {"publish": "publisher_kwargs", "listen": "listener_kwargs",
               "reply": "publisher_kwargs", "request": "listener_kwargs"}
"""Which decorator kwargs refine each role: a server publishes, a client listens (as in Wrapyfi)."""


class Call:
    """One call of a decorated method on an instance whose mode for it is not None."""

    def __init__(self, func: Callable, instance: Any, args: tuple, kwargs: dict,
                 registrations: list, binding: Any) -> None:
        self.func = func
        self.instance = instance
        self.args = args
        self.kwargs = kwargs
        self.registrations = registrations
        self.binding = binding

    @functools.cached_property
    def named(self) -> dict:
        """The call's arguments by name, defaults included, for ``$name`` references.

        Partial: a server is called without the arguments its clients will send. Keyword arguments
        the method does not declare are kept for ``$`` references but not bound, as in Wrapyfi,
        where a listener may be called with any (``collect_cam(img_source=0)``: in listen mode
        the body never runs, so they cannot fail)."""
        signature = inspect.signature(self.func)
        params = signature.parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            declared, undeclared = self.kwargs, {}
        else:
            declared = {key: value for key, value in self.kwargs.items() if key in params}
            undeclared = {key: value for key, value in self.kwargs.items() if key not in params}
        bound = signature.bind_partial(self.instance, *self.args, **declared)
        bound.apply_defaults()
        return {**undeclared, **dict(list(bound.arguments.items())[1:])}

    def communicators(self, role: str) -> Any:
        """This binding's communicators for ``role``, built on first use and kept."""
        return self.binding.communicators(role, lambda: _BUILDERS[role](self))

    def run(self, *extra_args: Any) -> Any:
        return self.func(self.instance, *self.args, *extra_args, **self.kwargs)


def run(mode: str, call: Call) -> Any:
    """Run ``call`` in ``mode``; then give its binding a direct path for later calls, if it has one."""
    result = _MODES[mode](call)
    if call.binding.direct is None:
        try:
            call.binding.direct = _direct(mode, call)
        except ClosedError:
            pass  # closed during this call (another thread): its work is done and its result stands
    return result


def _direct(mode: str, call: Call) -> Optional[Callable[[Any, tuple, dict], Any]]:
    """What later calls of a method whose decorators are not list-form (one decorator: the common
    case; several: :func:`_direct_stacked`) may run instead of the mode, with its communicators
    already in hand: the same result without building a :class:`Call` or splitting and
    regrouping returns. That saves about 1.5 µs of the ~10 µs a small message costs each side,
    and more when messages come one at a time to a cold CPU."""
    if any(registration.is_list for registration in call.registrations):
        return None
    if len(call.registrations) != 1:
        return _direct_stacked(mode, call)
    if mode == "publish":
        return _direct_publish(call)
    if mode == "listen":
        (listener,), = call.communicators("listen")
        return lambda instance, args, kwargs: [listener.listen()]
    if mode == "request":
        client = call.communicators("request")
        if isinstance(client, Absent):
            return None
        return lambda instance, args, kwargs: client.request(args, kwargs)
    if mode == "reply":
        return _direct_reply(call)
    return None


def _direct_publish(call: Call) -> Callable[[Any, tuple, dict], Any]:
    (publisher,), = call.communicators("publish")
    func, registrations, binding = call.func, call.registrations, call.binding

    def publish(instance: Any, args: tuple, kwargs: dict) -> Any:
        returns = func(instance, *args, **kwargs)
        if type(returns) is tuple and len(returns) == 1:
            publisher.publish(returns[0])
            return returns
        # Any other shape: the general path publishes a one-item list or explains the mistake.
        return _publish_returns(Call(func, instance, args, kwargs, registrations, binding), [[publisher]], returns)

    return publish


def _direct_stacked(mode: str, call: Call) -> Optional[Callable[[Any, tuple, dict], Any]]:
    """Later calls of a method with several decorators, none of them list-form (a frame and its
    metadata): its publishers and call groups, or its listeners and aligner, in hand. The mode
    builds a :class:`Call`, its communicators' lists and the regrouped returns per call: about
    4 µs of a two-part publish and 8 µs of a two-part listen."""
    if mode == "publish":
        return _direct_stacked_publish(call)
    if mode != "listen":
        return None
    listeners = [listener for (listener,) in call.communicators("listen")]
    if any(isinstance(listener, Absent) for listener in listeners):
        return None  # the mode returns None for those and aligns the others
    aligner = call.binding.state("aligner", lambda: Aligner(listeners))

    def listen(instance: Any, args: tuple, kwargs: dict) -> list:
        values = aligner.read()
        return values if values is not None else [listener.empty() for listener in listeners]

    return listen


def _direct_stacked_publish(call: Call) -> Callable[[Any, tuple, dict], Any]:
    publishers = call.communicators("publish")
    each = [publisher for (publisher,) in publishers]
    groups = call.binding.state("groups", CallGroups)
    func, registrations, binding = call.func, call.registrations, call.binding

    def publish(instance: Any, args: tuple, kwargs: dict) -> Any:
        returns = func(instance, *args, **kwargs)
        if type(returns) is tuple and len(returns) == len(each):
            with groups.lock:
                group = groups.next()
                for value, publisher in zip(returns, each):
                    publisher.publish(value, group)
            return returns
        # Any other shape: the general path publishes a list of parts or explains the mistake.
        return _publish_returns(Call(func, instance, args, kwargs, registrations, binding), publishers, returns)

    return publish


# -- building communicators -----------------------------------------------------------------------

def _build_each(communicator: type, role: str, call: Call) -> list:
    return [[_construct(communicator, role, *_resolve_typed(call, role, spec, index, registration),
                        data_type=spec.data_type)
             for spec in registration.specs] for index, registration in enumerate(call.registrations)]


def _build_service(communicator: type, role: str, call: Call) -> Any:
    args, kwargs = call.registrations[0].specs[0].resolve(role, call.args, call.named)
    formats = []
    if is_available(kwargs["middleware"]):  # an absent one's stand-in encodes nothing
        for index, registration in enumerate(call.registrations):
            for spec in registration.specs:
                _, spec_kwargs = _resolve_typed(call, role, spec, index, registration)
                formats.append(ValueFormat(spec.data_type, **keywords.for_format(role, spec_kwargs)))
    extra = {"call_signature": parameter_hints(call.func)}
    return _construct(communicator, role, args, kwargs, value_formats=formats, **extra)


def _resolve_typed(call: Call, role: str, spec: Any, index: int, registration: Any) -> tuple[tuple, dict]:
    """A spec's args and kwargs, with the ``message_type`` the method's return annotation gives
    it (list-form decorators take theirs from ``message_type=`` only)."""
    args, kwargs = spec.resolve(role, call.args, call.named)
    if registration.is_list:
        return args, kwargs
    return args, typed_kwargs(kwargs, call.func, index, len(call.registrations))


def _construct(communicator: type, role: str, args: tuple, kwargs: dict, **extra: Any) -> Any:
    """Build ``communicator`` from a decorator's positional args and kwargs (an :class:`Absent`
    stand-in if its middleware is absent).

    Kwargs win over positional args, so ``listener_kwargs=dict(in_topic=...)`` (Wrapyfi's way of
    giving a transceiver's listener its own topic) replaces the decorator's topic; ``class_name``
    is Wrapyfi's name for the ``name`` parameter.
    """
    try:
        params = inspect.signature(communicator).bind_partial(*args).arguments
    except TypeError as error:
        raise ConfigurationError(f"{communicator.__name__}: {error}") from None
    kwargs = dict(kwargs)
    if "class_name" in kwargs:
        kwargs["name"] = kwargs.pop("class_name")
    params.update(kwargs)
    topic = params.get("out_topic", params.get("in_topic"))
    if not is_available(params["middleware"]):
        return Absent(topic, params["middleware"], role)
    return communicator(**keywords.for_kind(role, params, topic), **extra)


_BUILDERS = {
    "publish": functools.partial(_build_each, Publisher, "publish"),
    "listen": functools.partial(_build_each, Listener, "listen"),
    "reply": functools.partial(_build_service, Server, "reply"),
    "request": functools.partial(_build_service, Client, "request"),
}


# -- the modes ------------------------------------------------------------------------------------

def _publish(call: Call) -> Any:
    publishers = call.communicators("publish")
    return _publish_returns(call, publishers, call.run())


def _publish_returns(call: Call, publishers: list, returns: Any) -> Any:
    values = _per_decorator(call, returns)
    if len(publishers) == 1 and len(publishers[0]) == 1:
        publishers[0][0].publish(values[0][0])  # one part: no call group to keep together
        return returns
    groups = call.binding.state("groups", CallGroups)
    with groups.lock:
        group = groups.next()
        for value, decorator_publishers in zip(values, publishers):
            for item, publisher in zip(value, decorator_publishers):
                publisher.publish(item, group)
    return returns


def _listen(call: Call) -> list:
    listeners = [listener for group in call.communicators("listen") for listener in group]
    present = [listener for listener in listeners if not isinstance(listener, Absent)]
    if len(present) <= 1:  # one listener: no call groups to align; an absent one returns None at once
        return _regroup(call, [listener.listen() for listener in listeners])
    values = call.binding.state("aligner", lambda: Aligner(present)).read()
    heard = iter(values if values is not None else [listener.empty() for listener in present])
    return _regroup(call, [None if isinstance(listener, Absent) else next(heard) for listener in listeners])


def _transceive(call: Call) -> list:
    call.communicators("listen")  # announce the listener before publishing, so the answer cannot be missed
    _publish(call)
    return _listen(call)


def _reemit(call: Call) -> Any:
    publishers = call.communicators("publish")
    return _publish_returns(call, publishers, _receive(call))


def _receive(call: Call) -> Any:
    return call.run(*_listen(call))


def _reply(call: Call) -> Any:
    """Serve one request; a failing method's error goes to its client and the next request is served."""
    server = call.communicators("reply")
    if isinstance(server, Absent):
        return call.run()  # Wrapyfi's fallback server hands the method the call's own arguments
    return _serve(server, call.func, call.instance, lambda _, returns: _flat_returns(call, returns),
                  len(call.registrations))


def _direct_reply(call: Call) -> Optional[Callable[[Any, tuple, dict], Any]]:
    """Later calls of a one-value server: :func:`_serve` with the server in hand, no :class:`Call`."""
    server = call.communicators("reply")
    if isinstance(server, Absent):
        return None
    func, registrations, binding = call.func, call.registrations, call.binding

    def values(instance: Any, returns: Any) -> Any:
        if type(returns) is tuple and len(returns) == 1:
            return returns
        # Any other shape: the general path takes it or explains the mistake.
        return _flat_returns(Call(func, instance, (), {}, registrations, binding), returns)

    return lambda instance, args, kwargs: _serve(server, func, instance, values, 1)


def _flat_returns(call: Call, returns: Any) -> list:
    return [item for value in _per_decorator(call, returns) for item in value]


def _serve(server: Server, func: Callable, instance: Any, flat: Callable[[Any, Any], Any], decorators: int) -> Any:
    """Run ``func`` for the next request and reply with ``flat(instance, returns)``; the method's returns,
    or one None per decorator when a non-waiting server found no request."""
    while True:
        request = server.await_request()
        if request is None:
            return [None] * decorators
        try:
            returns = func(instance, *request.args, **request.kwargs)
            server.reply(request, flat(instance, returns))
        except Exception as error:
            _serving_errors.warning(server.out_topic, type(error).__name__,
                                    "%s raised while serving a request on %s; the error goes back to the client",
                                    func.__qualname__, server.out_topic, exc_info=True)
            server.reply_error(request, error)
            continue
        return returns


def _request(call: Call) -> list:
    client = call.communicators("request")
    if isinstance(client, Absent):
        return _regroup(call, [None] * sum(len(registration.specs) for registration in call.registrations))
    return _regroup(call, client.request(call.args, call.kwargs))


def _disable(call: Call) -> list:
    return [None] * len(call.registrations)


_MODES = {"publish": _publish, "listen": _listen, "transceive": _transceive, "reemit": _reemit,
          "receive": _receive, "reply": _reply, "request": _request, "disable": _disable}


# -- returns <-> one value per decorator spec ------------------------------------------------------

def _per_decorator(call: Call, returns: Any) -> list[list]:
    """Split a method's returns into one list of values per decorator (a list-form decorator's
    value is its list of items), checking that they match the decorators."""
    registrations = call.registrations
    if len(registrations) == 1 and not registrations[0].is_list and type(returns) is tuple and len(returns) == 1:
        return [[returns[0]]]  # one decorator, one value: the common case, checked in one step
    name = call.func.__qualname__
    if not isinstance(returns, (tuple, list)) or len(returns) != len(call.registrations):
        raise ConfigurationError(
            f"{name} has {len(call.registrations)} register decorator(s), so it must return a "
            f"tuple of {len(call.registrations)} value(s) (e.g. `return value,`), got {type(returns).__name__}"
        )
    values = []
    for value, registration in zip(returns, call.registrations):
        if not registration.is_list:
            values.append([value])
        elif isinstance(value, (tuple, list)) and len(value) == len(registration.specs):
            values.append(list(value))
        else:
            raise ConfigurationError(
                f"{name}: a list-form register decorator names {len(registration.specs)} topics, "
                f"so its value must be a list of {len(registration.specs)} items"
            )
    return values


def _regroup(call: Call, flat: list) -> list:
    """The inverse of flattening: one item per decorator, a list for a list-form decorator."""
    if len(call.registrations) == 1 and not call.registrations[0].is_list:
        return flat  # one decorator, one value: already grouped
    grouped, start = [], 0
    for registration in call.registrations:
        items = flat[start:start + len(registration.specs)]
        start += len(registration.specs)
        grouped.append(items if registration.is_list else items[0])
    return grouped
