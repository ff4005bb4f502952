"""A server: request → codec → the method's arguments; the method's returns → formats → reply.

One server serves one decorated method on its service topic (the topic of its top decorator).
Every value the method returns is encoded by its own decorator's data type and codec, exactly as a
publisher would encode it, and the reply carries them all, so one request costs one round trip.
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any, Optional, Sequence

import msgpack

from wrapyfi_like.connect.formats import ValueFormat, codec_kwargs
from wrapyfi_like.encoding import Codec
from wrapyfi_like.exceptions import DecodeError, ValidationError, WaitTimeout
from wrapyfi_like.limits import MAX_SKIPPED_WITHOUT_WAIT, check_max_message_size, check_outgoing, check_topic
from wrapyfi_like.logs import RateLimitedLog, truncate
from wrapyfi_like.connect.wire import transports, wire_codec

logger = logging.getLogger("wrapyfi_like.servers")
_bad_input = RateLimitedLog(logger)  # one line per topic per 10 s, with a count of the rest
WIRE_NEXT_REQUEST_TIMEOUT = 10.0
"""On Wrapyfi's wire, how long a server of several values waits for the client's next request."""


@functools.lru_cache(maxsize=256)
def _counts(lengths: tuple[int, ...]) -> bytes:
    """A reply's ``counts`` frame: the same few per service, so packed once each (msgpack's
    ``packb`` builds a packer per call)."""
    return msgpack.packb(lengths)


class Request:
    """One client call: the arguments to run the method with, and where the reply goes."""

    __slots__ = ("args", "kwargs", "ticket")

    def __init__(self, args: tuple, kwargs: dict, ticket: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.ticket = ticket


class Server:
    """Receives calls on ``out_topic`` and replies with the method's return values.

    ``should_wait=True``: :meth:`await_request` blocks until a valid request arrives; ``False``:
    it returns None when none is waiting (or after skipping
    :data:`~wrapyfi_like.limits.MAX_SKIPPED_WITHOUT_WAIT` malformed ones). A malformed request is logged, counted in
    :attr:`malformed`, answered with an error when it can be (the reason cut to
    :data:`~wrapyfi_like.logs.PEER_TEXT_LIMIT` characters: it may quote the peer), and skipped.
    A reply is never waited for: one its client does not take at once is dropped and counted
    (see :mod:`wrapyfi_like.middlewares.zeromq.server`), so no client can hold up the others.
    Other kwargs go to the codec that decodes requests (plugin settings such as device maps).
    ``call_signature`` (the method's, without ``self``) makes the server validate each request's
    arguments against their typed annotations; an invalid one gets an error reply naming the
    parameter and field path, which the client raises as ``RemoteError``.
    ``max_message_size`` (bytes) bounds requests (a larger one is malformed, never held whole in
    memory) and replies (a larger reply goes back to the client as an error).
    ``bind_port`` (zeromq, tcp) fixes the port this server binds, as a listener's does.
    """

    def __init__(self, name: str, out_topic: str, carrier: str = "tcp", should_wait: bool = True,
                 *, value_formats: Sequence[ValueFormat], middleware: str = "zeromq",
                 max_message_size: Optional[int] = None, curve_secret_key: Optional[str] = None,
                 call_signature: Optional[inspect.Signature] = None, bind_port: Optional[int] = None,
                 wire: Optional[str] = None, wrapyfi_allow_pickle: bool = False,
                 wire_sockets: Optional[dict] = None, **kwargs: Any) -> None:
        check_topic(out_topic)
        self.name = name
        self.out_topic = out_topic
        self.should_wait = should_wait
        self._formats = list(value_formats)
        self._one = self._formats[0] if len(self._formats) == 1 else None
        self._request_codec = Codec(**codec_kwargs(kwargs))
        self._wire = wire_codec(middleware, wire, "NativeObject", wrapyfi_allow_pickle, None, kwargs)
        self._call_signature = call_signature
        self._call_types = {}
        if call_signature is not None:
            from wrapyfi_like.validation import call_types  # only typed methods pay for the engine
            self._call_types = call_types(call_signature)
        self.max_message_size = check_max_message_size(max_message_size)
        module, sockets = transports(middleware, wire, wire_sockets)
        self._transport = module.ServerTransport(
            out_topic, carrier=carrier, info={"class_name": name, "data_types": [f.data_type for f in self._formats]},
            max_message_size=self.max_message_size, curve_secret_key=curve_secret_key, bind_port=bind_port,
            **sockets,
        )
        self.received = 0
        self._skipped = 0

    @property
    def malformed(self) -> int:
        """Invalid requests skipped: here, or refused by a transport that reads bounded (for their
        size or frame count) before they reached us. Both were answered with an error when the
        request said who asked."""
        return self._skipped + self._transport.statistics().get("refused", 0)

    def await_request(self) -> Optional[Request]:
        timeout = None if self.should_wait else 0.0
        skips_left = None if self.should_wait else MAX_SKIPPED_WITHOUT_WAIT
        while True:
            ticket = None
            try:
                received = self._transport.recv(timeout)
                if received is None:
                    return None
                ticket, frames = received
                args, kwargs = self._decode_call(frames)
            except DecodeError as error:
                self._skip(ticket, error)
                if skips_left is not None:
                    skips_left -= 1
                    if not skips_left:
                        return None
                continue
            self.received += 1
            return Request(args, kwargs, ticket)

    def _decode_call(self, frames: list) -> tuple[tuple, dict]:
        if self._wire is not None:
            if len(frames) != 1:
                raise DecodeError(f"a Wrapyfi request is one frame, got {len(frames)}")
            call = self._wire.decode_request(frames[0])
        else:
            call = self._request_codec.decode(frames)
        # our clients send the list [args, kwargs] (cheaper to encode); the tuple form is read too
        if not (isinstance(call, (list, tuple)) and len(call) == 2 and isinstance(call[0], (list, tuple))
                and isinstance(call[1], dict) and all(isinstance(key, str) for key in call[1])):
            raise DecodeError("a request must be the pair [args list, kwargs dict with str keys]")
        args, kwargs = call
        if type(args) is not tuple:
            args = tuple(args)
        if not self._call_types:
            return args, kwargs
        from wrapyfi_like.validation import check_call
        try:
            return check_call(self._call_signature, args, kwargs, self._call_types)
        except ValidationError as error:
            raise DecodeError(f"ValidationError: {error}") from None

    def _skip(self, ticket: Any, error: DecodeError) -> None:
        self._skipped += 1
        reason = truncate(error)
        _bad_input.warning(self.out_topic, "malformed", "skipped a malformed request on %s: %s",
                           self.out_topic, reason)
        if ticket is not None:
            self._transport.send_error(ticket, f"malformed request: {reason}")

    def reply(self, request: Request, values: Sequence[Any]) -> None:
        """Send ``values`` (one per value format, in order) back to the caller of ``request``."""
        if self._wire is not None:
            return self._reply_per_value(request, values)
        if self._one is not None and len(values) == 1:
            body = self._one.encode(values[0])
            frames = [_counts((len(body),)), *body]
        else:
            parts = [fmt.encode(value) for fmt, value in zip(self._formats, values, strict=True)]
            frames = [_counts(tuple(len(part) for part in parts))]
            for part in parts:
                frames.extend(part)
        check_outgoing(frames, self.max_message_size, f"the reply of service {self.out_topic}")
        self._transport.send(request.ticket, frames)

    def _reply_per_value(self, request: Request, values: Sequence[Any]) -> None:
        """Wrapyfi's way: a client asks once per returned value (same arguments each time), and
        request *i* gets value *i*; the method ran once, on the first."""
        ticket = request.ticket
        for index, (fmt, value) in enumerate(zip(self._formats, values, strict=True)):
            if index:
                received = self._transport.recv(WIRE_NEXT_REQUEST_TIMEOUT)
                if received is None:
                    raise WaitTimeout(f"the client of {self.out_topic} did not ask for value {index + 1} of "
                                      f"{len(values)} within {WIRE_NEXT_REQUEST_TIMEOUT} s")
                ticket = received[0]
            frame = fmt.encode_reply(value)
            check_outgoing([frame], self.max_message_size, f"the reply of service {self.out_topic}")
            self._transport.send(ticket, [frame])

    def reply_error(self, request: Request, error: BaseException) -> None:
        """Tell the caller of ``request`` that the method raised ``error``."""
        self._transport.send_error(request.ticket, f"{type(error).__name__}: {error}")

    def statistics(self) -> dict[str, int]:
        """``received``: valid requests; ``sent``: replies that went out, ``errors`` of them error
        replies (a failed method, a malformed request); ``dropped``: replies whose client was
        gone or did not read its replies; ``malformed``: invalid requests skipped, here or
        (``refused`` by a transport that reads bounded, for their size) before they reached us."""
        counts = self._transport.statistics()
        return {"received": self.received, "sent": counts["sent"], "errors": counts["errors"],
                "dropped": counts["dropped"], "malformed": self._skipped + counts.get("refused", 0)}

    def stats(self) -> dict[str, int]:
        """The counts :meth:`MiddlewareCommunicator.stats` adds up: :meth:`statistics` without ``errors``."""
        counts = self.statistics()
        del counts["errors"]
        return counts

    def close(self) -> None:
        self._transport.close()
