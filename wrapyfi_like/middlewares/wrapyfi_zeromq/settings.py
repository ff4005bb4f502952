"""Where Wrapyfi 0.5.0's ZeroMQ sockets are: its environment names and ``register`` kwargs.

Wrapyfi gives one name different meanings by role, and a node speaking its wire must read them the
same way, or the two sides meet on different ports:

| role | socket | kwarg | variable (default) |
|---|---|---|---|
| publisher, listener | broker XPUB (listeners connect) | ``socket_pub_port`` | ``WRAPYFI_ZEROMQ_SOCKET_PUB_PORT`` (5555) |
| publisher | broker XSUB (publishers connect) | ``socket_sub_port`` | ``WRAPYFI_ZEROMQ_SOCKET_SUB_PORT`` (5556) |
| server | device ROUTER (clients connect) | ``socket_rep_port`` | ``WRAPYFI_ZEROMQ_SOCKET_REQ_PORT`` (5558) |
| server | device DEALER (servers' REP connect) | ``socket_req_port`` | ``WRAPYFI_ZEROMQ_SOCKET_REP_PORT`` (5559) |
| client | device ROUTER | ``socket_rep_port`` | ``WRAPYFI_ZEROMQ_SOCKET_REP_PORT`` (5558) |

All roles take ``socket_ip`` / ``WRAPYFI_ZEROMQ_SOCKET_IP`` (127.0.0.1), and the monitor topic
``WRAPYFI_ZEROMQ_PUBSUB_MONITOR_TOPIC`` (``ZEROMQ/CONNECTIONS``). Listeners read the XSUB port
too (they announce themselves there, see :mod:`.pubsub`). Variables are read when a communicator
is built, so a test can give each process its own ports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from wrapyfi_like.exceptions import ConfigurationError

SOCKET_KWARGS = ("socket_ip", "socket_pub_port", "socket_sub_port", "socket_rep_port", "socket_req_port")
"""The ``register`` kwargs this wire applies (on the native wire they have no effect)."""

_DEFAULTS = {"SOCKET_PUB_PORT": 5555, "SOCKET_SUB_PORT": 5556, "SOCKET_REQ_PORT": 5558, "SOCKET_REP_PORT": 5559}


def _port(kwarg: Optional[int], variable: str, default: int) -> int:
    name = f"WRAPYFI_ZEROMQ_{variable}"
    if kwarg is not None:
        value, source = kwarg, "its kwarg"
    else:
        text = os.environ.get(name, "").strip()
        if not text:
            return default
        try:
            value, source = int(text, 10), name
        except ValueError:
            raise ConfigurationError(f"{name} must be a port number 1-65535, got {text[:40]!r}") from None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise ConfigurationError(f"{source} must be a port number 1-65535, got {value!r:.40}")
    return value


def _ip(socket_ip: Optional[str]) -> str:
    ip = socket_ip if socket_ip is not None else os.environ.get("WRAPYFI_ZEROMQ_SOCKET_IP", "127.0.0.1")
    if not isinstance(ip, str) or not ip or any(c in ip for c in "/: "):
        raise ConfigurationError(f"socket_ip / WRAPYFI_ZEROMQ_SOCKET_IP must be a host address, got {ip!r:.60}")
    return ip


def monitor_topic() -> str:
    return os.environ.get("WRAPYFI_ZEROMQ_PUBSUB_MONITOR_TOPIC", "ZEROMQ/CONNECTIONS")


@dataclass(frozen=True)
class BrokerAddress:
    """The pub/sub broker: listeners connect to ``xpub``, publishers to ``xsub``."""

    xpub: str
    xsub: str

    @classmethod
    def resolve(cls, socket_ip: Optional[str] = None, socket_pub_port: Optional[int] = None,
                socket_sub_port: Optional[int] = None, **_: object) -> "BrokerAddress":
        ip = _ip(socket_ip)
        return cls(f"tcp://{ip}:{_port(socket_pub_port, 'SOCKET_PUB_PORT', _DEFAULTS['SOCKET_PUB_PORT'])}",
                   f"tcp://{ip}:{_port(socket_sub_port, 'SOCKET_SUB_PORT', _DEFAULTS['SOCKET_SUB_PORT'])}")


@dataclass(frozen=True)
class DeviceAddress:
    """The request/reply device: clients connect to ``router``, servers' REP to ``dealer``."""

    router: str
    dealer: str

    @classmethod
    def for_server(cls, socket_ip: Optional[str] = None, socket_rep_port: Optional[int] = None,
                   socket_req_port: Optional[int] = None, **_: object) -> "DeviceAddress":
        ip = _ip(socket_ip)
        return cls(f"tcp://{ip}:{_port(socket_rep_port, 'SOCKET_REQ_PORT', _DEFAULTS['SOCKET_REQ_PORT'])}",
                   f"tcp://{ip}:{_port(socket_req_port, 'SOCKET_REP_PORT', _DEFAULTS['SOCKET_REP_PORT'])}")

    @classmethod
    def router_for_client(cls, socket_ip: Optional[str] = None, socket_rep_port: Optional[int] = None,
                          **_: object) -> str:
        return f"tcp://{_ip(socket_ip)}:{_port(socket_rep_port, 'SOCKET_REP_PORT', _DEFAULTS['SOCKET_REQ_PORT'])}"
