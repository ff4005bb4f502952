"""ZeroMQ settings from the environment, read once per process; kwargs override them per socket.

| variable | default | meaning |
|---|---|---|
| ``WRAPYFI_ZEROMQ_SOCKET_IP`` | ``127.0.0.1`` | address this node binds its sockets on and tells others to connect to |
| ``WRAPYFI_ZEROMQ_DISCOVERY`` | ``tcp://127.0.0.1:5659`` | where the discovery directory lives; every node of one system names the same one |
| ``WRAPYFI_ZEROMQ_IPC_DIR`` | ``$TMPDIR/wrapyfi_like-<uid>`` | folder for ``carrier="ipc"`` socket files |

On one machine nothing needs setting. Across machines, give every node the same
``WRAPYFI_ZEROMQ_DISCOVERY`` (an address of the machine that hosts the directory) and, on each
machine, ``WRAPYFI_ZEROMQ_SOCKET_IP`` = that machine's address on the shared network.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

from wrapyfi_like.exceptions import ConfigurationError


@dataclass(frozen=True)
class ZeroMQSettings:
    socket_ip: str
    discovery: str
    ipc_dir: str

    @classmethod
    def from_environment(cls) -> "ZeroMQSettings":
        return cls(
            socket_ip=os.environ.get("WRAPYFI_ZEROMQ_SOCKET_IP", "127.0.0.1"),
            discovery=os.environ.get("WRAPYFI_ZEROMQ_DISCOVERY", "tcp://127.0.0.1:5659"),
            ipc_dir=os.environ.get(
                "WRAPYFI_ZEROMQ_IPC_DIR",
                os.path.join(tempfile.gettempdir(), f"wrapyfi_like-{os.getuid()}"),
            ),
        )

    def bind_address(self, carrier: str) -> str:
        """An address to bind a new socket to, with the port or file chosen by the system."""
        if carrier == "tcp":
            return f"tcp://{self.socket_ip}:*"
        if carrier == "ipc":
            os.makedirs(self.ipc_dir, mode=0o700, exist_ok=True)
            return f"ipc://{self.ipc_dir}/{os.getpid()}-{os.urandom(6).hex()}.sock"
        raise ConfigurationError(f"unknown carrier {carrier!r}: use 'tcp' or 'ipc'")
