"""CURVE encryption and authentication: who holds which key, who may connect, and how it is applied.

Roles follow the data, not bind/connect: the side that *produces* data (a publisher, a reply
server, the discovery directory) is the CURVE server and holds a secret key; the side that
*consumes* it (a listener, a request client, a discovery agent) is a CURVE client and must know
that server's public key. Both sides prove who they are:

- a consumer accepts data only from a holder of the server's secret key;
- a producer accepts only consumers whose own public key is on its **allow-list**, checked by a
  ZAP handler (ZeroMQ's authentication protocol, RFC 27) during the handshake. Knowing the
  server's public key is therefore not enough to receive, to announce in discovery or to send
  requests. A refused consumer completes no handshake; the producer only sends over completed
  connections (see :mod:`~.connections`), so it is no destination and never holds it up.

Keys are z85 strings (40 characters) or paths to key files as written by
:func:`wrapyfi_like.security.generate_keypair` (ZeroMQ's certificate format). Kwargs win over
the environment:

| kwarg | variable | used by | meaning |
|---|---|---|---|
| ``curve_secret_key`` | ``WRAPYFI_ZEROMQ_CURVE_SECRET_KEY`` | publisher, server, directory | the producer's secret key; set: CURVE on |
| ``curve_server_key`` | ``WRAPYFI_ZEROMQ_CURVE_SERVER_KEY`` | listener, client, agent | the producers' public key; set: CURVE on |
| | ``WRAPYFI_ZEROMQ_CURVE_CLIENT_KEY`` | listener, client, agent | this node's own secret key as a consumer |
| | ``WRAPYFI_ZEROMQ_CURVE_ALLOWED`` | publisher, server, directory | the consumers' public keys it accepts |

``WRAPYFI_ZEROMQ_CURVE_ALLOWED`` is either a comma-separated list of z85 public keys or the path
of a folder whose ``*.key`` files (public key files, as ``generate_keypair`` writes) each allow
one key; it is read when a producer socket is created (each socket has its own ZAP domain). A
producer always accepts its own public key too, so a node that holds the secret key is allowed
as a consumer with it: a consumer without ``WRAPYFI_ZEROMQ_CURVE_CLIENT_KEY`` uses the
process's ``WRAPYFI_ZEROMQ_CURVE_SECRET_KEY`` pair if there is one, else a fresh pair per socket
(which no producer accepts unless it is listed, i.e. never).

Discovery is CURVE exactly when ``WRAPYFI_ZEROMQ_CURVE_SECRET_KEY`` or
``WRAPYFI_ZEROMQ_CURVE_SERVER_KEY`` is set in the environment (:func:`discovery_keys`); only a
process holding the secret key can host the directory.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import zmq
import zmq.auth
import zmq.utils.z85

from wrapyfi_like.background import start_thread
from wrapyfi_like.exceptions import ConfigurationError
from wrapyfi_like.logs import RateLimitedLog
from wrapyfi_like.middlewares.zeromq.wakeup import Wakeup

Key = Union[str, bytes, os.PathLike]
SECRET_KEY_VARIABLE = "WRAPYFI_ZEROMQ_CURVE_SECRET_KEY"
SERVER_KEY_VARIABLE = "WRAPYFI_ZEROMQ_CURVE_SERVER_KEY"
CLIENT_KEY_VARIABLE = "WRAPYFI_ZEROMQ_CURVE_CLIENT_KEY"
ALLOWED_VARIABLE = "WRAPYFI_ZEROMQ_CURVE_ALLOWED"
ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_DOMAIN = b"wrapyfi_like"
"""Prefix of the ZAP domain each producer socket gets."""
MAX_ALLOWED_KEYS = 100_000
_Z85_KEY_LENGTH = 40

logger = logging.getLogger("wrapyfi_like.zeromq.curve")
_log = RateLimitedLog(logger)


@dataclass(frozen=True)
class ProducerKeys:
    """A producer's (CURVE server's) key pair."""

    public: bytes
    secret: bytes

    def apply(self, socket: zmq.Socket) -> None:
        """Make ``socket`` a CURVE server that accepts only allowed consumers; call before it binds
        or connects (the authenticator is running before this returns)."""
        allowed = allowed_keys(os.environ.get(ALLOWED_VARIABLE)) | {self.public}
        socket.zap_domain = authenticator(socket.context).admit(socket, allowed)
        socket.curve_server = True
        socket.curve_publickey = self.public
        socket.curve_secretkey = self.secret


@dataclass(frozen=True)
class ConsumerKeys:
    """The public key a consumer (CURVE client) expects its producers to prove they hold, and the
    consumer's own key pair (None: a fresh pair per socket)."""

    server: bytes
    own: Optional[tuple[bytes, bytes]] = field(default=None)

    def apply(self, socket: zmq.Socket) -> None:
        """Make ``socket`` a CURVE client of ``server``."""
        public, secret = self.own if self.own is not None else zmq.curve_keypair()
        socket.curve_serverkey = self.server
        socket.curve_publickey = public
        socket.curve_secretkey = secret


