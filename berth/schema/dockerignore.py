"""``.dockerignore``: Docker's file format and path matching (pure: no I/O, stdlib and
berth.errors only). One implementation for both sides: the client filters a context
directory with it before sending it (as the docker CLI does), the builder applies it to
the context it received (berth.build.dockerignore re-exports it).

Follows moby/patternmatcher: ``#`` comment lines and blank lines are skipped, patterns are
trimmed and cleaned like Go's filepath.Clean (a leading ``/`` and ``./`` are dropped),
``!`` marks an exception, the last matching pattern wins, ``*`` ``?`` ``[...]`` stay inside
one path element, ``**`` spans any number of them, and a pattern that matches a directory
excludes everything below it.
"""

from __future__ import annotations

import posixpath
import re
import warnings
from dataclasses import dataclass

from berth.errors import InvalidArgument

_REGEX_SPECIAL = frozenset(".+()|{}$")


class DockerignoreError(InvalidArgument):
    pass


def clean(path: str) -> str:
    """Go's filepath.Clean for "/" paths."""
    out = posixpath.normpath(path) if path else "."
    if out.startswith("//"):
        out = "/" + out.lstrip("/")
    return out


def parse(text: str | bytes) -> list[str]:
    """The patterns of a .dockerignore file, in order, as Docker's ReadAll returns them."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    patterns: list[str] = []
    for raw in text.split("\n"):
        raw = raw.removesuffix("\r")
        if raw.startswith("#"):
            continue
        pattern = raw.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


@dataclass(frozen=True)
class Pattern:
    text: str            # cleaned, without the "!"
    exclusion: bool      # a "!" exception
    regex: re.Pattern[str]

    def match(self, path: str) -> bool:
        return self.regex.match(path) is not None


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A cleaned pattern as an anchored regular expression (patternmatcher's translation)."""
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
        elif ch in _REGEX_SPECIAL:
            out.append("\\" + ch)
        elif ch == "\\":
            if i < n:
                out.append(re.escape(pattern[i]))
                i += 1
            else:
                out.append("\\\\")
        elif ch == "[":
            j = _class_end(pattern, i)
            if j < 0:
                raise DockerignoreError(f"syntax error in pattern: {pattern!r}")
            # as Docker: "[!a]" is "!" or "a", "[^a]" negates; "&", "~" and "|" are literal in Go's
            # classes, and doubled they are Python's (future) set operations
            body = re.sub(r"\\.|[&~|]", lambda m: m[0] if len(m[0]) == 2 else "\\" + m[0], pattern[i:j])
            out.append("[" + body + "]")
            i = j + 1
        else:
            out.append(re.escape(ch))
    out.append("$")
    try:
        with warnings.catch_warnings():  # "--" in a class: a range's end, as in Go, whatever Python may do later
            warnings.simplefilter("ignore", FutureWarning)
            return re.compile("".join(out), re.DOTALL)
    except re.error:
        raise DockerignoreError(f"syntax error in pattern: {pattern!r}") from None


def _class_end(pattern: str, i: int) -> int:
    """Index of the "]" closing a class that starts at ``i`` (after "["), or -1."""
    j = i
    if j < len(pattern) and pattern[j] == "^":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    while j < len(pattern):
        if pattern[j] == "\\":
            j += 2
            continue
        if pattern[j] == "]":
            return j
        j += 1
    return -1


class Matcher:
    """Decides which context paths a .dockerignore excludes."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[Pattern] = []
        for p in patterns:
            p = p.strip()
            if not p:
                continue
            exclusion = p.startswith("!")
            if exclusion:
                p = p[1:]
                if not p:
                    raise DockerignoreError('illegal exclusion pattern: "!"')
            p = clean(p)
            if len(p) > 1 and p.startswith("/"):
                p = p[1:]
            self.patterns.append(Pattern(p, exclusion, compile_pattern(p)))

    @property
    def exclusions(self) -> bool:
        return any(p.exclusion for p in self.patterns)

    has_exclusions = exclusions

    def excluded(self, relpath: str, is_dir: bool = False) -> bool:
        """Docker's MatchesOrParentMatches: a pattern matching a parent matches the path."""
        path = _relative(relpath)
        if path == ".":
            return False
        parent = posixpath.dirname(path)
        parents = parent.split("/") if parent else []
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path)
            if not hit:
                for k in range(1, len(parents) + 1):
                    if pattern.match("/".join(parents[:k])):
                        hit = True
                        break
            if hit:
                matched = not pattern.exclusion
        return matched

    def may_contain_included(self, reldir: str) -> bool:
        """Could an excluded directory still hold a path an ``!`` exception brings back?
        (False means the walk can skip the directory entirely.)"""
        d = _relative(reldir)
        if d == ".":
            return True
        dparts = d.split("/")
        for pattern in self.patterns:
            if not pattern.exclusion:
                continue
            if _could_match_below(pattern.text, dparts):
                return True
        return False


def _could_match_below(pattern: str, dparts: list[str]) -> bool:
    pparts = pattern.split("/")
    for k, dpart in enumerate(dparts):
        if k >= len(pparts):
            return False        # the pattern stops above this directory
        if "**" in pparts[k]:
            return True         # "**" can reach anything below
        if not compile_pattern(pparts[k]).match(dpart):
            return False
    return len(pparts) >= len(dparts)


def _relative(path: str) -> str:
    path = clean(path)
    while path.startswith("/"):
        path = path[1:]
    return path or "."
