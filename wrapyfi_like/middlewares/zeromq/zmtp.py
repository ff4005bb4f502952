"""The part of ZMTP 3.x (rfc.zeromq.org 23/ZMTP, 37/ZMTP) our own readers speak, with the NULL
mechanism: a listener's intake (a ROUTER peer accepting a libzmq DEALER socket, our publishers'
outlets, which read acks back on the same connection, or a PULL peer accepting a PUSH socket)
and a service's (a ROUTER peer accepting the DEALER sockets of request clients, :mod:`.router`).

A connection starts with a 64-byte greeting each way (signature ``FF 00*8 7F``, version 3.x,
mechanism ``NULL``, as-server, filler), then each side sends a ``READY`` command whose
``Socket-Type`` property names its socket type; after that come messages. Every frame is a flags
byte (``MORE``, ``LONG``, ``COMMAND``; other bits zero) and a size of 1 byte, or of 8 bytes in
network order with ``LONG``. A message is its frames up to the first without ``MORE``. Commands
between messages: ``PING`` (answered with ``PONG`` and the ping's context), ``ERROR`` (the peer
gives up). Everything here is pure: bytes in, values or :class:`ProtocolError` out.
"""

from __future__ import annotations

import struct

MORE = 0x01
LONG = 0x02
COMMAND = 0x04
FLAG_BITS = MORE | LONG | COMMAND

GREETING_SIZE = 64
MAX_COMMAND_SIZE = 4096
"""Bytes a command frame may take. ``READY`` with every standard property and a 255-byte
identity stays far below; anything larger is a broken or hostile peer."""

_MECHANISM = b"NULL".ljust(20, b"\0")
GREETING = b"\xff" + bytes(8) + b"\x7f" + b"\x03\x01" + _MECHANISM + b"\x00" + bytes(31)
"""Ours: ZMTP 3.1, NULL mechanism, not as-server (NULL has no server role)."""
_LONG_SIZE = struct.Struct(">Q")
_PROPERTY_SIZE = struct.Struct(">I")


class ProtocolError(Exception):
    """The peer broke the ZMTP grammar or is not a peer we accept; the connection must close."""


def check_greeting(greeting: bytes) -> None:
    """Accept a peer's 64-byte greeting: ZMTP 3.0 or later, NULL mechanism."""
    if greeting[0] != 0xFF or greeting[9] != 0x7F:
        raise ProtocolError("not a ZMTP greeting")
    if greeting[10] < 3:
        raise ProtocolError(f"ZMTP {greeting[10]}.x is not supported (3.0 or later is)")
    if greeting[12:32] != _MECHANISM:
        mechanism = bytes(greeting[12:32]).rstrip(b"\0").decode("ascii", "replace")
        raise ProtocolError(f"security mechanism {mechanism!r} is not accepted here (NULL is)")


def command(name: bytes, data: bytes = b"") -> bytes:
    """A whole command frame."""
    body = bytes([len(name)]) + name + data
    if len(body) < 256:
        return bytes([COMMAND, len(body)]) + body
    return bytes([COMMAND | LONG]) + _LONG_SIZE.pack(len(body)) + body


def ready(socket_type: bytes) -> bytes:
    """Our ``READY`` command."""
    return command(b"READY", b"\x0bSocket-Type" + _PROPERTY_SIZE.pack(len(socket_type)) + socket_type)


def error(reason: str) -> bytes:
    """An ``ERROR`` command telling the peer why it is being dropped (reason cut to 255 bytes)."""
    text = reason.encode("ascii", "replace")[:255]
    return command(b"ERROR", bytes([len(text)]) + text)


def split_command(body: bytes) -> tuple[bytes, bytes]:
    """A command frame's body as ``(name, data)``."""
    if not body or len(body) < 1 + body[0]:
        raise ProtocolError("a command frame too short for its name")
    return bytes(body[1:1 + body[0]]), bytes(body[1 + body[0]:])


def properties(data: bytes) -> dict[str, bytes]:
    """The metadata of a ``READY`` command; names lower-cased (ZMTP names are case-insensitive)."""
    found: dict[str, bytes] = {}
    position = 0
    while position < len(data):
        name_end = position + 1 + data[position]
        if name_end + 4 > len(data):
            raise ProtocolError("a READY property runs past the end of its command")
        name = data[position + 1:name_end].decode("ascii", "replace").lower()
        (size,) = _PROPERTY_SIZE.unpack_from(data, name_end)
        position = name_end + 4 + size
        if position > len(data):
            raise ProtocolError("a READY property value runs past the end of its command")
        found[name] = data[name_end + 4:position]
    return found


def check_ready(body: bytes, peer_types: tuple[bytes, ...]) -> bytes:
    """Accept the peer's first command only if it is ``READY`` from one of ``peer_types``;
    returns the peer's socket type."""
    name, data = split_command(body)
    if name == b"ERROR":
        raise ProtocolError(f"the peer sent ERROR: {data[1:1 + (data[0] if data else 0)]!r}")
    if name != b"READY":
        raise ProtocolError(f"expected READY, the peer sent {name[:32]!r}")
    socket_type = properties(data).get("socket-type")
    if socket_type not in peer_types:
        names = " or ".join(peer_type.decode() for peer_type in peer_types)
        raise ProtocolError(f"only {names} sockets may connect here, not {socket_type!r}")
    return socket_type


def pong(ping_data: bytes) -> bytes:
    """The ``PONG`` answering a ``PING`` whose data (TTL, context) is ``ping_data``."""
    if len(ping_data) < 2 or len(ping_data) > 18:
        raise ProtocolError("a PING command of the wrong size")
    return command(b"PONG", ping_data[2:])


_SHORT_HEADS = [bytes((flags, size)) for flags in (0, MORE) for size in range(256)]


def frame_head(size: int, more: bool) -> bytes:
    """The flags and size that go before a message frame of ``size`` bytes (``more``: not the last)."""
    if size < 256:
        return _SHORT_HEADS[256 * more + size]
    return bytes([LONG | more]) + _LONG_SIZE.pack(size)
