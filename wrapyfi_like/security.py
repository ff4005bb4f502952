"""CURVE keys for encrypted, authenticated ZeroMQ traffic.

A producer (publisher, reply server) holds the secret key; consumers (listeners, request clients)
are given the matching public key, so they accept data only from the key's holder:

```python
from wrapyfi_like.security import generate_keypair

public_file, secret_file = generate_keypair("keys")   # keys/wrapyfi_like.key, .key_secret
```

Pass ``curve_secret_key=secret_file`` to publishers/servers and ``curve_server_key=public_file``
to listeners/clients (as decorator kwargs, or ``publisher_kwargs``/``listener_kwargs``), or set
``WRAPYFI_ZEROMQ_CURVE_SECRET_KEY`` / ``WRAPYFI_ZEROMQ_CURVE_SERVER_KEY``. Consumers also need a
key pair of their own (``WRAPYFI_ZEROMQ_CURVE_CLIENT_KEY``) whose public key the producers allow
(``WRAPYFI_ZEROMQ_CURVE_ALLOWED``). A key is a path to a key file or the 40-character z85 text
(:func:`keypair` gives those). docs/reliability.md says what this protects and what it does not.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import zmq
import zmq.auth


def keypair() -> tuple[str, str]:
    """A new ``(public, secret)`` CURVE key pair as z85 text, e.g. for environment variables."""
    public, secret = zmq.curve_keypair()
    return public.decode("ascii"), secret.decode("ascii")


def generate_keypair(directory: Union[str, os.PathLike], name: str = "wrapyfi_like") -> tuple[Path, Path]:
    """Write a new key pair to ``directory/name.key`` (public) and ``name.key_secret`` (secret).

    Returns both paths. The secret file is readable by its owner only; the public one is what
    consumers get. Existing files of that name are replaced.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    public_file, secret_file = (Path(p) for p in zmq.auth.create_certificates(folder, name))
    secret_file.chmod(0o600)
    return public_file, secret_file
