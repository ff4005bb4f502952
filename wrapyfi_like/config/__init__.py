"""Mode configuration files: which instance of which class communicates how, without code changes."""

from wrapyfi_like.config.manager import ConfigManager

__all__ = ["ConfigManager"]
