"""Settings this wire cannot honour, refused at construction (never silently ignored)."""

from __future__ import annotations

from typing import Any

from wrapyfi_like.exceptions import ConfigurationError


def check_wire_settings(topic: str, carrier: str, key: Any = None, backpressure: str = "block") -> None:
    if carrier != "tcp":
        raise ConfigurationError(f"{topic}: Wrapyfi's ZeroMQ wire is tcp only, got carrier {carrier!r}")
    if key is not None:
        raise ConfigurationError(f"{topic}: Wrapyfi's ZeroMQ wire has no CURVE encryption; "
                                 "use the native wire (wire='native') for CURVE")
    if backpressure != "block":
        raise ConfigurationError(
            f"{topic}: backpressure={backpressure!r} needs the native wire; on Wrapyfi's wire every message "
            "passes one broker shared by all topics, so only 'block' (publisher to broker) is possible")
