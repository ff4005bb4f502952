"""Size limits every transport enforces, so a peer can never make a process allocate without bound.

| limit | default | where it is checked |
|---|---|---|
| ``max_message_size`` | :data:`DEFAULT_MAX_MESSAGE_SIZE` (512 MiB) | sending: before anything is sent; receiving: per frame by the socket, in total while reading |
| frames per message | :data:`MAX_FRAMES` | sending and receiving |
| topic length | :data:`MAX_TOPIC_LENGTH` bytes (UTF-8) | when a communicator is created |
| header size | :data:`MAX_HEADER_SIZE` (4 MiB) | the codec: encoding, and decoding before unpacking |
| nested extension values | :data:`MAX_DEPTH` (64) | the codec: encoding, and decoding before each nested unpack |
| malformed messages one non-waiting listen or reply skips | :data:`MAX_SKIPPED_WITHOUT_WAIT` (64) | ``Listener``, ``Server`` |
| pixels of a compressed image | :data:`MAX_IMAGE_PIXELS` (64 Mi) | decoding, from the file's header, before any pixel is decoded |

The size of a message is the sum of its codec frames (``[header, *buffers]``), i.e. of what the
value encodes to; the few bytes a transport adds (topic frame, request id) are not counted.
512 MiB holds any single camera frame (an 8K RGB image is 100 MB) or a large tensor batch, and
still stops a broken or hostile peer from making a listener allocate gigabytes.

The codec's own limits (header size, nesting) are explained, with their tests, in
:mod:`wrapyfi_like.encoding.codec`.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from wrapyfi_like.exceptions import ConfigurationError, MessageTooLarge

DEFAULT_MAX_MESSAGE_SIZE = 512 * 1024 * 1024
"""Bytes a message may hold unless a communicator's ``max_message_size`` kwarg says otherwise."""
MAX_SKIPPED_WITHOUT_WAIT = 64
"""Malformed messages (or requests) one ``should_wait=False`` listen (or reply) skips at most
before it returns empty-handed: a peer that sends them faster than they are refused cannot keep
a non-waiting caller inside the call; the next call goes on with the rest."""
MAX_FRAMES = 65536
"""Frames (header plus out-of-band buffers) one message may hold."""
MAX_TOPIC_LENGTH = 1024
"""Bytes a topic may take in UTF-8."""
MAX_HEADER_SIZE = 4 * 1024 * 1024
"""Bytes a message header (the msgpack document describing the value) may take. Payloads travel
as separate frames, so a header only grows with the number of plain values (a list of 450,000
floats fits); decoding one costs at most ~80 bytes of Python objects per header byte (~320 MB)."""
MAX_DEPTH = 64
"""Extension values (tuples, sets, frozensets, numpy scalars, datetimes, plugin objects) that may
enclose one another in a message. Each level re-enters the msgpack unpacker: this bounds the
C stack a decode uses, whatever a peer sends."""
MAX_IMAGE_PIXELS = 1 << 26
"""Pixels (width x height) of a JPEG/PNG/… image a receiver decodes: 64 Mi, twice an 8K UHD
frame, at most 256 MiB of decoded pixels in any Pillow mode."""


def check_max_message_size(max_message_size: Optional[int]) -> int:
    """``max_message_size`` as given, or the default for None; a clear error if it is not a size."""
    if max_message_size is None:
        return DEFAULT_MAX_MESSAGE_SIZE
    if type(max_message_size) is not int or max_message_size < 1:
        raise ConfigurationError(f"max_message_size must be a positive number of bytes, got {max_message_size!r}")
    return max_message_size


def check_queue_depth(queue_depth: Optional[int]) -> Optional[int]:
    """``queue_depth`` (messages) as given; a clear error if it is not None or a positive int."""
    if queue_depth is not None and (type(queue_depth) is not int or queue_depth < 1):
        raise ConfigurationError(f"queue_depth must be a positive number of messages, got {queue_depth!r}")
    return queue_depth


def check_topic(topic: Any) -> bytes:
    """The topic as UTF-8 bytes; a clear error if it is empty, holds NUL or is too long."""
    if not isinstance(topic, str) or not topic or "\0" in topic:
        raise ConfigurationError(f"a topic must be a non-empty string without NUL bytes, got {topic!r}")
    encoded = topic.encode()
    if len(encoded) > MAX_TOPIC_LENGTH:
        raise ConfigurationError(f"topic is {len(encoded)} bytes long; the limit is {MAX_TOPIC_LENGTH}")
    return encoded


def check_outgoing(frames: Sequence[Any], max_message_size: int, topic: str) -> None:
    """Raise :class:`MessageTooLarge` if ``frames`` may not be sent; called before sending anything."""
    if len(frames) > MAX_FRAMES:
        raise MessageTooLarge(
            f"a message on {topic} would have {len(frames)} frames; the limit is {MAX_FRAMES} "
            "(send fewer separate arrays/bytes objects, e.g. stack them into one array)"
        )
    size = len(frames[0])  # the header is bytes; the buffers may be arrays, whose len() is not their size
    for buffer in frames[1:]:
        size += memoryview(buffer).nbytes
    if size > max_message_size:
        raise MessageTooLarge(
            f"a message on {topic} would be {size} bytes; max_message_size is {max_message_size} "
            "(raise max_message_size on both ends, or send smaller values)"
        )
