"""How wrapyfi_like messages are stored in MCAP files, so any MCAP tool can open a recording.

* One **channel** per topic; its ``message_encoding`` is :data:`MESSAGE_ENCODING` and its
  metadata names the ``data_type`` (``NativeObject``, ``Image`` …) and the codec ``format_version``.
* One **schema** per data type: name ``wrapyfi_like/<data_type>``, encoding :data:`SCHEMA_ENCODING`,
  data a short UTF-8 description of the framing below.
* Each **message** holds one wire message exactly as it travelled: the codec's header frame and
  its buffers (no topic frame: the channel gives the topic), framed as::

      u32 LE   n, the number of frames (at least 1: the header, then n-1 buffers)
      n times:
        u64 LE   length of the frame in bytes
        bytes    the frame

  and nothing after the last frame. ``log_time`` is when the recorder received the message
  (ns since the Unix epoch); the wire carries no send time, so ``publish_time`` is the same.

Replaying sends the frames unchanged, so a listener gets the recorded bytes bit for bit.
"""

from __future__ import annotations

import struct
from typing import Any, Iterable, Iterator, NamedTuple, Optional, Sequence

from wrapyfi_like.encoding.codec import FORMAT_VERSION
from wrapyfi_like.exceptions import DecodeError

MESSAGE_ENCODING = "wrapyfi_like.frames"
SCHEMA_ENCODING = "wrapyfi_like.codec"
PROFILE = "wrapyfi_like"
_COUNT = struct.Struct("<I")
_LENGTH = struct.Struct("<Q")


def schema_description(data_type: str) -> bytes:
    return (f"wrapyfi_like {data_type} messages, codec format version {FORMAT_VERSION}. Message data: "
            "u32 LE frame count n >= 1, then n times (u64 LE length, frame bytes); frame 0 is the "
            "codec header (msgpack), the rest are its buffers.").encode()


def pack_frames(frames: Sequence[Any]) -> bytes:
    """One MCAP message body from a wire message's ``[header, *buffers]``."""
    parts = [_COUNT.pack(len(frames))]
    for frame in frames:
        view = memoryview(frame).cast("B")
        parts += [_LENGTH.pack(view.nbytes), view]
    return b"".join(parts)


def unpack_frames(data: bytes) -> list[memoryview]:
    """The frames of one MCAP message body; raises :class:`DecodeError` if the framing is wrong."""
    view = memoryview(data)
    if view.nbytes < _COUNT.size:
        raise DecodeError("recorded message is shorter than its frame count")
    (count,) = _COUNT.unpack_from(view)
    if count < 1:
        raise DecodeError("recorded message has no frames")
    frames, offset = [], _COUNT.size
    for index in range(count):
        if offset + _LENGTH.size > view.nbytes:
            raise DecodeError(f"recorded message ends before the length of frame {index}")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += _LENGTH.size
        if length > view.nbytes - offset:
            raise DecodeError(f"recorded frame {index} claims {length} bytes; only {view.nbytes - offset} remain")
        frames.append(view[offset:offset + length])
        offset += length
    if offset != view.nbytes:
        raise DecodeError(f"recorded message has {view.nbytes - offset} bytes after its last frame")
    return frames


class RecordingWriter:
    """Writes messages of any number of topics into one MCAP file; not thread-safe."""

    def __init__(self, stream, library: str) -> None:
        from mcap.writer import Writer

        self._writer = Writer(stream)
        self._writer.start(profile=PROFILE, library=library)
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self._sequences: dict[str, int] = {}
        self.count = 0

    def add(self, topic: str, data_type: str, log_time_ns: int, body: bytes) -> None:
        """Store one message body (see :func:`pack_frames`) received at ``log_time_ns``."""
        channel = self._channels.get(topic)
        if channel is None:
            schema = self._schemas.get(data_type)
            if schema is None:
                schema = self._schemas[data_type] = self._writer.register_schema(
                    f"wrapyfi_like/{data_type}", SCHEMA_ENCODING, schema_description(data_type))
            channel = self._channels[topic] = self._writer.register_channel(
                topic, MESSAGE_ENCODING, schema,
                {"data_type": data_type, "format_version": str(FORMAT_VERSION)})
        sequence = self._sequences[topic] = self._sequences.get(topic, 0) + 1
        self._writer.add_message(channel, log_time=log_time_ns, data=body,
                                 publish_time=log_time_ns, sequence=sequence)
        self.count += 1

    @property
    def topics(self) -> list[str]:
        return sorted(self._channels)

    def finish(self) -> None:
        self._writer.finish()


def _reason(error: Exception) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def read_summary(path: str) -> tuple[Any, Any]:
    """The ``(header, summary)`` of the MCAP file at ``path``.

    Raises :class:`DecodeError` (one line for the CLI, never a traceback) if it is not an MCAP
    file, or has no summary section, as when the recorder was killed before finishing it.
    """
    from mcap.reader import make_reader

    with open(path, "rb") as stream:
        try:
            reader = make_reader(stream)
            header, summary = reader.get_header(), reader.get_summary()
        except Exception as error:  # an untrusted file: the reader raises McapError, struct.error,
            # ValueError (CRC) and its decompressors' own errors; each is one line, not a traceback
            raise DecodeError(f"{path} is not a readable MCAP file: {_reason(error)}") from None
    if summary is None or summary.statistics is None:
        raise DecodeError(f"{path} has no summary section (was the recording cut short?)")
    return header, summary


class RecordedMessage(NamedTuple):
    topic: str
    data_type: str
    log_time_ns: int
    frames: list[memoryview]


def read_messages(stream, topics: Optional[Iterable[str]] = None) -> Iterator[RecordedMessage]:
    """The recorded messages in log-time order, of ``topics`` only if given.

    Channels of other encodings (a file from another tool) and damaged records raise
    :class:`DecodeError`.
    """
    from mcap.reader import make_reader

    messages = make_reader(stream).iter_messages(topics=list(topics) if topics else None, log_time_order=True)
    while True:
        try:
            _schema, channel, message = next(messages)
        except StopIteration:
            return
        except Exception as error:  # as in read_summary: any reader error on a damaged file
            raise DecodeError(f"the recording is damaged: {_reason(error)}") from None
        if channel.message_encoding != MESSAGE_ENCODING:
            raise DecodeError(f"channel {channel.topic} is encoded as {channel.message_encoding!r}, "
                              f"not {MESSAGE_ENCODING!r}: not a wrapyfi_like recording")
        yield RecordedMessage(channel.topic, channel.metadata.get("data_type", "NativeObject"),
                              message.log_time, unpack_frames(message.data))
