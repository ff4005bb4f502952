"""ZeroMQ settings from the environment, read once per process; kwargs override them per socket.

| variable | default | meaning |
|---|---|---|
| ``WRAPYFI_LIKE_DOMAIN`` | ``0`` | an integer 0–239 (like ``ROS_DOMAIN_ID``): systems in different domains never see each other |
| ``WRAPYFI_ZEROMQ_SOCKET_IP`` | ``127.0.0.1`` | address of this machine that listeners and servers bind on and announce; ``0.0.0.0``: bind every interface |
| ``WRAPYFI_ZEROMQ_ANNOUNCE_IP`` | unset | address others connect to when it is not the bound one (NAT, Docker ``-p``) |
| ``WRAPYFI_LIKE_BIND_PORTS`` | unset: the system picks | ``7800`` or ``7800-7899``: the tcp ports listeners and servers bind, the first free one in order |
| ``WRAPYFI_ZEROMQ_DISCOVERY`` | ``tcp://127.0.0.1:<port>``, see below | where the discovery directory lives; every node of one system names the same one |
| ``WRAPYFI_ZEROMQ_IPC_DIR`` | ``$TMPDIR/wrapyfi_like-<uid>`` | folder for ``carrier="ipc"`` socket files |

Every value is checked when the first communicator is built: a mistake raises
:class:`~wrapyfi_like.exceptions.ConfigurationError` naming the variable, never a hang or a raw
ZeroMQ error later. ``WRAPYFI_ZEROMQ_SOCKET_IP=0.0.0.0`` binds every interface and announces the
address this machine reaches the discovery directory from (or ``WRAPYFI_ZEROMQ_ANNOUNCE_IP``):
announcing ``0.0.0.0`` itself would tell peers to connect to themselves.

Fixed ports are for firewalls and containers, where only known ports are open or forwarded. A
range rather than one port, so that several listeners of one process each take their own; a
listener's (or server's) ``bind_port=`` kwarg takes precedence. A port already in use is a
``ConfigurationError`` naming it and where it came from.

The default discovery port is ``7700 + 240 × (uid mod 100) + domain``: each user (and each
domain of one user) gets its own directory, so two users or two applications on one machine never
exchange messages by accident. The ports stay in 7700–31699, below Linux's ephemeral range (32768
and up), so an outgoing connection never holds one. Two users whose uids are equal modulo 100
would share a port; the directory therefore also compares a *realm* (``"<uid>/<domain>"``) that
every node sends, and refuses nodes of another realm with a clear log message. A realm is a guard
against accidents, not a security boundary (CURVE is, see docs/reliability.md). With
``WRAPYFI_ZEROMQ_DISCOVERY`` set, the realm is ``"/<domain>"``: the user id no longer counts
(machines of one system have different users), the domain still does.

On one machine nothing needs setting. Across machines, give every node the same
``WRAPYFI_ZEROMQ_DISCOVERY`` (an address of the machine that hosts the directory) and, on each
machine, ``WRAPYFI_ZEROMQ_SOCKET_IP`` = that machine's address on the shared network.

The ipc folder is created readable by its owner only (0700). An existing folder is used only if
it is a real folder (not a symbolic link) owned by this user and writable by nobody else;
otherwise :class:`~wrapyfi_like.exceptions.ConfigurationError` says why: another user could
otherwise replace or read the socket files.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import logging
import os
import re
import socket
import stat
import tempfile
from dataclasses import dataclass
from typing import Callable, Optional

import zmq

from wrapyfi_like.exceptions import ConfigurationError
from wrapyfi_like.middlewares.ports import ephemeral_ports

logger = logging.getLogger("wrapyfi_like.zeromq.discovery")

DOMAIN_VARIABLE = "WRAPYFI_LIKE_DOMAIN"
DISCOVERY_VARIABLE = "WRAPYFI_ZEROMQ_DISCOVERY"
SOCKET_IP_VARIABLE = "WRAPYFI_ZEROMQ_SOCKET_IP"
ANNOUNCE_IP_VARIABLE = "WRAPYFI_ZEROMQ_ANNOUNCE_IP"
PORTS_VARIABLE = "WRAPYFI_LIKE_BIND_PORTS"
ANY_ADDRESS = "0.0.0.0"
_DISCOVERY_FORM = re.compile(r"tcp://([^\s:/\[\]]+|\[[0-9A-Fa-f:.]+\]):([0-9]+)")
MAX_DOMAIN = 239
"""Domains are 0 to this; 240 of them fit per user in the port range."""
BASE_PORT = 7700
USERS_PER_HOST = 100


def domain_from_environment() -> int:
    """``WRAPYFI_LIKE_DOMAIN`` as an integer in 0–:data:`MAX_DOMAIN` (0 if unset)."""
    text = os.environ.get(DOMAIN_VARIABLE, "").strip()
    if not text:
        return 0
    try:
        domain = int(text, 10)
    except ValueError:
        raise ConfigurationError(f"{DOMAIN_VARIABLE} must be an integer 0–{MAX_DOMAIN}, got {text[:40]!r}") from None
    if not 0 <= domain <= MAX_DOMAIN:
        raise ConfigurationError(f"{DOMAIN_VARIABLE} must be an integer 0–{MAX_DOMAIN}, got {domain}")
    return domain


def discovery_port(uid: int, domain: int) -> int:
    """The default discovery port of user ``uid`` in ``domain``."""
    return BASE_PORT + (MAX_DOMAIN + 1) * (uid % USERS_PER_HOST) + domain


def checked_discovery(text: str) -> str:
    """``WRAPYFI_ZEROMQ_DISCOVERY`` as given, if it is ``tcp://<host>:<port>`` with a port 1–65535.

    Why here: the discovery thread would otherwise fail on it in the background, and every
    communicator would wait for peers that can never be found.
    """
    form = _DISCOVERY_FORM.fullmatch(text.strip())
    example = "e.g. tcp://192.168.1.10:7700"
    if form is None:
        if "://" in text and not text.startswith("tcp://"):
            reason = f"only tcp:// is supported, {example}"
        elif not text.startswith("tcp://"):
            reason = f"it must start with tcp://, {example}"
        else:
            reason = f"it must be tcp://<host>:<port>, {example}"
        raise ConfigurationError(f"{DISCOVERY_VARIABLE}={text[:80]!r}: {reason}")
    port = int(form.group(2))
    if not 1 <= port <= 65535:
        raise ConfigurationError(f"{DISCOVERY_VARIABLE}={text[:80]!r}: port {port} is not in 1–65535")
    warn_if_ephemeral(text.strip())
    return text.strip()


@functools.cache  # once per address: a process meets one or two
def warn_if_ephemeral(discovery: str) -> None:
    """A WARNING, once per address, when the discovery port is one the system hands out by itself.

    Why: any socket bound without a port, this node's own listeners and servers included, may be
    given it before the directory binds it. The directory then never starts, every node waits for
    peers, and the listener holding the port reads discovery requests as malformed messages.
    """
    port = int(discovery.rsplit(":", 1)[1])
    ephemeral = ephemeral_ports()
    if port in ephemeral:
        logger.warning("%s=%s: port %d is in the range the system gives to sockets bound without a port "
                       "(%d-%d), so a listener may take it before the discovery directory starts; "
                       "choose a port below %d", DISCOVERY_VARIABLE, discovery, port, ephemeral.start,
                       ephemeral.stop - 1, ephemeral.start)


def port_range(text: str) -> range:
    """``WRAPYFI_LIKE_BIND_PORTS`` (``"7800"`` or ``"7800-7899"``) as the ports to try, in order."""
    low, dash, high = text.strip().partition("-")
    try:
        first = int(low, 10)
        last = int(high, 10) if dash else first
    except ValueError:
        first = last = -1
    if not 1 <= first <= last <= 65535:
        raise ConfigurationError(f"{PORTS_VARIABLE}={text[:40]!r}: give a port or a range of ports in "
                                 "1–65535, e.g. 7800 or 7800-7899")
    return range(first, last + 1)


def checked_port(port: object) -> int:
    """The ``bind_port`` kwarg, if it is an int in 1–65535."""
    if type(port) is not int or not 1 <= port <= 65535:
        raise ConfigurationError(f"bind_port={port!r}: give a tcp port number in 1–65535")
    return port


@functools.lru_cache(maxsize=16)
def _is_local(address: str) -> bool:
    """True if a socket can be bound on ``address`` (an IP literal): it is one of this machine's."""
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return False
    return True


