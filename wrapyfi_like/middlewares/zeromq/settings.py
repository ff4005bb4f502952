"""ZeroMQ settings from the environment, read once per process; kwargs override them per socket.

| variable | default | meaning |
|---|---|---|
| ``WRAPYFI_LIKE_DOMAIN`` | ``0`` | an integer 0–239 (like ``ROS_DOMAIN_ID``): systems in different domains never see each other |
| ``WRAPYFI_ZEROMQ_SOCKET_IP`` | ``127.0.0.1`` | address this node binds its sockets on and tells others to connect to |
| ``WRAPYFI_ZEROMQ_DISCOVERY`` | ``tcp://127.0.0.1:<port>``, see below | where the discovery directory lives; every node of one system names the same one |
| ``WRAPYFI_ZEROMQ_IPC_DIR`` | ``$TMPDIR/wrapyfi_like-<uid>`` | folder for ``carrier="ipc"`` socket files |

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

import os
import stat
import tempfile
from dataclasses import dataclass

from wrapyfi_like.exceptions import ConfigurationError

DOMAIN_VARIABLE = "WRAPYFI_LIKE_DOMAIN"
DISCOVERY_VARIABLE = "WRAPYFI_ZEROMQ_DISCOVERY"
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


@dataclass(frozen=True)
class ZeroMQSettings:
    socket_ip: str
    discovery: str
    ipc_dir: str
    domain: int = 0
    realm: str = ""
    """Sent with every discovery request; a directory refuses another realm's nodes."""

    @classmethod
    def from_environment(cls) -> "ZeroMQSettings":
        domain = domain_from_environment()
        uid = os.getuid()
        explicit = os.environ.get(DISCOVERY_VARIABLE)
        return cls(
            socket_ip=os.environ.get("WRAPYFI_ZEROMQ_SOCKET_IP", "127.0.0.1"),
            discovery=explicit or f"tcp://127.0.0.1:{discovery_port(uid, domain)}",
            ipc_dir=os.environ.get(
                "WRAPYFI_ZEROMQ_IPC_DIR",
                os.path.join(tempfile.gettempdir(), f"wrapyfi_like-{uid}"),
            ),
            domain=domain,
            realm=f"/{domain}" if explicit else f"{uid}/{domain}",
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
