"""A conformance suite for encoding plugins, built-in or your own.

Subclass :class:`PluginConformance` in a test module under a name pytest collects (``Test…``),
say which plugin class it checks, give sample objects and an equality check, and pytest runs
every check below on that plugin::

    class TestFractionPlugin(PluginConformance):
        plugin = FractionPlugin

        def samples(self):
            return {"half": Fraction(1, 2), "negative": Fraction(-7, 3)}

        def assert_equal(self, expected, actual):
            assert type(actual) is Fraction and actual == expected

Every object goes through a real :class:`~wrapyfi_like.encoding.Codec` and a simulated wire
(each frame copied into a fresh writable buffer, as a socket delivers it), so what passes here
behaves the same over ZeroMQ. The sample hooks for empty, non-contiguous, read-only and large
objects return ``None`` where the idea does not apply to a type; that check is then skipped.
Damaged payloads and randomly damaged whole messages must raise :class:`DecodeError`, nothing
else, because a listener skips (and counts) exactly those.

The checks need pytest (a skipped check calls ``pytest.skip``).
"""

from __future__ import annotations

import random
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from wrapyfi_like.encoding import Codec
from wrapyfi_like.exceptions import DecodeError

UNKNOWN_KWARG = "wrapyfi_like_conformance_unknown_kwarg"
DAMAGES_PER_SAMPLE = 200
"""Randomly damaged messages decoded per sample by ``test_damaged_messages_raise_only_decode_error``."""
_JUNK = b"\x07corrupt-payload\xff"


def wire_copy(frames: Sequence[Any]) -> list[bytearray]:
    """What a receiving socket hands the codec: each frame copied into its own writable buffer."""
    return [bytearray(frame) for frame in frames]


def round_trip(codec: Codec, obj: Any) -> Any:
    """``obj`` encoded, carried over the simulated wire and decoded."""
    return codec.decode(wire_copy(codec.encode(obj)))


class PluginConformance:
    """Checks one plugin class against the contract every wrapyfi_like plugin keeps.

    Set :attr:`plugin`, implement :meth:`samples` and :meth:`assert_equal`, and override the
    other sample hooks where they make sense for your type. A plugin that sends its payload as
    a string (the Wrapyfi way) sets :attr:`out_of_band` to False.
    """

    plugin: type
    """The plugin class under test."""
    plugin_kwargs: dict = {}
    """Communicator kwargs the codec (and so the plugin) is built with."""
    out_of_band: bool = True
    """Whether the plugin's payload must travel in frames of its own, outside the header."""

    def samples(self) -> dict[str, Any]:
        """Objects of every kind the plugin promises to carry (dtypes, modes, shapes …), by name."""
        raise NotImplementedError

    def assert_equal(self, expected: Any, actual: Any) -> None:
        """Raise AssertionError unless ``actual`` is an exact copy of ``expected``."""
        raise NotImplementedError

    def empty_sample(self) -> Optional[Any]:
        """An object with no elements (zero rows, zero pixels …)."""
        return None

    def non_contiguous_sample(self) -> Optional[Any]:
        """An object whose data is a strided or offset view of a larger buffer."""
        return None

    def read_only_sample(self) -> Optional[Any]:
        """An object whose memory is read-only: encoding must not need to write to it."""
        return None

    def large_sample(self) -> Optional[Any]:
        """An object of several megabytes."""
        return None

    def codec(self, **extra_kwargs: Any) -> Codec:
        return Codec(**self.plugin_kwargs, **extra_kwargs)

    def check(self, codec: Codec, obj: Any) -> Any:
        """Round-trip ``obj``, check the plugin under test handled it, and compare; return the copy."""
        handler = codec.encoder_plugin(type(obj))
        assert isinstance(handler, self.plugin), (
            f"{type(obj).__qualname__} is handled by {type(handler).__name__}, not by {self.plugin.__name__}"
        )
        received = round_trip(codec, obj)
        self.assert_equal(obj, received)
        return received

    def test_round_trip(self) -> None:
        codec = self.codec()
        samples = self.samples()
        assert samples, "samples() must return at least one object"
        for name, obj in samples.items():
            try:
                self.check(codec, obj)
            except AssertionError as error:
                raise AssertionError(f"sample {name!r}: {error}") from error

    def test_empty(self) -> None:
        self.check(self.codec(), _applicable(self.empty_sample(), "empty"))

    def test_non_contiguous(self) -> None:
        self.check(self.codec(), _applicable(self.non_contiguous_sample(), "non-contiguous"))

    def test_read_only(self) -> None:
        self.check(self.codec(), _applicable(self.read_only_sample(), "read-only"))

    def test_large(self) -> None:
        obj = _applicable(self.large_sample(), "large")
        codec = self.codec()
        frames = codec.encode(obj)
        if self.out_of_band:
            payload = sum(memoryview(frame).nbytes for frame in frames[1:])
            assert len(frames[0]) * 10 < payload, (
                f"the header holds {len(frames[0])} bytes of a {payload}-byte payload: return the "
                "payload as bytes-like objects or numpy arrays so it travels in frames of its own"
            )
        self.assert_equal(obj, codec.decode(wire_copy(frames)))

    def test_unknown_kwargs_accepted(self) -> None:
        self.plugin(**self.plugin_kwargs, **{UNKNOWN_KWARG: object()})
        codec = self.codec(**{UNKNOWN_KWARG: "ignored"})
        self.check(codec, next(iter(self.samples().values())))

    def test_corrupted_payload_raises_decode_error(self) -> None:
        """Every corruption of every sample's payload must raise DecodeError, never return a value."""
        for name, obj in self.samples().items():
            codec = self.codec()
            handler = codec.encoder_plugin(type(obj))
            ok, wrapped = handler.encode(obj)
            fields = tuple(wrapped["__wrapyfi__"])
            for corruption, bad_fields in corrupted_payloads(fields):
                frames = _encode_with_fields(codec, handler, obj, bad_fields)
                try:
                    value = codec.decode(wire_copy(frames))
                except DecodeError:
                    continue
                raise AssertionError(
                    f"sample {name!r} with {corruption}: decoding returned {type(value).__name__} "
                    "instead of raising DecodeError"
                )


    def test_damaged_messages_raise_only_decode_error(self) -> None:
        """Whatever a peer sends, decoding returns a value or raises DecodeError. The codec already
        turns a plugin's exceptions into DecodeError; this finds what it cannot: a crash or a hang in
        the plugin's library (run under pytest-timeout), or a ``SystemExit`` escaping it. Each
        sample's message is damaged at random, the same way on every run."""
        rng = random.Random(20261205)
        codec = self.codec()
        for name, obj in self.samples().items():
            frames = [bytes(memoryview(frame).cast("B")) for frame in codec.encode(obj)]
            for _ in range(DAMAGES_PER_SAMPLE):
                damaged = damage(rng, frames)
                try:
                    codec.decode(damaged)
                except DecodeError:
                    pass
                except KeyboardInterrupt:
                    raise
                except BaseException as error:
                    raise AssertionError(f"sample {name!r}: {type(error).__name__}: {error} instead of "
                                         f"DecodeError, for the message {damaged!r:.500}") from error


