"""The decorator and the per-instance modes: Wrapyfi's programming model, our bookkeeping.

``MiddlewareCommunicator.register`` attaches one communication spec per decorator to a method;
``activate_communication`` gives an instance a mode for that method. Calling the method then runs
it normally (mode None) or as its mode says (:mod:`wrapyfi_like.connect.modes`: publish, listen,
reply, request, transceive, reemit, receive, disable). Publishers, listeners, servers and clients
are built on the first call, when ``$0``/``$name`` references to the call's arguments can be
resolved. A :class:`~wrapyfi_like.config.ConfigManager` file can set the modes instead.

This module only keeps books: which instance has which mode and which communicators. Encoding
lives in :mod:`wrapyfi_like.encoding`, sockets in :mod:`wrapyfi_like.middlewares`.
"""

from __future__ import annotations

import functools
import os
import threading
import weakref
from typing import Any, Callable, ContextManager, Optional, Union

from wrapyfi_like.config.manager import ConfigManager
from wrapyfi_like.connect import keywords, modes
from wrapyfi_like.data_types import data_type_class
from wrapyfi_like.exceptions import ClosedError, ConfigurationError
from wrapyfi_like.logs import truncate
from wrapyfi_like.middlewares import MIDDLEWARES, is_available

DEFAULT_COMMUNICATOR = os.environ.get("WRAPYFI_DEFAULT_COMMUNICATOR", "zeromq")
DEFAULT_COMMUNICATOR = os.environ.get("WRAPYFI_DEFAULT_MWARE", DEFAULT_COMMUNICATOR)

MODES = modes.MODES
_BINDINGS_ATTR = "_wrapyfi_like_bindings"
_CONFIG_ATTR = "_wrapyfi_like_config"
_FINALIZER_ATTR = "_wrapyfi_like_finalizer"
_MODES_STATE = "_wrapyfi_like_modes"
"""The key under which a pickled instance carries its activated modes."""
_COUNTS = ("sent", "received", "dropped", "malformed", "missed", "duplicate", "incomplete")
_NO_BINDINGS: dict = {}


class _Spec:
    """One communicator as a decorator describes it, before ``$`` references are resolved.

    This and :class:`_Registration` are plain classes, not dataclasses: a dataclass runs
    generated code when its module is imported, about 1 ms each, and import time is measured.
    """

    __slots__ = ("data_type", "middleware", "args", "kwargs")

    def __init__(self, data_type: str, middleware: str, args: tuple, kwargs: dict) -> None:
        self.data_type = data_type
        self.middleware = middleware
        self.args = args
        self.kwargs = kwargs

    def resolve(self, role: str, call_args: tuple, named: dict) -> tuple[tuple, dict]:
        """The decorator's args and kwargs for ``role`` (its ``publisher_kwargs`` or
        ``listener_kwargs`` merged in), with ``$`` references resolved and the middleware named."""
        kwargs = {k: v for k, v in self.kwargs.items() if k not in modes.ROLE_KWARGS.values()}
        kwargs.update(self.kwargs.get(modes.ROLE_KWARGS[role]) or {})
        resolve = functools.partial(_resolve, call_args=call_args, named=named)
        args = tuple(resolve(arg) for arg in self.args)
        kwargs = {key: resolve(value) for key, value in kwargs.items()}
        middleware = resolve(self.middleware)
        kwargs["middleware"] = DEFAULT_COMMUNICATOR if middleware is None else middleware  # `mware=None` defaults
        return args, kwargs


