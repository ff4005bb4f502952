"""The codec: objects to ``[header, *buffers]`` and back. Pure: no sockets, no I/O."""

from wrapyfi_like.encoding.codec import FORMAT_VERSION, Codec

__all__ = ["Codec", "FORMAT_VERSION"]