def producer_keys(curve_secret_key: Optional[Key] = None) -> Optional[ProducerKeys]:
    """The producer key pair from the kwarg or the environment; None: no CURVE."""
    source = curve_secret_key if curve_secret_key is not None else os.environ.get(SECRET_KEY_VARIABLE)
    if not source:
        return None
    secret = _read_key(source, secret=True, name="curve_secret_key")
    return ProducerKeys(public=zmq.curve_public(secret), secret=secret)


def consumer_keys(curve_server_key: Optional[Key] = None) -> Optional[ConsumerKeys]:
    """The server key a consumer trusts, from the kwarg or the environment; None: no CURVE."""
    source = curve_server_key if curve_server_key is not None else os.environ.get(SERVER_KEY_VARIABLE)
    if not source:
        return None
    return ConsumerKeys(server=_read_key(source, secret=False, name="curve_server_key"), own=_own_client_pair())


def discovery_keys() -> tuple[Optional[ProducerKeys], Optional[ConsumerKeys]]:
    """``(directory's keys, agent's keys)`` from the environment; ``(None, None)``: discovery is plain.

    The directory's keys are None when this process does not hold the secret key (it cannot host).
    """
    server = producer_keys()
    if server is not None:
        return server, ConsumerKeys(server=server.public, own=_own_client_pair())
    return None, consumer_keys()


def _own_client_pair() -> Optional[tuple[bytes, bytes]]:
    source = os.environ.get(CLIENT_KEY_VARIABLE) or os.environ.get(SECRET_KEY_VARIABLE)
    if not source:
        return None
    secret = _read_key(source, secret=True, name=CLIENT_KEY_VARIABLE)
    return zmq.curve_public(secret), secret


def allowed_keys(source: Optional[str]) -> frozenset[bytes]:
    """The z85 public keys ``WRAPYFI_ZEROMQ_CURVE_ALLOWED`` (``source``) names; a folder's ``*.key``
    files, or a comma-separated list. A clear :class:`ConfigurationError` for anything else."""
    if not source or not source.strip():
        return frozenset()
    if os.path.isdir(source):
        entries = sorted(Path(source).glob("*.key"))
        if not entries:
            raise ConfigurationError(f"{ALLOWED_VARIABLE}: the folder {source} holds no *.key files")
    else:
        entries = [text.strip() for text in source.split(",") if text.strip()]
    if len(entries) > MAX_ALLOWED_KEYS:  # refused, not cut: a cut list would refuse allowed clients silently
        raise ConfigurationError(f"{ALLOWED_VARIABLE} names {len(entries)} keys; the limit is {MAX_ALLOWED_KEYS}")
    return frozenset(_read_key(entry, secret=False, name=ALLOWED_VARIABLE) for entry in entries)


