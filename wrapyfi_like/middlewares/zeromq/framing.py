"""Receiving one multipart message without ever holding more of it than the limits allow.

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
        head.append(socket.recv(flags, copy=False))
        more = head[-1].more
    body: list[zmq.Frame] = []
    size = frames = 0
    while more:
        frame = socket.recv(flags, copy=False)
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
