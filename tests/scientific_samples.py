"""Helpers shared by the tests of the scientific plugins (xarray, dask, zarr, pint, jax)."""

from wrapyfi_like.encoding import Codec
from wrapyfi_like.testing import wire_copy


def decode_with_fields(obj, fields, codec=None):
    """Decode a message whose plugin object for ``obj`` carries ``fields`` instead of its own:
    what a peer that builds messages by hand can send."""
    codec = codec or Codec()
    handler = codec.encoder_plugin(type(obj))
    handler.encode = lambda *args, **kwargs: (True, {"__wrapyfi__": tuple(fields)})
    try:
        frames = codec.encode(obj)
    finally:
        del handler.encode
    return codec.decode(wire_copy(frames))


def payload(obj, codec=None):
    """The fields ``obj``'s plugin sends for it."""
    codec = codec or Codec()
    return list(codec.encoder_plugin(type(obj)).encode(obj)[1]["__wrapyfi__"])
