"""The zenoh configuration from Wrapyfi's environment variables, read when a session is opened.

| variable | default | meaning |
|---|---|---|
| ``WRAPYFI_ZENOH_CONFIG_FILEPATH`` | unset | a zenoh JSON5 config file to start from (TLS, access control…) |
| ``WRAPYFI_ZENOH_MODE`` | ``peer`` | ``peer``, ``client`` or ``router`` |
| ``WRAPYFI_ZENOH_CONNECT`` | ``["tcp/<IP>:<PORT>"]`` | JSON list of endpoints to connect to (a router, the rendezvous) |
| ``WRAPYFI_ZENOH_LISTEN`` | ``["tcp/<IP>:<PORT>", "tcp/<IP>:0"]`` | JSON list of endpoints to listen on (not in client mode) |
| ``WRAPYFI_ZENOH_IP`` / ``WRAPYFI_ZENOH_PORT`` | ``127.0.0.1`` / ``7447`` | the defaults above (Wrapyfi's names) |
| ``WRAPYFI_ZENOH_MULTICAST`` | ``0`` | ``1``: LAN auto-discovery by multicast scouting (opt-in) |
| ``WRAPYFI_LIKE_DOMAIN`` | ``0`` | keys of domain N≠0 are prefixed ``N/``; domains never hear each other |

Why these defaults: with nothing set and no router, every process listens on the rendezvous
port (the first one to bind it wins; ``exit_on_failure=false`` lets the others go on) *and* on a
port of its own, and connects to the rendezvous; zenoh's gossip then links all processes of the
host directly, in any start order, and they keep their links when the rendezvous host exits.
Multicast stays off, like our ZeroMQ default of binding to 127.0.0.1: joining a LAN is a choice.
Two zenoh defaults are changed because they lose messages silently: congestion control under
"block" gives up and closes the link after 5 s (``wait_before_close``), raised here to an hour.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

from wrapyfi_like.exceptions import ConfigurationError
from wrapyfi_like.limits import DEFAULT_MAX_MESSAGE_SIZE

BLOCK_WAIT_BEFORE_CLOSE_US = 3_600_000_000
"""How long a "block" put may wait before zenoh closes the link (µs); zenoh's default is 5 s."""
MODES = ("peer", "client", "router")
RETRY_MAX_MS = 1000
"""Longest pause between two attempts to reach an endpoint (zenoh's default grows to 4 s): a
restarted rendezvous or router is found again within about a second."""


def domain() -> int:
    """``WRAPYFI_LIKE_DOMAIN`` as an integer ≥ 0."""
    text = os.environ.get("WRAPYFI_LIKE_DOMAIN", "0")
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigurationError(f"WRAPYFI_LIKE_DOMAIN must be an integer ≥ 0, got {text!r}")
    return value


def _endpoints(name: str, default: list[str]) -> list[str]:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = json.loads(text)
    except ValueError as error:
        raise ConfigurationError(f'{name} must be a JSON list of endpoints, e.g. \'["tcp/10.0.0.5:7447"]\', '
                                 f"got {text!r}") from error
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigurationError(f"{name} must be a JSON list of endpoint strings, got {text!r}")
    return value


def entries(local: Optional[str] = None, joining: bool = False) -> dict[str, Any]:
    """The config entries (zenoh path → value) set on top of the file or zenoh's defaults.

    ``local`` is the loopback endpoint of the process's shared session: the shared session also
    listens on it (``joining`` False), and every other session of the process (``joining`` True,
    one per listener) listens only on a port of its own and connects to it first, so it finds the
    process's publishers at once, whoever holds the rendezvous port.
    """
    mode = os.environ.get("WRAPYFI_ZENOH_MODE", "peer")
    if mode not in MODES:
        raise ConfigurationError(f"WRAPYFI_ZENOH_MODE must be one of {MODES}, got {mode!r}")
    ip = os.environ.get("WRAPYFI_ZENOH_IP", "127.0.0.1")
    port = os.environ.get("WRAPYFI_ZENOH_PORT", "7447")
    multicast = os.environ.get("WRAPYFI_ZENOH_MULTICAST", "0").strip().lower()
    if multicast not in ("0", "1", "true", "false", ""):
        raise ConfigurationError(f"WRAPYFI_ZENOH_MULTICAST must be 0 or 1, got {multicast!r}")
    values: dict[str, Any] = {
        "mode": mode,
        "connect/endpoints": _endpoints("WRAPYFI_ZENOH_CONNECT", [f"tcp/{ip}:{port}"]),
        "connect/exit_on_failure": False,
        "connect/retry": {"period_init_ms": 250, "period_max_ms": RETRY_MAX_MS, "period_increase_factor": 2},
        "scouting/multicast/enabled": multicast in ("1", "true"),
        "transport/link/tx/queue/congestion_control/block/wait_before_close": BLOCK_WAIT_BEFORE_CLOSE_US,
        "transport/link/rx/max_message_size": DEFAULT_MAX_MESSAGE_SIZE,
        "transport/shared_memory/enabled": False,
    }
    if mode != "client":
        listen = _endpoints("WRAPYFI_ZENOH_LISTEN", [f"tcp/{ip}:{port}", f"tcp/{ip}:0"])
        if joining:
            listen = [f"tcp/{ip}:0"]
            values["connect/endpoints"] = [local, *values["connect/endpoints"]] if local else values["connect/endpoints"]
        elif local:
            listen = [*listen, local]
        values["listen/endpoints"] = listen
        values["listen/exit_on_failure"] = False
    return values


def config(zenoh: Any, local: Optional[str] = None, joining: bool = False) -> Any:
    """A ``zenoh.Config`` from the environment (``zenoh`` is the imported module); see :func:`entries`."""
    path = os.environ.get("WRAPYFI_ZENOH_CONFIG_FILEPATH")
    try:
        result = zenoh.Config.from_file(path) if path else zenoh.Config()
    except zenoh.ZError as error:
        raise ConfigurationError(f"WRAPYFI_ZENOH_CONFIG_FILEPATH={path!r}: {error}") from error
    for key, value in entries(local, joining).items():
        try:
            result.insert_json5(key, json.dumps(value))
        except zenoh.ZError as error:
            raise ConfigurationError(f"zenoh config {key}={value!r}: {error}") from error
    return result
