"""One keyword schema per communicator kind: which ``register`` kwargs mean what, checked early.

Why: Wrapyfi hands every decorator kwarg to every communicator, which silently ignores those it
does not take, so ``backpresure="drop"`` builds a blocking publisher and nobody is told. Here
``register`` checks each kwarg when the class is defined, and an unknown one raises
:class:`~wrapyfi_like.exceptions.ConfigurationError` with the closest names.

A kwarg is known to a kind (``publish``, ``listen``, ``reply``, ``request``) if it is

- a parameter of that kind's communicator (:class:`~wrapyfi_like.connect.publishers.Publisher`,
  ``Listener``, ``Server``, ``Client``) or of its :class:`~wrapyfi_like.connect.formats.ValueFormat`
  (``serializer``, ``serializers``, ``message_type``, ``on_invalid``), or Wrapyfi's name for one
  (``class_name``, ``out_topic``/``in_topic``);
- a parameter of the decorator's data type (``Image``: ``width``, ``jpg`` …);
- a plugin's: a named parameter of a registered plugin's ``__init__`` (Wrapyfi's documented way
  for a plugin to take settings, e.g. ``load_torch_device``), a name in a plugin class's
  ``accepted_kwargs`` tuple (for plugins that read their settings from ``**kwargs``), or a
  built-in plugin's (from its index, before it is loaded);
- one of :data:`WRAPYFI_NO_EFFECT`: kwargs Wrapyfi's communicators take (for ZeroMQ's broker, or
  for other middlewares) that mean nothing here; accepted so that Wrapyfi scripts run, and
  dropped before the communicator is built.

Top-level kwargs go to every kind, as in Wrapyfi, so each must be known to at least one kind and
each kind takes its own; ``publisher_kwargs`` must hold publisher or server kwargs,
``listener_kwargs`` listener or client kwargs.

Applied with Wrapyfi's meaning on Wrapyfi's wire (``wire="wrapyfi"`` or ``WRAPYFI_LIKE_WIRE``):
``socket_ip`` and each kind's ``socket_*_port`` (:data:`SOCKET_KWARGS`; no effect on the native
wire, whose listeners bind ports found through discovery). Applied everywhere: ``queue_size`` (ROS's queue length) is ``queue_depth``; a
``carrier`` other than ``"tcp"``/``"ipc"``/``"shm"`` (``""``, ``"mcast"``, ``"udp"`` …) uses tcp, as Wrapyfi's
ZeroMQ backend does, with one WARNING per carrier name and process.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from typing import Any, Optional

from wrapyfi_like.connect.clients import Client
from wrapyfi_like.connect.formats import ValueFormat
from wrapyfi_like.connect.listeners import Listener
from wrapyfi_like.connect.publishers import Publisher
from wrapyfi_like.connect.servers import Server
from wrapyfi_like.data_types import data_type_class
from wrapyfi_like.exceptions import ConfigurationError
from wrapyfi_like.middlewares import wire_setting
from wrapyfi_like.middlewares.base import CARRIERS
from wrapyfi_like.utils import plugin_discovery
from wrapyfi_like.utils.core_utils import PluginRegistrar

logger = logging.getLogger("wrapyfi_like.connect")

COMMUNICATORS = {"publish": Publisher, "listen": Listener, "reply": Server, "request": Client}
ROLE_KWARGS = {"publisher_kwargs": ("publish", "reply"), "listener_kwargs": ("listen", "request")}
"""Which kinds each one-side dict refines (a server publishes, a client listens, as in Wrapyfi)."""
ALIASES = {"class_name": "name"}
"""Wrapyfi's kwarg names for the communicators' parameters (``out_topic``/``in_topic`` are their own)."""

_BROKER = ("zeromq_kwargs", "start_proxy_broker", "proxy_broker_spawn")
_MONITOR = ("pubsub_monitor_topic", "start_pubsub_monitor_broker", "pubsub_monitor_listener_spawn")
_OTHER_MIDDLEWARES = ("persistent", "yarp_kwargs", "ros_kwargs", "ros2_kwargs", "zenoh_kwargs", "ip", "port",
                      "mode", "websocket_kwargs", "socket_port", "namespace", "broker_address", "broker_port",
                      "mqtt_kwargs", "monitor_listener_spawn", "out_topic_connect")
_WRAPYFI_PLUGINS = ("load_mxnet_device", "map_mxnet_devices", "load_paddle_device", "map_paddle_devices",
                    "load_cupy_device", "map_cupy_devices")
WRAPYFI_NO_EFFECT: dict[str, frozenset[str]] = {
    "publish": frozenset((*_BROKER, *_MONITOR, *_OTHER_MIDDLEWARES, *_WRAPYFI_PLUGINS, "multi_threaded",
                          "serializer_kwargs")),
    "listen": frozenset((*_BROKER, *_MONITOR, *_OTHER_MIDDLEWARES, *_WRAPYFI_PLUGINS, "deserializer_kwargs")),
    "reply": frozenset((*_BROKER, *_OTHER_MIDDLEWARES, *_WRAPYFI_PLUGINS, "serializer_kwargs", "deserializer_kwargs")),
    "request": frozenset((*_BROKER, *_OTHER_MIDDLEWARES, *_WRAPYFI_PLUGINS, "serializer_kwargs",
                          "deserializer_kwargs")),
}
"""Per kind, the Wrapyfi kwargs accepted with no effect here, and why:

