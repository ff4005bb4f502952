"""``AudioChunk``: ``(samples, rate)``, samples a float32 array ``[chunk, channels]``.

Wrapyfi's kwargs and meaning: ``chunk`` (samples per channel; -1: any), ``channels`` and ``rate``
(-1: any). The samples travel as one zero-copy buffer. A sender whose chunk does not match its
declaration raises :class:`ShapeError`; a listener treats a mismatching chunk as a malformed
message. A listener returns ``(samples, rate)``, or ``(None, rate)`` with its declared rate when
nothing arrived and it does not wait, as Wrapyfi does.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from wrapyfi_like.exceptions import DecodeError, ShapeError


class AudioChunk:
    """Checks audio chunks against the declared ``chunk``, ``channels`` and ``rate``."""

    def __init__(self, chunk: int = -1, channels: int = 1, rate: int = 44100, **_: Any) -> None:
        self.chunk, self.channels, self.rate = int(chunk), int(channels), int(rate)

    def to_wire(self, value: Any) -> Any:
        if value is None:
            return None
        try:
            samples, rate = value
        except (TypeError, ValueError):
            raise ShapeError(f"AudioChunk: expected (samples, rate), got {type(value).__name__}") from None
        if samples is None:
            return None
        if not isinstance(samples, np.ndarray):
            raise ShapeError(f"AudioChunk: samples must be a numpy array, got {type(samples).__name__}")
        problem = self._mismatch(samples, rate)
        if problem:
            raise ShapeError(f"audio chunk to send {problem}")
        if samples.ndim == 1:
            samples = samples.reshape(-1, 1)
        return samples.astype(np.float32, copy=False), int(rate)

    def from_wire(self, value: Any) -> tuple[Optional[np.ndarray], int]:
        if value is None:
            return None, self.rate
        if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], np.ndarray)
                and isinstance(value[1], int)):
            raise DecodeError("AudioChunk: received something other than (samples, rate)")
        samples, rate = value
        problem = self._mismatch(samples, rate)
        if problem or samples.dtype != np.float32:
            raise DecodeError(f"received audio chunk {problem or f'has dtype {samples.dtype}, not float32'}")
        return samples, rate

    def _mismatch(self, samples: np.ndarray, rate: Any) -> Optional[str]:
        if not isinstance(rate, (int, np.integer)) or rate <= 0:
            return f"has rate {rate!r}; a rate is a positive int"
        if 0 < self.rate != rate:
            return f"has rate {rate}, but {self.rate} is declared"
        if samples.ndim not in (1, 2):
            return f"has shape {samples.shape}; expected (chunk, channels)"
        chunk, channels = samples.shape[0], samples.shape[1] if samples.ndim == 2 else 1
        if 0 < self.chunk != chunk or 0 < self.channels != channels:
            return (f"has {chunk} samples x {channels} channels, but "
                    f"{self.chunk if self.chunk > 0 else 'any'} x {self.channels} is declared")
        if not np.issubdtype(samples.dtype, np.floating):
            return f"has dtype {samples.dtype}; audio samples are float32"
        return None
