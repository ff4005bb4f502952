"""Construction checks every zenoh transport makes, so a setting zenoh cannot honour fails early."""

from __future__ import annotations

from typing import Any

from wrapyfi_like.exceptions import ConfigurationError
from wrapyfi_like.middlewares.base import CARRIERS


def check_carrier(carrier: str) -> None:
    """Zenoh picks its own links (same-host shared memory included), so a carrier is only checked."""
    if carrier not in CARRIERS:
        raise ConfigurationError(f"unknown carrier {carrier!r}: use one of {', '.join(CARRIERS)}")


def check_no_curve(key: Any) -> None:
    if key is not None:
        raise ConfigurationError("CURVE keys are a ZeroMQ feature; on zenoh use TLS/mTLS settings in "
                                 "the file named by WRAPYFI_ZENOH_CONFIG_FILEPATH")
