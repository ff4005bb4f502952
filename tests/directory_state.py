"""Driving a :class:`~wrapyfi_like.middlewares.zeromq.discovery.directory.Directory` directly in
tests: a clock the test moves (the ``clock`` and ``warm`` fixtures of conftest.py), and a sync
whose reply is decoded."""

from wrapyfi_like.middlewares.zeromq.discovery import protocol
from wrapyfi_like.middlewares.zeromq.discovery.protocol import decode_reply


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sync(directory, peer, node, announcements=(), watched=(), seq=1):
    reply = directory.handle(peer, protocol.sync(seq, node, [list(a) for a in announcements], list(watched), ""))
    return decode_reply(reply)
