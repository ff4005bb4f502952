"""The code blocks of a Markdown page, with what the docs convention says to do with each.

The convention (every page under docs/ and README.md follows it):

- ```python: a standalone script; it must exit 0 within 30 s.
- ```console: lines starting with ``$ `` are shell commands, run in order (a line ending in ``\\``
  continues on the next); other lines are example output and are not compared.
- ```yaml / ```json: parsed. ```text and untagged blocks: output or diagrams, not run.
- ``<!-- docs-test: background -->`` just before a block: start it in the background (the first
  terminal of a two-terminal example) and stop it after the page's last block.
- ``<!-- docs-test: skip <reason> -->`` just before a block: do not run it; the reason is listed.

Any other language tag is an error, so a shell block cannot go unrun by being tagged ``sh``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

RUN = frozenset({"python", "console"})
PARSE = frozenset({"yaml", "json"})
SHOW = frozenset({"text", ""})

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+-]*)[^\n]*$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<word>\w+)\s*(?P<rest>.*?)\s*-->\s*$")


class ConventionError(ValueError):
    """A page breaks the docs convention (unknown tag or directive, skip without a reason)."""


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    """1-based line of the opening fence."""
    lang: str
    code: str
    background: bool = False
    skip_reason: Optional[str] = None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    def commands(self) -> list[str]:
        """A console block's shell commands, continuation lines joined."""
        commands, pending = [], None
        for line in self.code.splitlines():
            if pending is not None:
                pending += "\n" + line
            elif line.startswith("$ "):
                pending = line[2:]
            else:
                continue
            if not pending.endswith("\\"):
                commands.append(pending)
                pending = None
        if pending is not None:
            commands.append(pending)
        return commands


def blocks(path: Path, display: Path) -> list[Block]:
    """Every fenced block of ``path``, checked against the convention (``display`` names the page)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found, directive, index = [], None, 0
    while index < len(lines):
        line = lines[index]
        match = _DIRECTIVE.match(line)
        if match:
            directive = (match["word"], match["rest"], index + 1)
            index += 1
            continue
        fence = _FENCE.match(line)
        if not fence:
            if line.strip():
                directive = None  # a directive applies to the block right after it only
            index += 1
            continue
        closing = re.compile(rf"^[ \t]*{re.escape(fence['fence'][0])}{{{len(fence['fence'])},}}[ \t]*$")
        body, index = [], index + 1
        while index < len(lines) and not closing.match(lines[index]):
            body.append(lines[index][len(fence["indent"]):] if lines[index].startswith(fence["indent"]) else lines[index])
            index += 1
        start = index - len(body)
        found.append(_block(display, start, fence["lang"].lower(), "\n".join(body) + "\n", directive))
        directive, index = None, index + 1
    return found


def _block(page: Path, line: int, lang: str, code: str, directive: Optional[tuple]) -> Block:
    where = f"{page}:{line}"
    word, rest, directive_line = directive or (None, "", line)
    if word == "skip":
        if not rest:
            raise ConventionError(f"{page}:{directive_line}: docs-test: skip needs a reason")
        return Block(page, line, lang, code, skip_reason=rest)
    if lang not in RUN | PARSE | SHOW:
        raise ConventionError(
            f"{where}: code block tagged {lang!r}; use python or console (run), yaml or json (parsed), "
            "text (shown only), or precede it with <!-- docs-test: skip <reason> -->"
        )
    if word is None:
        return Block(page, line, lang, code)
    if word == "background" and not rest:
        if lang not in RUN:
            raise ConventionError(f"{where}: only python and console blocks can run in the background")
        return Block(page, line, lang, code, background=True)
    raise ConventionError(f"{page}:{directive_line}: unknown directive docs-test: {word} {rest}".rstrip())