class _Registration:
    """What one ``register`` decorator attached: a single spec, or a list (Wrapyfi's list form,
    where one returned value is a list whose items each go to their own topic)."""

    __slots__ = ("specs", "is_list")

    def __init__(self, specs: tuple[_Spec, ...], is_list: bool) -> None:
        self.specs = specs
        self.is_list = is_list


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
    """One instance's mode for one method, and the communicators built for it, by role.

    Once closed it builds nothing: a call that began before ``close()`` (another thread's, between
    two listens) would otherwise build a new listener nobody closes, and wait on it for good.
    """

    def __init__(self, mode: Optional[str]) -> None:
        self.mode = mode
        self.direct: Optional[Callable[[Any, tuple, dict], Any]] = None  # set by modes.run, see there
        self._communicators: dict[str, Any] = {}
        self._state: dict[str, Any] = {}
        self.lock = threading.Lock()
        self._closed = False

    def communicators(self, role: str, build: Callable[[], Any]) -> Any:
        built = self._communicators.get(role)  # every call after the first: no lock needed to read
        if built is None:
            with self.lock:
                if self._closed:
                    raise ClosedError("this instance was closed while the call was starting")
                built = self._communicators.get(role)
                if built is None:
                    built = self._communicators[role] = build()
        return built

    def state(self, key: str, build: Callable[[], Any]) -> Any:
        """Per-binding state a mode keeps between calls (e.g. a stacked method's call groups),
        built on first use; it goes when the binding closes."""
        made = self._state.get(key)
        if made is None:
            with self.lock:
                made = self._state.get(key)
                if made is None:
                    made = self._state[key] = build()
        return made

    def built(self) -> list:
        """Every publisher, listener, server and client built so far, flattened."""
        with self.lock:
            return [item for built in self._communicators.values() for item in _flatten(built)]

    def close(self) -> None:
        with self.lock:
            self._closed = True
            self.direct = None
            for built in self._communicators.values():
                _close(built)
            self._communicators.clear()
            self._state.clear()


def _flatten(built: Any) -> list:
    return [leaf for item in built for leaf in _flatten(item)] if isinstance(built, list) else [built]


def _close(built: Any) -> None:
    if isinstance(built, list):
        for item in built:
            _close(item)
    else:
        built.close()


class _ConfigView:
    """``instance.config``: the mode configuration in effect (``{class name: {method: mode}}``, empty
    when none is loaded), as Wrapyfi's ``self.config``. A non-data descriptor, so a subclass that
    assigns its own ``self.config`` simply gets its attribute."""

    def __get__(self, instance: Any, owner: type) -> dict:
        manager = ConfigManager.active()
        return manager.config if manager is not None else {}


