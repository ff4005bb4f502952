"""Discovery: which endpoints serve which key, so peers connect to each other directly.

Data never passes through discovery: a listener (or a service) binds its own socket and
publishers (or clients) connect to it directly (one hop, no broker). Discovery only tells them
where to connect. Keys are namespaced per kind (:func:`~..keys.listener_key`,
:func:`~..reqrep.service_key`), so kinds never mix.

One concept per module: :mod:`.protocol` (the validated, bounded messages), :mod:`.directory`
(the state one process hosts), :mod:`.agent` (each process's thread), :mod:`.watch` (what a
publisher follows), :mod:`.client` (a one-off listing for tools) and :mod:`.waiting` (the
warning for a publisher or listener that found no peer).
"""

from wrapyfi_like.middlewares.zeromq.discovery.agent import NodeAgent
from wrapyfi_like.middlewares.zeromq.discovery.client import DirectoryEntry, list_directory
from wrapyfi_like.middlewares.zeromq.discovery.directory import ENTRY_TTL, Directory, Peer
from wrapyfi_like.middlewares.zeromq.discovery.watch import Watch

__all__ = ["Directory", "DirectoryEntry", "ENTRY_TTL", "NodeAgent", "Peer", "Watch", "list_directory"]
