"""``.dockerignore`` patterns as Docker's patternmatcher reads and matches them (pure).

Shared by the client, which filters a context directory before sending it (as the docker CLI
does), and by anything on the daemon side that needs the same rules. Rules:

- ``#`` starts a comment line; blank lines are skipped; surrounding spaces are trimmed.
- ``!pattern`` is an exception: it re-includes what earlier patterns excluded. The last pattern
  that matches a path decides.
- Patterns are cleaned like Go's ``filepath.Clean``; a leading ``/`` is dropped.
- ``*`` and ``?`` never match ``/``; ``**`` matches any number of directories (also none);
  ``[a-z]`` and ``[!a-z]`` are character classes; ``\\`` escapes the next character.
- A path is excluded also when one of its parent directories matches a pattern.
"""

from __future__ import annotations

import posixpath
import re


def _clean(path: str) -> str:
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        cleaned = cleaned[1:]
    return cleaned


def parse(text: str) -> list[str]:
    """The patterns of a .dockerignore file, cleaned, exceptions kept as ``!pattern``."""
    out: list[str] = []
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        pattern = raw.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = _clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        out.append("!" + pattern if invert else pattern)
    return out


def _to_regex(pattern: str) -> re.Pattern[str]:
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                out.append(".*" if i >= n else "(.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i < n:
                out.append(re.escape(pattern[i]))
                i += 1
            else:
                out.append("\\\\")
        elif ch == "[":
            end = pattern.find("]", i + 1 if i < n and pattern[i] in "!^" else i)
            if end < 0:
                out.append("\\[")
                continue
            body = pattern[i:end]
            i = end + 1
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
        else:
            out.append(re.escape(ch))
    out.append("$")
    return re.compile("".join(out), re.DOTALL)


class _Pattern:
    __slots__ = ("text", "exclusion", "regex")

    def __init__(self, text: str) -> None:
        self.exclusion = text.startswith("!")
        self.text = text[1:] if self.exclusion else text
        self.regex = _to_regex(self.text)

    def match(self, path: str) -> bool:
        return self.regex.match(path) is not None


class Matcher:
    """Decides which context paths (relative, ``/``-separated) a set of patterns excludes."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns = [_Pattern(p) for p in patterns if p not in ("", "!")]
        self.has_exclusions = any(p.exclusion for p in self.patterns)

    def excluded(self, relpath: str, is_dir: bool = False) -> bool:
        path = _clean(relpath).lstrip("/")
        parents = path.split("/")[:-1]
        matched = False
        for pat in self.patterns:
            hit = pat.match(path)
            if not hit and parents:
                hit = any(pat.match("/".join(parents[:k])) for k in range(1, len(parents) + 1))
            if hit:
                matched = not pat.exclusion
        return matched

    def may_contain_included(self, reldir: str) -> bool:
        """Must the walk descend into this excluded directory (an exception may re-include)?"""
        if not self.has_exclusions:
            return False
        prefix = _clean(reldir).lstrip("/") + "/"
        return any(p.exclusion and (p.text + "/").startswith(prefix) or
                   p.exclusion and _has_wildcard_before(p.text, prefix) for p in self.patterns)


def _has_wildcard_before(text: str, prefix: str) -> bool:
    """An exception like ``!**/keep`` or ``!*/keep`` may match under any directory."""
    literal = re.split(r"[*?\[\\]", text, maxsplit=1)[0]
    return len(literal) < len(text) and prefix.startswith(literal)