class MiddlewareCommunicator:
    """Base class for classes whose methods communicate; Wrapyfi-compatible public API."""

    config = _ConfigView()

    _instances: "weakref.WeakSet[MiddlewareCommunicator]" = weakref.WeakSet()
    _activation_order: dict[str, list] = {}
    _class_lock = threading.Lock()

    def __init__(self) -> None:
        _apply_config(self)

    @classmethod
    def register(cls, data_type: Union[str, list], middleware: str = DEFAULT_COMMUNICATOR,
                 *args: Any, **kwargs: Any) -> Callable:
        """Decorate a method; stack several for a method returning a tuple (top = element 0).

        ``args`` are ``class_name, topic`` as in Wrapyfi; kwargs include ``carrier``,
        ``should_wait``, ``publisher_kwargs``, ``listener_kwargs`` and anything the data type or
        plugins take. Any of them may be ``"$0"``/``"$name"``, resolved from the first call.
        Keywords are checked now (:mod:`wrapyfi_like.connect.keywords`): an unknown one raises
        ``ConfigurationError`` with the closest names, as does an unknown middleware; ``"none"``
        and Wrapyfi's middlewares that this package lacks are absent, not unknown
        (:mod:`wrapyfi_like.connect.fallback`).
        """
        registration = _registration(data_type, middleware, args, kwargs)

        def encapsulate(func: Callable) -> Callable:
            registrations = getattr(func, "_wrapyfi_like_registrations", None)
            if registrations is not None:
                registrations.insert(0, registration)
                return func

            qualname = func.__qualname__
            registrations = [registration]  # decorators stacked above insert theirs at the front

            @functools.wraps(func)
            def wrapper(self, *call_args: Any, **call_kwargs: Any) -> Any:
                if ConfigManager._current is not None:  # read in place: two calls per message otherwise
                    _apply_config(self)
                binding = self.__dict__.get(_BINDINGS_ATTR, _NO_BINDINGS).get(qualname)
                if binding is None or binding.mode is None:
                    return func(self, *call_args, **call_kwargs)
                try:
                    direct = binding.direct
                    if direct is not None:
                        return direct(self, call_args, call_kwargs)
                    return modes.run(binding.mode, modes.Call(func, self, call_args, call_kwargs, registrations, binding))
                except KeyboardInterrupt as interrupt:
                    if _raised_inside(interrupt, func):
                        raise  # Ctrl-C in the method's own body: the user needs those frames
                    # Ctrl-C while waiting on the network: the user's call is the whole story
                    raise KeyboardInterrupt from None

            wrapper._wrapyfi_like_registrations = registrations
            wrapper._wrapyfi_like_func = func
            return wrapper

        return encapsulate

    def activate_communication(self, func: Union[str, Callable], mode: Union[str, None, list],
                               id_postfix: Optional[str] = None) -> None:
        """Give this instance ``mode`` for ``func`` (a method or its name).

        A list of modes gives the n-th instance (in order of activation) the n-th mode.
        ``id_postfix`` is accepted for Wrapyfi compatibility and has no effect: Wrapyfi uses it
        internally to keep a second registry entry for the listening half of ``transceive`` and
        ``reemit``; here each instance keeps both halves in one binding.
        """
        _apply_config(self)
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
        bindings = _bindings(self)
        if qualname in bindings:
            bindings[qualname].close()
        bindings[qualname] = _Binding(mode)
        MiddlewareCommunicator._instances.add(self)

    def loan(self, func: Union[str, Callable], shape: Any, dtype: Any, *call_args: Any,
             **call_kwargs: Any) -> ContextManager[Any]:
        """``with obj.loan(Cls.method, shape, dtype) as arr: fill(arr)``: publish ``arr``, filled in
        place, as the method's return value, without running the method.

        For a method this instance publishes (``publish`` mode) with one ``register`` decorator
        whose value is one array; ``call_args``/``call_kwargs`` stand for the method's arguments
        (for ``$`` references in its topic). With ``carrier="shm"`` the array lies in a
        listener's shared memory and reaches it without any copy (docs/guide/shm.md); otherwise
        it is an ordinary array, published when the block ends.
        """
        method = getattr(type(self), func) if isinstance(func, str) else func
        inner = getattr(method, "_wrapyfi_like_func", None)
        if inner is None:
            raise ConfigurationError(f"{getattr(method, '__qualname__', method)!r} is not decorated with register")
        binding = self.__dict__.get(_BINDINGS_ATTR, _NO_BINDINGS).get(inner.__qualname__)
        registrations = method._wrapyfi_like_registrations
        if binding is None or binding.mode != "publish" or len(registrations) != 1 or registrations[0].is_list:
            raise ConfigurationError(f"loan needs {inner.__qualname__} activated in publish mode, "
                                     "with one register decorator")
        (publisher,), = modes.Call(inner, self, call_args, call_kwargs, registrations, binding).communicators("publish")
        loan = getattr(publisher, "loan", None)
        if loan is None:
            raise ConfigurationError(f"{inner.__qualname__}'s middleware is not installed: nothing to loan from")
        return loan(shape, dtype)

    def _activation_index(self, qualname: str) -> int:
        with MiddlewareCommunicator._class_lock:
            order = MiddlewareCommunicator._activation_order.setdefault(qualname, [])
            order[:] = [ref for ref in order if ref() is not None]
            for index, ref in enumerate(order):
                if ref() is self:
                    return index
            order.append(weakref.ref(self))
            return len(order) - 1

    def __getstate__(self) -> dict:
        """What travels when an instance is pickled (e.g. to a ``spawn``-started process).

        The user's attributes and the activated mode of each method travel; communicators and
        locks do not (sockets belong to the process that opened them). The copy builds its own
        publishers and listeners on the first call of each method, in the process it runs in.
        """
        state = {key: value for key, value in self.__dict__.items()
                 if key not in (_BINDINGS_ATTR, _CONFIG_ATTR, _FINALIZER_ATTR)}
        modes_by_method = {qualname: binding.mode for qualname, binding in self.__dict__.get(_BINDINGS_ATTR, {}).items()}
        if modes_by_method:
            state[_MODES_STATE] = modes_by_method
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        modes_by_method = state.pop(_MODES_STATE, {})
        self.__dict__.update(state)
        _apply_config(self)  # a config file loaded in this process applies, as to a new instance ...
        if modes_by_method:  # ... but the modes the instance had win, as explicit activations do
            bindings = _bindings(self)
            for qualname, mode in modes_by_method.items():
                if qualname in bindings:
                    bindings[qualname].close()
                bindings[qualname] = _Binding(mode)
            MiddlewareCommunicator._instances.add(self)

    def close(self) -> None:
        """Close this instance's publishers and listeners; its methods then run normally.

        Any call of this instance waiting in another thread ends with
        :class:`~wrapyfi_like.exceptions.ClosedError`. An instance that is garbage-collected, or
        still open when the interpreter exits, is closed the same way, so its listeners and
        publishers leave discovery with it.
        """
        self.__dict__.pop(_BINDINGS_ATTR, None)
        finalizer = self.__dict__.pop(_FINALIZER_ATTR, None)
        if finalizer is not None:
            finalizer()

    def stats(self) -> dict[str, dict[str, dict[str, int]]]:
        """Message counts of this instance's communicators: ``{method name: {topic: counts}}``.

        ``counts`` is ``{"sent", "received", "dropped", "malformed"}``: messages published (or
        requests sent, or replies served), valid messages received, messages not delivered by the
        ``backpressure`` policy (or replies whose client was gone), and invalid messages skipped.
        ``missed`` (messages that never arrived: gaps in their publishers' sequence numbers),
        ``duplicate`` (repeats skipped) and ``incomplete`` (parts of a stacked method's call
        discarded because another part of that call never arrived) are counted by listeners;
        :meth:`publisher_stats` breaks a listener's counts down by publisher. ``carrier="shm"``
        communicators add their ``shm*`` counts (docs/guide/shm.md). A method whose
        publisher and listener share a topic (``transceive``) has their counts added.
        Communicators count from when they are built (the first call) until ``close()``.
        """
        result: dict[str, dict[str, dict[str, int]]] = {}
        for qualname, binding in self.__dict__.get(_BINDINGS_ATTR, {}).items():
            per_topic = result.setdefault(qualname.rsplit(".", 1)[-1], {})
            for communicator in binding.built():
                topic = getattr(communicator, "out_topic", None) or communicator.in_topic
                counts = per_topic.setdefault(topic, dict.fromkeys(_COUNTS, 0))
                for key, value in communicator.stats().items():
                    counts[key] = counts.get(key, 0) + value
        return result

    def publisher_stats(self) -> dict[str, dict[str, dict[str, dict[str, int]]]]:
        """What this instance's listeners heard from each publisher:
        ``{method name: {topic: {publisher id (hex): {"received", "missed", "duplicate", "dropped"}}}}``.

        A publisher id is random per publisher (a restarted publisher is a new one), so a gap is
        pinned on the stream it happened in. Topics only published on have no entry.
        """
        result: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
        for qualname, binding in self.__dict__.get(_BINDINGS_ATTR, {}).items():
            per_topic = result.setdefault(qualname.rsplit(".", 1)[-1], {})
            for communicator in binding.built():
                heard = getattr(communicator, "publisher_stats", None)
                if heard is not None and getattr(communicator, "in_topic", None):
                    per_topic.setdefault(communicator.in_topic, {}).update(heard())
        return result

    @classmethod
    def close_all_instances(cls) -> None:
        for instance in list(MiddlewareCommunicator._instances):
            instance.close()

    @classmethod
    def close_instance(cls, instance_addr: Optional[str] = None) -> None:
        """Close the instance whose address is ``instance_addr`` (``hex(id(instance))``, as in
        Wrapyfi), or every instance if it is None.

        Raises ``ConfigurationError`` (a ``ValueError``, as Wrapyfi-era callers expect) if no
        open instance has that address.
        """
        if instance_addr is None:
            cls.close_all_instances()
            return
        for instance in list(MiddlewareCommunicator._instances):
            if hex(id(instance)) == instance_addr:
                instance.close()
                return
        raise ConfigurationError(f"no open MiddlewareCommunicator instance at {truncate(instance_addr)}")

    @staticmethod
    def get_communicators() -> set[str]:
        """The names of the available middlewares."""
        return set(MIDDLEWARES)


