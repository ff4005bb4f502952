"""The listener's side of ``carrier="shm"``: its inbox, and turning references into arrays.

A ``carrier="shm"`` listener whose process can use iceoryx2 makes its inbox at start and only
then announces itself as shm-capable (:func:`~.shm_wire.shm_listener_key`); a listener that
cannot (iceoryx2 not importable, the inbox cannot be made) announces nothing more and gets
ordinary frames from everyone.

Each buffer that came in shared memory is returned as a **read-only** view of the shared chunk
that keeps its sample alive as long as any array made from it lives (so the chunk is never reused
under the user's feet). Held samples count against iceoryx2's borrow limit
(:data:`~.shm.BORROWED`): once the user holds that many less two, further payloads are copied out
(owned, writable) and their samples released at once, so holding arrays never blocks delivery.
A reference whose sample is not in the inbox (iceoryx2 did not deliver it) is counted as
``missed`` (and ``shm_missed``) and logged; that message is skipped.
"""

from __future__ import annotations

from typing import Any, Optional

from wrapyfi_like.exceptions import DecodeError
from wrapyfi_like.middlewares.envelope import Envelope
from wrapyfi_like.middlewares.zeromq import shm
from wrapyfi_like.middlewares.zeromq.shm_wire import shm_listener_key, unpack_refs


class ShmIntake:
    """The shared-memory inbox of one listener (or none: then every shm reference is refused)."""

    def __init__(self, listener: Any, carrier: str, session: Any) -> None:
        self._listener = listener
        self.inbox: Optional[shm.Inbox] = None
        self._announcement: Optional[int] = None
        self.received = 0
        self.missed = 0
        self._shm_carrier = carrier == "shm"
        if not self._shm_carrier or not shm.available():
            return
        try:
            self.inbox = shm.Inbox(listener.endpoint)
        except shm.shm_errors() as error:
            listener._log.warning(listener.topic, "shm-inbox", "listener on %s: cannot make its "
                                  "shared-memory inbox (%s); it gets ordinary frames", listener.topic, error)
            return
        self._session = session
        self._announcement = session.announce(shm_listener_key(listener.topic, shm.compatibility()),
                                              listener.endpoint, {})

    def resolve(self, envelope: Envelope, body: list) -> Optional[tuple[Envelope, list]]:
        """``body`` (``[header, *buffers, refs]``) with each reference replaced by its read-only
        view; None if the message is skipped (malformed, or its sample missing: counted)."""
        listener = self._listener
        if self.inbox is None:
            return listener._malformed("shm", "a shared-memory reference arrived at a listener without an inbox")
        inbox = self.inbox
        sample = inbox.take(envelope.publisher, envelope.seq)
        if sample is None:
            self.missed += 1
            listener._sequence.lost(envelope.publisher)
            listener._log.warning(envelope.publisher.hex(), "shm-missed", "listener on %s: the shared-memory "
                                  "payload of message %d from publisher %s never arrived (%d missed in total)",
                                  listener.topic, envelope.seq, envelope.publisher.hex(), self.missed)
            return None
        payload_size = inbox.size(sample)
        try:
            if payload_size > listener._max_message_size:  # a copy-out would allocate that much
                raise DecodeError(f"a {payload_size}-byte shared-memory payload is over max_message_size")
            entries = unpack_refs(body[-1], len(body) - 1, payload_size)
        except DecodeError as error:
            inbox.release(sample)
            return listener._malformed("shm", "%s", error)
        views = inbox.views(sample, entries, copy=inbox.held > shm.BORROWED - 2)
        resolved = body[:-1]
        for (index, _, _), view in zip(entries, views):
            resolved[index] = view
        self.received += 1
        return envelope, resolved

    def statistics(self) -> dict[str, int]:
        """``shm`` (1: this listener has an inbox), ``shm_received`` (messages with buffers from
        shared memory) and ``shm_missed`` (references whose sample never arrived; also in ``missed``);
        nothing for other carriers."""
        if not self._shm_carrier:
            return {}
        return {"shm": int(self.inbox is not None), "shm_received": self.received, "shm_missed": self.missed}

    def close(self) -> None:
        if self._announcement is not None:
            self._session.withdraw(self._announcement)
        if self.inbox is not None:
            self.inbox.close()
