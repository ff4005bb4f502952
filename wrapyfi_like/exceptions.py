"""The errors wrapyfi_like raises, as one flat family.

Every error the library raises on purpose derives from :class:`WrapyfiLikeError`, so a caller can
catch "anything from us" in one place. Each also derives from the builtin it refines (``TypeError``
for a value we cannot encode, ``ValueError`` for bad bytes or bad configuration, ``TimeoutError``
for an expired wait), so code written against Wrapyfi's looser errors keeps catching them.
Transport backends map their own errors onto these with :func:`map_exceptions`; ZeroMQ's (and
any other engine's) never leak to users.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping


class WrapyfiLikeError(Exception):
    """Base of every error raised by wrapyfi_like."""


class EncodeError(WrapyfiLikeError, TypeError):
    """A value cannot be turned into a message (unknown type, object dtype, plugin failure)."""


class DecodeError(WrapyfiLikeError, ValueError):
    """Received bytes are not a valid message: never trusted, always checked."""


class MessageTooLarge(WrapyfiLikeError, ValueError):
    """A message exceeds ``max_message_size`` or the frame limit; raised before anything is sent."""


class PluginError(WrapyfiLikeError):
    """A plugin is registered wrongly, e.g. two plugins claim the same codec id."""


class ConfigurationError(WrapyfiLikeError, ValueError):
    """An unknown middleware, data type or mode, or kwargs that contradict each other."""


class TransportError(WrapyfiLikeError):
    """The transport could not carry a message."""


class WaitTimeout(TransportError, TimeoutError):
    """A bounded wait (for a listener, a message or a reply) expired."""


class ClosedError(TransportError):
    """The communicator was closed and cannot be used any more."""


class RemoteError(WrapyfiLikeError):
    """The server of a request raised an error; the message says which and why."""


class ShapeError(WrapyfiLikeError, ValueError):
    """A value does not match what its data type declares (image size, colour, dtype, audio rate)."""


@contextmanager
def map_exceptions(mapping: Mapping[type[BaseException], type[WrapyfiLikeError]],
                   what: str = "") -> Iterator[None]:
    """Re-raise an engine's exceptions raised in the block as ours, keeping the original as cause.

    Why: users catch our family only; an engine error (``zmq.ZMQError``, ``zenoh.ZError``) that
    escaped would bypass their handlers and tie their code to one engine. The most specific
    entry wins whatever the order of ``mapping`` (``zmq.Again`` before its base ``zmq.ZMQError``);
    errors of our own family and errors ``mapping`` does not name pass through unchanged.
    ``what`` (e.g. ``"listener on /a"``) starts the new message::

        with map_exceptions({zmq.ZMQError: TransportError, zmq.Again: WaitTimeout}, "listener on /a"):
            socket.recv(zmq.NOBLOCK)
    """
    try:
        yield
    except WrapyfiLikeError:
        raise
    except Exception as error:
        for cls in type(error).__mro__:
            target = mapping.get(cls)
            if target is not None:
                detail = str(error) or type(error).__name__
                raise target(f"{what}: {detail}" if what else detail) from error
        raise
