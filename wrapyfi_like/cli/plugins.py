"""``wrapyfi-like plugins``: every plugin found, where from, the types it encodes, and load errors."""

from __future__ import annotations

import argparse
from typing import TextIO

from wrapyfi_like.cli.command import Command
from wrapyfi_like.utils import plugin_discovery


def list_plugins(args: argparse.Namespace, out: TextIO) -> int:
    """Load every plugin (built-in, WRAPYFI_PLUGIN_PATHS, entry points) and list them; 1 if any
    failed to load. Built-ins whose library is not installed are listed as such, not as failures."""
    plugin_discovery.load_external_plugins()
    plugin_discovery.load_entry_point_plugins()
    not_installed = plugin_discovery.load_all_builtins()
    for plugin in plugin_discovery.loaded_plugins():
        out.write(f"{plugin.codec_id}  ({plugin.name})\n")
        out.write(f"    from:  {plugin.source}\n")
        out.write(f"    types: {', '.join(plugin.types) or '(decodes only)'}\n")
    for entry in not_installed:
        out.write(f"not installed: {', '.join(entry.codec_ids)} (needs {', '.join(entry.libraries)})\n")
    failures = plugin_discovery.load_failures()
    for failure in failures:
        out.write(f"FAILED {failure.path}\n    error: {failure.error}\n")
    return 1 if failures else 0


COMMAND = Command(
    list_plugins,
    "list the encoding plugins found (built-in, WRAPYFI_PLUGIN_PATHS, entry points in the "
    f"'{plugin_discovery.ENTRY_POINT_GROUP}' group), where from, their types and load errors",
)