def _bindings(instance: MiddlewareCommunicator) -> dict[str, _Binding]:
    """The instance's bindings by method, created with the finalizer that closes them when the
    instance is garbage-collected or the interpreter exits (Wrapyfi closes in ``__del__``; a
    finalizer also runs for instances in reference cycles and never resurrects one)."""
    bindings = instance.__dict__.get(_BINDINGS_ATTR)
    if bindings is None:
        bindings = instance.__dict__[_BINDINGS_ATTR] = {}
        instance.__dict__[_FINALIZER_ATTR] = weakref.finalize(instance, _close_bindings, bindings)
    return bindings


def _close_bindings(bindings: dict[str, _Binding]) -> None:
    for binding in list(bindings.values()):
        binding.close()
    bindings.clear()


def _raised_inside(error: BaseException, func: Callable) -> bool:
    """Whether ``func``'s own code was running when ``error`` was raised."""
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code is func.__code__:
            return True
        tb = tb.tb_next
    return False


def _registration(data_type: Union[str, list], middleware: str, args: tuple, kwargs: dict) -> _Registration:
    if isinstance(data_type, str):
        return _Registration((_checked_spec(data_type, middleware, args, kwargs),), is_list=False)
    if isinstance(data_type, list):
        specs = []
        for item in data_type:
            item_kwargs = next((a for a in item[2:] if isinstance(a, dict)), {})
            specs.append(_checked_spec(item[0], item[1], tuple(a for a in item[2:] if not isinstance(a, dict)),
                                       item_kwargs))
        return _Registration(tuple(specs), is_list=True)
    raise ConfigurationError(f"data_type must be a name or a list of specs, got {data_type!r}")


