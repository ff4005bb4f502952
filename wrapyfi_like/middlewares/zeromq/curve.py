"""CURVE encryption and authentication for data sockets: who holds which key, and how it is applied.

Roles follow the data, not bind/connect: the side that *produces* data (a publisher, a reply
server) is the CURVE server and holds a secret key; the side that *consumes* it (a listener, a
request client) is a CURVE client and must know that server's public key. So a listener only ever
accepts data from a holder of the secret key, and everything on the wire is encrypted. A consumer
without the right server key completes no handshake and receives nothing; the producer only
sends over completed connections (see :mod:`~.connections`), so that consumer is no destination
and never holds it up.

Keys are z85 strings (40 characters) or paths to key files as written by
:func:`wrapyfi_like.security.generate_keypair` (ZeroMQ's certificate format). Kwargs win over
the environment:

| kwarg | variable | used by | meaning |
|---|---|---|---|
| ``curve_secret_key`` | ``WRAPYFI_ZEROMQ_CURVE_SECRET_KEY`` | publisher, server | the producer's secret key; set: CURVE on |
| ``curve_server_key`` | ``WRAPYFI_ZEROMQ_CURVE_SERVER_KEY`` | listener, client | the producers' public key; set: CURVE on |

A consumer's own key pair is generated per socket: producers do not check who consumes (any
holder of the server's public key may listen).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import zmq
import zmq.auth
import zmq.utils.z85

from wrapyfi_like.exceptions import ConfigurationError

Key = Union[str, bytes, os.PathLike]
SECRET_KEY_VARIABLE = "WRAPYFI_ZEROMQ_CURVE_SECRET_KEY"
SERVER_KEY_VARIABLE = "WRAPYFI_ZEROMQ_CURVE_SERVER_KEY"
_Z85_KEY_LENGTH = 40


@dataclass(frozen=True)
class ProducerKeys:
    """A producer's (CURVE server's) key pair."""

    public: bytes
    secret: bytes

    def apply(self, socket: zmq.Socket) -> None:
        """Make ``socket`` a CURVE server; call before it binds or connects."""
        socket.curve_server = True
        socket.curve_publickey = self.public
        socket.curve_secretkey = self.secret


@dataclass(frozen=True)
class ConsumerKeys:
    """The public key a consumer (CURVE client) expects its producers to prove they hold."""

    server: bytes

    def apply(self, socket: zmq.Socket) -> None:
        """Make ``socket`` a CURVE client of ``server`` with a fresh key pair of its own."""
        public, secret = zmq.curve_keypair()
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
    return ConsumerKeys(server=_read_key(source, secret=False, name="curve_server_key"))


def _read_key(source: Key, secret: bool, name: str) -> bytes:
    """A z85 key from a 40-character string, or from a key file's path."""
    if not zmq.has("curve"):
        raise ConfigurationError(f"{name} was given, but this libzmq was built without CURVE support")
    if isinstance(source, bytes):
        source = source.decode("ascii", "replace")
    if isinstance(source, str) and len(source) == _Z85_KEY_LENGTH and not os.path.exists(source):
        key = source.encode("ascii")
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigurationError(f"{name}: {str(source)!r} is neither a 40-character z85 key nor a key file")
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
