"""Settings this wire cannot honour, refused at construction (never silently ignored)."""

from __future__ import annotations

from typing import Any, Optional

from wrapyfi_like.exceptions import ConfigurationError


def check_wire_settings(topic: str, carrier: str, key: Any = None, backpressure: str = "block",
                        bind_port: Optional[int] = None) -> None:
    if carrier != "tcp":
        raise ConfigurationError(f"{topic}: Wrapyfi's ZeroMQ wire is tcp only, got carrier {carrier!r}")
    if key is not None:
        raise ConfigurationError(f"{topic}: Wrapyfi's ZeroMQ wire has no CURVE encryption; "
                                 "use the native wire (wire='native') for CURVE")
    if bind_port is not None:
        raise ConfigurationError(f"{topic}: bind_port needs the native wire; on Wrapyfi's wire the broker's "
                                 "ports are set with socket_pub_port/socket_sub_port (or Wrapyfi's variables)")
    if backpressure != "block":
        raise ConfigurationError(
            f"{topic}: backpressure={backpressure!r} needs the native wire; on Wrapyfi's wire every message "
            "passes one broker shared by all topics, so only 'block' (publisher to broker) is possible")