def _default_source() -> Optional[str]:
    """The environment variable the default middleware came from, if any."""
    for name in ("WRAPYFI_DEFAULT_MWARE", "WRAPYFI_DEFAULT_COMMUNICATOR"):
        if os.environ.get(name) == DEFAULT_COMMUNICATOR:
            return name
    return None


def _checked_spec(data_type: str, middleware: Any, args: tuple, kwargs: dict) -> _Spec:
    """A spec whose data type, middleware and kwargs are known, so a mistake is raised when the
    class is defined, not at the first call. For a ``$`` reference the default middleware is
    checked: the argument may be left None, which means the default."""
    data_type_class(data_type)
    if isinstance(middleware, str):
        checked = DEFAULT_COMMUNICATOR if middleware.startswith("$") else middleware
        try:
            is_available(checked)
        except ConfigurationError as error:
            source = _default_source() if checked == DEFAULT_COMMUNICATOR else None
            if source is None:
                raise
            raise ConfigurationError(f"{source}: {error}") from None
    where = f"register({', '.join(map(repr, (data_type, middleware, *args)))})"
    keywords.check(data_type, kwargs, where)
    return _Spec(data_type, middleware, args, kwargs)


def _apply_config(instance: MiddlewareCommunicator) -> None:
    """Give ``instance`` the modes the loaded :class:`ConfigManager` lists for its class, once.

    Called from ``__init__`` and, for subclasses that skip ``super().__init__()``, from the first
    ``activate_communication`` or decorated call, so explicit activations made later still win.
    """
    manager = ConfigManager.active()
    if manager is None or instance.__dict__.get(_CONFIG_ATTR) is manager:
        return
    instance.__dict__[_CONFIG_ATTR] = manager
    manager.check_class_names(cls.__name__ for cls in _communicator_classes(MiddlewareCommunicator))
    class_name = type(instance).__name__
    for method_name, mode in manager.modes_for(class_name).items():
        method = getattr(type(instance), method_name, None)
        if getattr(method, "_wrapyfi_like_func", None) is None:
            decorated = [name for name in dir(type(instance))
                         if hasattr(getattr(type(instance), name, None), "_wrapyfi_like_func")]
            raise manager.method_typo_error(class_name, method_name, decorated)
        instance.activate_communication(method, mode)


def _communicator_classes(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_communicator_classes(sub))
    return found