def checked_socket_ip(text: str) -> str:
    """``WRAPYFI_ZEROMQ_SOCKET_IP`` as given, if it is an address of this machine or ``0.0.0.0``.

    ZeroMQ's ``*`` means ``0.0.0.0``. An interface name (``eth0``, which ZeroMQ also takes) is left
    for the bind to check.
    """
    if text == "*":
        return ANY_ADDRESS
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return text
    if text != ANY_ADDRESS and not _is_local(text):
        raise ConfigurationError(f"{SOCKET_IP_VARIABLE}={text!r} is not an address of this machine; give one "
                                 f"of its own (as `ip addr` lists) or {ANY_ADDRESS} for every interface")
    return text


def reachable_address(discovery: str) -> str:
    """The address of this machine on the route to the discovery directory's host (no packet is
    sent: a UDP socket is only pointed there), which is what peers of that directory can reach."""
    host = checked_discovery(discovery)[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
    try:
        family = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)[0][0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((host, 9))
            return probe.getsockname()[0]
    except OSError as error:
        raise ConfigurationError(f"{SOCKET_IP_VARIABLE}={ANY_ADDRESS}: cannot tell which address of this "
                                 f"machine reaches {DISCOVERY_VARIABLE} host {host!r} ({error}); set "
                                 f"{ANNOUNCE_IP_VARIABLE}") from None


@dataclass(frozen=True)
class ZeroMQSettings:
    socket_ip: str
    discovery: str
    ipc_dir: str
    domain: int = 0
    realm: str = ""
    """Sent with every discovery request; a directory refuses another realm's nodes."""
    announce_ip: Optional[str] = None
    """The address announced for bound tcp sockets, when it is not ``socket_ip``."""
    ports: Optional[range] = None
    """The tcp ports to bind, tried in order (None: the system picks one)."""

    @classmethod
    def from_environment(cls) -> "ZeroMQSettings":
        """The settings, each checked (:class:`ConfigurationError` names the variable at fault)."""
        domain = domain_from_environment()
        uid = os.getuid()
        explicit = os.environ.get(DISCOVERY_VARIABLE)
        ports = os.environ.get(PORTS_VARIABLE, "").strip()
        return cls(
            socket_ip=checked_socket_ip(os.environ.get(SOCKET_IP_VARIABLE, "").strip() or "127.0.0.1"),
            discovery=checked_discovery(explicit) if explicit else f"tcp://127.0.0.1:{discovery_port(uid, domain)}",
            ipc_dir=os.environ.get(
                "WRAPYFI_ZEROMQ_IPC_DIR",
                os.path.join(tempfile.gettempdir(), f"wrapyfi_like-{uid}"),
            ),
            domain=domain,
            realm=f"/{domain}" if explicit else f"{uid}/{domain}",
            announce_ip=os.environ.get(ANNOUNCE_IP_VARIABLE, "").strip() or None,
            ports=port_range(ports) if ports else None,
        )

    def bind_address(self, carrier: str) -> str:
        """An address to bind a new socket to, with the port or file chosen by the system.

        ``"shm"`` binds tcp: what does not travel in shared memory (headers, small buffers, and
        everything for peers on another host or of another user) goes over tcp."""
        if carrier in ("tcp", "shm"):
            return f"tcp://{self.socket_ip}:*"
        if carrier == "ipc":
            private_folder(self.ipc_dir)
            return f"ipc://{self.ipc_dir}/{os.getpid()}-{os.urandom(6).hex()}.sock"
        raise ConfigurationError(f"unknown carrier {carrier!r}: use 'tcp', 'ipc' or 'shm'")

    def bind(self, binder: Binder, carrier: str, bind_port: Optional[int] = None) -> str:
        """Bind a listener's or server's socket with ``binder``; returns the endpoint to announce.

        ``binder(address)`` binds one address and returns the bound endpoint, raising ``OSError``
        or ``zmq.ZMQError`` (a listener's intake binds plain sockets, a server binds a ZeroMQ one:
        see :func:`zmq_binder`). The port is ``bind_port`` if given, else the first free one of
        :attr:`ports`, else one the system picks. Every failure is a :class:`ConfigurationError`
        naming its setting.
        """
        if carrier == "ipc" or (bind_port is None and self.ports is None):
            if bind_port is not None:
                raise ConfigurationError(f"bind_port={bind_port!r} needs carrier='tcp' (an ipc socket is a file)")
            endpoint = self._bind(binder, self.bind_address(carrier), "the port the system picked")
        elif bind_port is not None:
            endpoint = self._bind(binder, f"tcp://{self.socket_ip}:{checked_port(bind_port)}", f"bind_port={bind_port}")
        else:
            for port in self.ports:
                endpoint = self._bind(binder, f"tcp://{self.socket_ip}:{port}", PORTS_VARIABLE, taken_ok=True)
                if endpoint is not None:
                    break
            else:
                raise ConfigurationError(f"{PORTS_VARIABLE}={self.ports.start}-{self.ports.stop - 1}: every port "
                                         "is in use; widen the range (each listener and server takes one)")
        if carrier != "ipc" and (self.announce_ip or self.socket_ip == ANY_ADDRESS):
            host = self.announce_ip or reachable_address(self.discovery)
            endpoint = f"tcp://{host}:{endpoint.rsplit(':', 1)[1]}"
        return endpoint

    def _bind(self, binder: Binder, address: str, port_setting: str, taken_ok: bool = False) -> Optional[str]:
        """Bind, or say which setting is at fault; None if the port is taken and ``taken_ok``."""
        try:
            return binder(address)
        except (OSError, zmq.ZMQError) as error:
            port = address.rsplit(":", 1)[1]
            if error.errno == errno.EADDRINUSE:
                if taken_ok:
                    return None
                raise ConfigurationError(f"{port_setting}: port {port} is already in use "
                                         "(another listener, server or program has it)") from None
            if error.errno == errno.EACCES and address.startswith("tcp://"):
                raise ConfigurationError(f"{port_setting}: port {port} needs privileges this process "
                                         "lacks (ports below 1024 do)") from None
            setting = f"{SOCKET_IP_VARIABLE}={self.socket_ip!r}" if address.startswith("tcp://") \
                else f"WRAPYFI_ZEROMQ_IPC_DIR={self.ipc_dir!r}"
            raise ConfigurationError(f"{setting}: cannot bind {address}: {error}") from None


Binder = Callable[[str], str]
"""Binds one address and returns the bound endpoint (see :meth:`ZeroMQSettings.bind`)."""


def zmq_binder(sock: zmq.Socket) -> Binder:
    """A :data:`Binder` for a ZeroMQ socket."""
    def bind(address: str) -> str:
        sock.bind(address)
        return sock.getsockopt(zmq.LAST_ENDPOINT).decode()
    return bind


def private_folder(path: str) -> str:
    """Create ``path`` with mode 0700, or check that the existing one is safe to put sockets in."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as error:
        raise ConfigurationError(f"cannot create the ipc folder {path}: {error}") from None
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigurationError(f"the ipc folder {path} is not a folder (a symbolic link or a file); "
                                 "remove it or set WRAPYFI_ZEROMQ_IPC_DIR")
    if info.st_uid != os.getuid():
        raise ConfigurationError(f"the ipc folder {path} belongs to uid {info.st_uid}, not to this user "
                                 f"({os.getuid()}); set WRAPYFI_ZEROMQ_IPC_DIR to a folder of your own")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigurationError(f"the ipc folder {path} is writable by group or others (mode "
                                 f"{stat.S_IMODE(info.st_mode):o}); make it 0700 or set WRAPYFI_ZEROMQ_IPC_DIR")
    return path
