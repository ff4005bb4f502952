"""Sending one multipart message cheaply, and receiving one without ever holding more of it than
the limits allow.

libzmq's ``ZMQ_MAXMSGSIZE`` bounds each *frame*: a peer announcing a larger frame is disconnected
before the frame is allocated. A message of many frames, each under that bound, could still add
up to far more, so :func:`receive_bounded` reads a message frame by frame, counting its size and
frame count, and lets go of every frame as soon as the message breaks a limit; the rest of that
message is read and discarded, so the socket stays in step with message boundaries.
"""

from __future__ import annotations

from typing import Optional

import zmq

from wrapyfi_like.limits import MAX_FRAMES, MAX_TOPIC_LENGTH


def limit_frame_size(socket: zmq.Socket, max_message_size: int) -> None:
    """Make libzmq refuse any frame larger than a whole message may be (or than a topic frame)."""
    socket.setsockopt(zmq.MAXMSGSIZE, max(max_message_size, MAX_TOPIC_LENGTH))


_recv_frame = zmq.backend.Socket.recv
"""pyzmq's recv, called as a plain function with positional arguments: ``socket.recv(copy=False)``
(the same function) costs about 1 µs more per frame for the method lookup and the keyword
(timeit, 5-frame messages: 16-17 µs against 21-22), and a request's reply is five frames."""


def receive_bounded(socket: zmq.Socket, envelope: int, max_message_size: int,
                    flags: int = 0) -> tuple[list[zmq.Frame], list[zmq.Frame], Optional[str]]:
    """Read one whole message as ``(envelope_frames, body_frames, problem)``.

    ``flags=0`` blocks until a message arrives; ``zmq.NOBLOCK`` raises ``zmq.Again`` if none is
    waiting (the frames of a multipart message arrive together, so only the first can be missing).

    The first ``envelope`` frames are the transport's own (topic, identity, request id): not
    counted, each already bounded by :func:`limit_frame_size`. The body is the codec's
    ``[header, *buffers]``; if it has more than :data:`MAX_FRAMES` frames or more than
    ``max_message_size`` bytes, it comes back empty and ``problem`` says why.
    """
    head: list[zmq.Frame] = []
    more = True
    while more and len(head) < envelope:
        head.append(_recv_frame(socket, flags, False))
        more = head[-1].more
    body: list[zmq.Frame] = []
    size = frames = 0
    while more:
        frame = _recv_frame(socket, flags, False)
        more = frame.more
        size += len(frame)
        frames += 1
        if frames <= MAX_FRAMES and size <= max_message_size:
            body.append(frame)
        elif body:
            body.clear()  # released now; the rest of this message is read and dropped
    if frames > MAX_FRAMES:
        return head, [], f"a message of {frames} frames arrived; the limit is {MAX_FRAMES}"
    if size > max_message_size:
        return head, [], f"a message of {size} bytes arrived; max_message_size is {max_message_size}"
    return head, body, None


_NOBLOCK = int(zmq.NOBLOCK)
_MORE = int(zmq.SNDMORE | zmq.NOBLOCK)
_COPY_BELOW = zmq.COPY_THRESHOLD  # pyzmq's own size below which even a zero-copy send copies
_send_frame = zmq.backend.Socket.send
"""pyzmq's send itself: ``zmq.Socket.send`` wraps it in Python to add routing ids and groups
(draft socket types, which we never use), which costs 0.45 µs per frame."""


def try_send(socket: zmq.Socket, message: list) -> bool:
    """Send ``message`` without blocking; False if the socket has no room for it.

    Frame by frame with plain int flags: pyzmq's ``send_multipart`` type-checks every frame and
    combines flag enums in Python, which costs more than sending a small message. Small ``bytes``
    frames (topics, ids, headers) are copied into libzmq: a zero-copy send builds a pyzmq
    ``Frame`` object, which costs more than copying a few KB; buffers always go zero-copy. Only
    the first frame can find no room: libzmq takes the rest of a message it has started. Errors
    other than no room (a ROUTER's unreachable peer) are raised.
    """
    last = len(message) - 1
    try:
        for index, frame in enumerate(message):
            copy = type(frame) is bytes and len(frame) < _COPY_BELOW
            _send_frame(socket, frame, _MORE if index < last else _NOBLOCK, copy)
    except zmq.Again:
        return False
    return True
