"""Reading the whole directory once, for tools (``wrapyfi-like topics``, ``record --all``)."""

from __future__ import annotations

from typing import NamedTuple, Optional

import zmq

from wrapyfi_like.exceptions import DecodeError, TransportError, WaitTimeout
from wrapyfi_like.middlewares.zeromq import curve
from wrapyfi_like.middlewares.zeromq.discovery import protocol
from wrapyfi_like.middlewares.zeromq.discovery.agent import REPLY_TIMEOUT
from wrapyfi_like.middlewares.zeromq.discovery.protocol import Refused
from wrapyfi_like.middlewares.zeromq.settings import ZeroMQSettings


class DirectoryEntry(NamedTuple):
    """One live announcement: its key (e.g. a :func:`~..keys.listener_key`), endpoint and info."""

    key: str
    endpoint: str
    info: dict
    node: str


def list_directory(address: Optional[str] = None, timeout: float = REPLY_TIMEOUT) -> list[DirectoryEntry]:
    """Every live announcement in the directory at ``address`` (default: from the environment).

    Read-only: it asks once over a socket of its own and never announces or hosts anything.
    Raises :class:`WaitTimeout` if no directory answers within ``timeout`` seconds, which means no
    wrapyfi_like process is running against that address, and :class:`TransportError` if the
    directory refuses (another realm) or answers with something that is not a listing.
    """
    settings = ZeroMQSettings.from_environment()
    address = address or settings.discovery
    _, keys = curve.discovery_keys()
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_LISTING_BYTES)
    if keys is not None:
        keys.apply(dealer)
    try:
        dealer.connect(address)
        dealer.send(protocol.list_request(0, settings.realm))
        if not dealer.poll(timeout * 1000):
            raise WaitTimeout(f"no discovery directory answered at {address} within {timeout} s "
                              "(no wrapyfi_like process is running with this WRAPYFI_ZEROMQ_DISCOVERY)")
        reply = protocol.decode_listing(dealer.recv())
    except DecodeError as error:
        raise TransportError(f"the discovery directory at {address} sent no valid listing: {error}") from None
    finally:
        dealer.close()
    if isinstance(reply, Refused):
        raise TransportError(f"the discovery directory at {address} refused: {reply.reason}")
    return [DirectoryEntry(*row) for row in reply.rows]