- ``zeromq_kwargs``, ``start_proxy_broker``, ``proxy_broker_spawn``
  and the ``pubsub_monitor_*`` ones configure Wrapyfi's ZeroMQ proxy broker and its subscriber
  monitor; there is no broker here (listeners bind, found through discovery;
  ``WRAPYFI_ZEROMQ_SOCKET_IP`` sets the address).
- ``multi_threaded``: every communicator here is thread-safe already.
- ``serializer_kwargs``/``deserializer_kwargs``: arguments for Wrapyfi's JSON encoder; there is no
  JSON here.
- ``persistent``, ``out_topic_connect``, ``*_kwargs`` of YARP/ROS/ROS 2/Zenoh/websocket/MQTT and their
  addresses: settings of middlewares this package does not have.
- ``load_/map_`` device kwargs of MXNet, PaddlePaddle and CuPy: no effect unless a plugin for that
  library is installed, which then takes them.
"""
SOCKET_KWARGS: dict[str, tuple[str, ...]] = {
    "publish": ("socket_ip", "socket_pub_port", "socket_sub_port"),
    "listen": ("socket_ip", "socket_pub_port", "socket_sub_port"),
    "reply": ("socket_ip", "socket_rep_port", "socket_req_port"),
    "request": ("socket_ip", "socket_rep_port"),
}
"""Per kind, where Wrapyfi's broker and device are (see
:mod:`wrapyfi_like.middlewares.wrapyfi_zeromq.settings`); passed on as ``wire_sockets``."""
_ALL_SOCKET_KWARGS = frozenset(name for names in SOCKET_KWARGS.values() for name in names)
WIRE_SOCKETS = "wire_sockets"
QUEUE_SIZE = "queue_size"

_warned_carriers: set[str] = set()
_warned_lock = threading.Lock()


@functools.lru_cache(maxsize=1024)
def _parameters(func: Any) -> frozenset[str]:
    """The named parameters of ``func`` (no ``self``, ``*args`` or ``**kwargs``)."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return frozenset()
    return frozenset(p.name for p in params if p.name != "self"
                     and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


_OWN = {kind: ((set(_parameters(cls)) | _parameters(ValueFormat)) - {"data_type", "value_formats", "middleware", "name"})
        | set(ALIASES) for kind, cls in COMMUNICATORS.items()}
"""Each kind's own kwargs: its communicator's parameters and its value format's (``serializer``,
``message_type`` …), under Wrapyfi's names too."""
_OWN["reply"].discard("call_signature")  # the method's signature, passed by the reply mode itself
for _kind in COMMUNICATORS:
    _OWN[_kind].discard(WIRE_SOCKETS)  # built by for_kind from the socket_* kwargs
    _OWN[_kind].update(SOCKET_KWARGS[_kind])
for _kind in ("listen", "reply", "request"):
    _OWN[_kind].add("allowed_plugins")  # the codec's: which received codec ids may import a library
for _kind in ("publish", "listen"):
    _OWN[_kind].add(QUEUE_SIZE)


_plugin_kwargs: tuple[int, frozenset[str]] = (-1, frozenset())
"""The last :func:`plugin_kwargs` answer, with the registrar generation it was computed at."""


def plugin_kwargs() -> frozenset[str]:
    """Every kwarg a plugin takes: built-in ones from the index, registered ones from their
    ``__init__`` parameters and ``accepted_kwargs`` (recomputed only when plugins were registered)."""
    global _plugin_kwargs
    generation = PluginRegistrar.generation
    if _plugin_kwargs[0] == generation:
        return _plugin_kwargs[1]
    names = {name for entry in plugin_discovery.builtin_index() for name in entry.kwargs}
    for cls in set(PluginRegistrar.decoder_registry.values()) | set(PluginRegistrar.encoder_registry.values()):
        names |= _parameters(cls.__init__)
        names |= set(getattr(cls, "accepted_kwargs", ()))
    _plugin_kwargs = (generation, frozenset(names))
    return _plugin_kwargs[1]


def schema(kind: str, data_type: str, plugins: Optional[frozenset[str]] = None) -> frozenset[str]:
    """Every kwarg a ``kind`` communicator of ``data_type`` accepts."""
    plugins = plugin_kwargs() if plugins is None else plugins
    return (_OWN[kind] | _parameters(data_type_class(data_type)) | plugins | WRAPYFI_NO_EFFECT[kind])


def check(data_type: str, kwargs: dict, where: str) -> None:
    """Raise ``ConfigurationError`` for any kwarg of one ``register`` decorator that no kind takes.

    Plugins not loaded yet (``WRAPYFI_PLUGIN_PATHS``, entry points) are loaded before a name is
    declared unknown, so a plugin's kwargs are known as they are in Wrapyfi, which loads plugins
    at import.
    """
    for key in ROLE_KWARGS:
        value = kwargs.get(key)
        if value is not None and not isinstance(value, dict):
            raise ConfigurationError(f"{where}: {key} must be a dict, got {type(value).__name__}")
    for where_given in (kwargs, kwargs.get("publisher_kwargs") or {}, kwargs.get("listener_kwargs") or {}):
        wire = where_given.get("wire")
        if wire is not None and not (isinstance(wire, str) and wire.startswith("$")):  # "$arg": known at a call
            wire_setting(wire)  # a bad value fails when the class is defined, not at the first call
    groups = [(tuple(COMMUNICATORS), [k for k in kwargs if k not in ROLE_KWARGS])]
    groups += [(kinds, list(kwargs.get(key) or {})) for key, kinds in ROLE_KWARGS.items()]
    if not any(names for _, names in groups):
        return
    plugins = plugin_kwargs()
    unknown = _unknown(groups, data_type, plugins)
    if unknown:
        plugin_discovery.load_external_plugins()
        plugin_discovery.load_entry_point_plugins()
        plugins = plugin_kwargs()
        unknown = _unknown(groups, data_type, plugins)
    if unknown:
        kinds, name = unknown[0]
        side = "" if len(kinds) == len(COMMUNICATORS) else f" in {'publisher' if 'publish' in kinds else 'listener'}_kwargs"
        if any(name in schema(kind, data_type, plugins) for kind in COMMUNICATORS):
            other = "listener_kwargs" if "publish" in kinds else "publisher_kwargs"
            raise ConfigurationError(f"{where}: {name!r}{side} is not a keyword of that side; give it in "
                                     f"{other} or at the top level")
        import difflib  # only on a mistake: import time is measured

        known = set().union(*(schema(kind, data_type, plugins) for kind in kinds))
        close = difflib.get_close_matches(name, sorted(known), n=3)
        hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
        raise ConfigurationError(
            f"{where}: unknown keyword {name!r}{side} for a {data_type} communicator; {hint}"
            "see docs/guide/register.md for every keyword (a plugin that reads a setting from **kwargs "
            "declares it as a parameter of its __init__ or in its accepted_kwargs)"
        )


def _unknown(groups: list, data_type: str, plugins: frozenset[str]) -> list[tuple[tuple[str, ...], str]]:
    found = []
    for kinds, names in groups:
        known = set().union(*(schema(kind, data_type, plugins) for kind in kinds))
        found += [(kinds, name) for name in names if name not in known]
    return found


def for_kind(kind: str, kwargs: dict, topic: Any) -> dict:
    """The kwargs a ``kind`` communicator is built with: Wrapyfi's no-effect ones and other kinds'
    own ones dropped, ``queue_size`` applied as ``queue_depth``, the carrier made one we have.
    Everything else (data type and plugin settings) goes through."""
    others = set().union(*(_OWN[other] for other in COMMUNICATORS if other != kind)) - _OWN[kind]
    drop = (others | WRAPYFI_NO_EFFECT[kind] | _ALL_SOCKET_KWARGS) - (_OWN[kind] - _ALL_SOCKET_KWARGS)
    built = {key: value for key, value in kwargs.items() if key not in drop}
    sockets = {key: kwargs[key] for key in SOCKET_KWARGS[kind] if key in kwargs}
    if sockets and wire_setting(kwargs.get("wire")) != "native":  # on the native wire they mean nothing
        built[WIRE_SOCKETS] = sockets
    if QUEUE_SIZE in built:
        queue_size = built.pop(QUEUE_SIZE)
        if built.get("queue_depth") is None:
            built["queue_depth"] = queue_size
    if "carrier" in built:
        built["carrier"] = carrier(built["carrier"], topic)
    return built


def for_format(kind: str, kwargs: dict) -> dict:
    """The kwargs of a ``kind`` service's value format: :func:`for_kind`'s, without the ones
    only its transport takes (the middleware and wire stay: they choose the codec)."""
    built = for_kind(kind, kwargs, None)
    for transport_only in ("carrier", WIRE_SOCKETS):
        built.pop(transport_only, None)
    return built


def carrier(name: Any, topic: Any) -> Any:
    """``name`` if this package has that carrier; else tcp, warned once per name."""
    if name in CARRIERS or not isinstance(name, str):
        return name
    with _warned_lock:
        first = name not in _warned_carriers
        _warned_carriers.add(name)
    if first:
        logger.warning("carrier %r (first on %s) is not one of wrapyfi_like's (tcp, ipc, shm): using tcp, "
                       "as Wrapyfi's ZeroMQ backend does", name, topic)
    return "tcp"
