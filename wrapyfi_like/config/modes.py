"""The names of the modes, below everything that implements them.

Why here: a mode configuration is checked against these names when it is loaded, and the config
layer must not import the connect layer that runs the modes (connect imports config, never the
other way). :mod:`wrapyfi_like.connect.modes` implements exactly these; a test keeps the two equal.
"""

MODES = ("publish", "listen", "transceive", "reemit", "receive", "reply", "request", "disable", None)
"""Every mode ``activate_communication`` and a mode configuration accept; None runs the method
as plain Python."""
