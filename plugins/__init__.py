"""Built-in plugins, installed as ``wrapyfi_like.plugins``.

This module is only an index: importing it imports no plugin and no third-party library. Each
entry names the module, the libraries whose objects it encodes, the codec ids it decodes and the
kwargs it takes; :mod:`wrapyfi_like.utils.plugin_discovery` loads a module on first need.
"""

from wrapyfi_like.utils.plugin_discovery import BuiltinPlugin

BUILTIN_PLUGINS: tuple[BuiltinPlugin, ...] = ()