def damage(rng: random.Random, frames: Sequence[bytes]) -> list[bytearray]:
    """``frames`` with one random damage: bits flipped, a frame cut or grown, a frame lost or repeated."""
    damaged = [bytearray(frame) for frame in frames]
    index = rng.randrange(len(damaged))
    frame = damaged[index]
    kind = rng.randrange(5)
    if kind == 0 and frame:
        for _ in range(rng.randrange(1, 4)):
            frame[rng.randrange(len(frame))] ^= 1 << rng.randrange(8)
    elif kind == 1:
        del frame[rng.randrange(len(frame) + 1):]
    elif kind == 2:
        at = rng.randrange(len(frame) + 1)
        frame[at:at] = rng.randbytes(rng.randrange(1, 9))
    elif kind == 3:
        del damaged[index]
    else:
        damaged.insert(index, bytearray(frame))
    return damaged


def corrupted_payloads(fields: tuple) -> Iterator[tuple[str, tuple]]:
    """Damaged versions of a plugin's ``(codec_id, payload, *extra)`` tuple, each with a description.

    A missing last field, every field replaced by a value of the wrong type, and every flat
    buffer cut by one item, emptied, or replaced by junk: a plugin must notice each of these.
    """
    if len(fields) > 2:
        yield "its last field missing", fields[:-1]
    for index in range(1, len(fields)):
        value = fields[index]
        yield f"field {index} replaced by a dict", _replace(fields, index, {"corrupt": [1, 2, 3]})
        if _is_flat_buffer(value):
            for damage, damaged in _damaged_buffers(value):
                yield f"field {index} {damage}", _replace(fields, index, damaged)


def _encode_with_fields(codec: Codec, handler: Any, obj: Any, fields: tuple) -> list:
    """Encode ``obj`` through ``codec`` with ``handler`` returning ``fields`` for it."""
    handler.encode = lambda *args, **kwargs: (True, {"__wrapyfi__": fields})
    try:
        return codec.encode(obj)
    finally:
        del handler.encode


def _is_flat_buffer(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return value.ndim == 1
    return isinstance(value, (bytes, bytearray, memoryview))


def _damaged_buffers(value: Any) -> Iterator[tuple[str, Any]]:
    """``value`` cut by one item, emptied and replaced by junk, each the same kind of buffer."""
    if isinstance(value, np.ndarray):
        junk = np.frombuffer(_JUNK * value.dtype.itemsize, dtype=value.dtype)
        cut, empty = value[:-1], value[:0]
    else:
        raw = bytes(value)
        wrap = memoryview if isinstance(value, memoryview) else type(value)
        junk, cut, empty = wrap(_JUNK), wrap(raw[:-1]), wrap(b"")
    if len(value):
        yield "cut by one item", cut
        yield "emptied", empty
    yield "replaced by junk", junk


def _replace(fields: tuple, index: int, value: Any) -> tuple:
    return fields[:index] + (value,) + fields[index + 1:]


def _applicable(sample: Optional[Any], what: str) -> Any:
    if sample is None:
        import pytest

        pytest.skip(f"no {what} sample for this plugin")
    return sample