class Authenticator:
    """The ZAP handler of one context: accepts a CURVE client iff its public key is on the
    allow-list of the socket (ZAP domain) it connects to.

    It runs on a thread of its own and replies to libzmq's requests at :data:`ZAP_ENDPOINT`; the
    authenticated key (z85) becomes the connection's ``User-Id``, which the directory binds node
    ids to. Every refusal is counted (:attr:`refused`) and logged, rate-limited per address.
    """

    def __init__(self, context: zmq.Context) -> None:
        self._pid = os.getpid()
        self._allowed: dict[bytes, frozenset[bytes]] = {}  # ZAP domain -> raw public keys it admits
        self._domains = itertools.count()
        self.refused = 0
        self.accepted = 0
        self._socket = context.socket(zmq.REP)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.bind(ZAP_ENDPOINT)
        self._stop = Wakeup()
        self._thread = start_thread(self._run, "wrapyfi_like-zap")

    def admit(self, socket: zmq.Socket, allowed: frozenset[bytes]) -> bytes:
        """A ZAP domain of ``socket``'s own, under which the z85 keys ``allowed`` are accepted;
        forgotten when the socket is garbage-collected."""
        domain = b"%s-%d" % (ZAP_DOMAIN, next(self._domains))
        self._allowed[domain] = frozenset(zmq.utils.z85.decode(key) for key in allowed)
        weakref.finalize(socket, self._allowed.pop, domain, None)
        return domain

    def close(self) -> None:
        """End the thread and close its socket, so the context can terminate at exit."""
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._stop.close()

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(self._stop.fileno(), zmq.POLLIN)
        try:
            while self._stop.fileno() not in dict(poller.poll()):
                self._socket.send_multipart(self._answer(self._socket.recv_multipart()))
        except zmq.ContextTerminated:
            pass
        finally:
            self._socket.close(linger=0)

    def _answer(self, request: list[bytes]) -> list[bytes]:
        if len(request) < 6:
            return [b"1.0", b"", b"500", b"malformed ZAP request", b"", b""]
        version, request_id, domain, address, _identity, mechanism, *credentials = request
        allowed = self._allowed.get(domain, frozenset())
        if mechanism == b"CURVE" and len(credentials) == 1 and credentials[0] in allowed:
            self.accepted += 1
            return [version, request_id, b"200", b"OK", zmq.utils.z85.encode(credentials[0]), b""]
        self.refused += 1
        _log.warning(address.decode("ascii", "replace"), "zap",
                     "CURVE: refused a %s client from %s whose key is not in %s",
                     mechanism.decode("ascii", "replace")[:10], address.decode("ascii", "replace")[:64],
                     ALLOWED_VARIABLE)
        return [version, request_id, b"400", b"key not allowed", b"", b""]


_authenticators: dict[int, Authenticator] = {}
_authenticators_lock = threading.Lock()


def authenticator(context: zmq.Context) -> Authenticator:
    """The running ZAP handler of ``context``, started if needed."""
    with _authenticators_lock:
        running = _authenticators.get(id(context))
        if running is None or running._pid != os.getpid():
            running = _authenticators[id(context)] = Authenticator(context)
        return running


def stop_authenticators() -> None:
    """Stop this process's ZAP handlers (at exit, before the context terminates)."""
    with _authenticators_lock:
        running = [a for a in _authenticators.values() if a._pid == os.getpid()]
        _authenticators.clear()
    for handler in running:
        handler.close()


def _read_key(source: Key, secret: bool, name: str) -> bytes:
    """A z85 key from a 40-character string, or from a key file's path."""
    if not zmq.has("curve"):
        raise ConfigurationError(f"{name} was given, but this libzmq was built without CURVE support")
    if isinstance(source, bytes):
        source = source.decode("ascii", "replace")
    if isinstance(source, str) and len(source) == _Z85_KEY_LENGTH and not os.path.exists(source):
        key = source.encode("ascii", "replace")
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigurationError(f"{name}: {str(source)[:80]!r} is neither a 40-character z85 key nor a key file")
        try:
            public, secret_key = zmq.auth.load_certificate(path)
        except ValueError as error:
            raise ConfigurationError(f"{name}: {path} is not a key file: {error}") from None
        if secret and secret_key is None:
            raise ConfigurationError(f"{name}: {path} holds no secret key; use the .key_secret file")
        key = secret_key if secret else public
    try:
        zmq.utils.z85.decode(key)
    except Exception:
        raise ConfigurationError(f"{name} is not a valid z85 key") from None
    return key
