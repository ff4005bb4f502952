"""Helpers shared across wrapyfi_like; re-exports the plugin API as Wrapyfi's ``wrapyfi.utils`` does."""

from wrapyfi_like.utils.core_utils import Plugin, PluginRegistrar

__all__ = ["Plugin", "PluginRegistrar"]
