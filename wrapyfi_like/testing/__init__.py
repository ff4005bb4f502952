"""Tools for testing code that uses wrapyfi_like, and for testing your own plugins.

:class:`PluginConformance` is the conformance suite every encoding plugin should pass;
:func:`round_trip` and :func:`wire_copy` carry an object through a codec as the wire would.
"""

from wrapyfi_like.testing.conformance import PluginConformance, corrupted_payloads, round_trip, wire_copy

__all__ = ["PluginConformance", "corrupted_payloads", "round_trip", "wire_copy"]
