"""Tools for testing code that uses wrapyfi_like, and for testing your own plugins.

:class:`PluginConformance` is the conformance suite every encoding plugin should pass;
:func:`round_trip` and :func:`wire_copy` carry an object through a codec as the wire would;
:func:`inproc_middleware` runs communicators in memory, so classes can be unit-tested unchanged;
:class:`TransportConformance` is the suite every middleware must pass.
"""

from wrapyfi_like.testing.conformance import PluginConformance, corrupted_payloads, round_trip, wire_copy
from wrapyfi_like.testing.inproc import inproc_middleware
from wrapyfi_like.testing.transports import TransportConformance

__all__ = ["PluginConformance", "TransportConformance", "corrupted_payloads", "inproc_middleware", "round_trip",
           "wire_copy"]
