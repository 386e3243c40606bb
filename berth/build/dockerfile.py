"""build.dockerfile: the Dockerfile parser (lines -> instructions), with Docker's rules.

Owns: parser directives (``# syntax=``, ``# escape=``, ``# check=``, only before any other
line), line continuations with the escape token (comment and blank lines inside a
continuation are skipped), comments, case-insensitive keywords, builder flags
(``--name=value`` before the arguments), exec (JSON) form detection, heredocs
(``RUN <<EOF``, ``<<-EOF``, ``<<"EOF"``, several per line, ``COPY <<EOF /dst``), ONBUILD.
Typed commands are built from these instructions by build.instructions. Pure: no I/O.
"""

from __future__ import annotations

import json as _json
import re
from dataclasses import dataclass

from berth.build import shell
from berth.errors import InvalidArgument

KEYWORDS = ("add", "arg", "cmd", "copy", "entrypoint", "env", "expose", "from", "healthcheck",
            "label", "maintainer", "onbuild", "run", "shell", "stopsignal", "user", "volume",
            "workdir")
_JSON_CMDS = frozenset({"cmd", "entrypoint", "run", "shell"})     # parseMaybeJSON
_JSON_LIST_CMDS = frozenset({"add", "copy", "volume"})            # parseMaybeJSONToList
_HEREDOC_CMDS = frozenset({"add", "copy", "run"})
_DIRECTIVES = frozenset({"syntax", "escape", "check"})

_RE_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_RE_HEREDOC = re.compile(r"^(\d*)<<(-?)([^<]*)$")
_RE_WS = re.compile(r"[\t\v\f\r ]+")
_RE_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)


class DockerfileError(InvalidArgument):
    """A Dockerfile that cannot be parsed; the message carries the line as Docker's does."""

    def __init__(self, reason: str, line: int | None = None, end_line: int | None = None,
                 *, parse: bool = True) -> None:
        self.reason = reason
        self.line = line
        self.end_line = end_line if end_line is not None else line
        if line is None or not parse:
            super().__init__(reason)        # e.g. "file with no instructions", expansion errors
        else:
            super().__init__(f"dockerfile parse error on line {line}: {reason}")


@dataclass(frozen=True)
class Heredoc:
    name: str        # "EOF" (quotes removed)
    content: str     # body as written, each line with its newline; leading tabs already stripped for <<-
    expand: bool     # False when the delimiter was quoted (<<"EOF" / <<'EOF')
    chomp: bool      # <<- : leading tabs stripped
    fd: int | None = None   # "3<<EOF" -> 3


@dataclass(frozen=True)
class Instruction:
    cmd: str                               # lower case keyword: "from", "run", "copy", ...
    flags: tuple[tuple[str, str], ...]     # (("from", "build"), ("link", "true")) in order
    args: tuple[str, ...]                  # exec form: the JSON items; else the rest as ONE string
    json: bool                             # exec form
    original: str                          # as written, continuations joined, trimmed
    line: int                              # 1-based line of the keyword
    end_line: int
    heredocs: tuple[Heredoc, ...] = ()
    raw_flags: tuple[str, ...] = ()        # the flags as written ("--link", "--from=x")
    keyword: str = ""                      # the keyword as written ("Run")

    @property
    def rest(self) -> str:
        """Everything after the flags (for shell form this is ``args[0]``)."""
        if self.json:
            return _json.dumps(list(self.args))
        return self.args[0] if self.args else ""


@dataclass(frozen=True)
class Dockerfile:
    directives: dict[str, str]       # "syntax", "escape", "check"
    escape: str                      # "\\" or "`"
    instructions: tuple[Instruction, ...]
    warnings: tuple[str, ...] = ()


class _Directives:
    def __init__(self) -> None:
        self.escape = "\\"
        self.done = False
        self.seen: dict[str, str] = {}
        self._cont = _continuation_regex("\\")

    def feed(self, line: str) -> None:
        if self.done:
            return
        m = _RE_DIRECTIVE.match(line)
        if not m:
            self.done = True
            return
        key = m.group(1).lower()
        if key not in _DIRECTIVES:
            self.done = True
            return
        if key in self.seen:
            raise DockerfileError(f"only one {key} parser directive can be used")
        value = m.group(2)
        self.seen[key] = value
        if key == "escape":
            if value not in ("`", "\\"):
                raise DockerfileError(f"invalid escape token '{value}' does not match ` or \\")
            self.escape = value
            self._cont = _continuation_regex(value)

    def trim_continuation(self, line: str) -> tuple[str, bool]:
        """(line without the trailing escape token, is this the end of the instruction)."""
        m = self._cont.search(line)
        if m:
            return line[:m.start()], False
        return line, True


def _continuation_regex(escape: str) -> re.Pattern[str]:
    return re.compile(re.escape(escape) + r"[ \t]*$")


def _split_lines(text: str) -> list[str]:
    """Lines with their "\\n" kept (heredoc bodies need them); no other separators."""
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def _trim_newline(line: str) -> str:
    if line.endswith("\r\n"):
        return line[:-2]
    if line.endswith("\n"):
        return line[:-1]
    return line


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def parse(text: str | bytes) -> Dockerfile:
    """Parse a whole Dockerfile; raises DockerfileError with the line on bad input."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = _split_lines(text)
    d = _Directives()
    out: list[Instruction] = []
    warnings: list[str] = []
    i = 0
    while i < len(lines):
        body = _trim_newline(lines[i]).lstrip()
        i += 1
        try:
            d.feed(body)
        except DockerfileError as e:
            raise DockerfileError(e.reason, i) from None
        start = i
        line, eol = d.trim_continuation("" if _is_comment(body) else body)
        if eol and line == "":
            continue
        empty_continuation = False
        while not eol and i < len(lines):
            body = _trim_newline(lines[i])
            i += 1
            if _is_comment(body):
                continue
            if not body.strip():
                empty_continuation = True
                continue
            cont, eol = d.trim_continuation(body)
            line += cont
        if empty_continuation:
            warnings.append(f"Empty continuation line found in: {line}")
        inst = _instruction(line, d.escape, start, i)
        if _can_contain_heredoc(inst) and "<<" in line:
            docs, i = _read_heredocs(line, lines, i, start)
            inst = _with(inst, heredocs=tuple(docs), end_line=i)
        out.append(inst)
    if not out:
        raise DockerfileError("file with no instructions")
    directives = dict(d.seen)
    return Dockerfile(directives=directives, escape=d.escape, instructions=tuple(out),
                      warnings=tuple(warnings))


def _with(inst: Instruction, **changes: object) -> Instruction:
    fields = dict(inst.__dict__)
    fields.update(changes)
    return Instruction(**fields)  # type: ignore[arg-type]


def _instruction(line: str, escape: str, start: int, end: int) -> Instruction:
    stripped = line.strip()
    parts = _RE_WS.split(stripped, maxsplit=1)
    keyword = parts[0]
    cmd = keyword.lower()
    if cmd not in KEYWORDS:
        raise DockerfileError(_unknown_instruction(keyword), start, end)
    raw_flags: list[str] = []
    rest = ""
    if len(parts) == 2:
        rest, raw_flags = _extract_flags(parts[1])
    rest = rest.strip()
    try:
        args, is_json = _arguments(cmd, rest, escape)
    except DockerfileError as e:
        raise DockerfileError(e.reason, start, end) from None
    return Instruction(cmd=cmd, flags=tuple(_flag_pair(f) for f in raw_flags), args=args,
                       json=is_json, original=stripped, line=start, end_line=end,
                       raw_flags=tuple(raw_flags), keyword=keyword)


def _unknown_instruction(keyword: str) -> str:
    msg = f"unknown instruction: {keyword}"
    best = suggest(keyword, KEYWORDS, case_sensitive=False)
    return msg + (f" (did you mean {best}?)" if best else "")


def suggest(word: str, choices: tuple[str, ...] | list[str], case_sensitive: bool = True) -> str | None:
    """BuildKit's "did you mean" rule: the first choice within edit distance 2, none when the
    word is itself a choice; case-insensitive lookups answer in the word's case."""
    val = word if case_sensitive else word.lower()
    match, best = None, 3
    for choice in choices:
        opt = choice if case_sensitive else choice.lower()
        if val == opt:
            return None
        dist = _levenshtein(val, opt)
        if dist < best:
            match, best = opt, dist
    if match is None or case_sensitive:
        return match
    if word == word.lower():
        return match.lower()
    if word == word.upper():
        return match.upper()
    return match


def _levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _flag_pair(flag: str) -> tuple[str, str]:
    name, eq, value = flag[2:].partition("=")
    return (name, value if eq else "true")


def _extract_flags(line: str) -> tuple[str, list[str]]:
    """Leading ``--flag[=value]`` words (quotes and backslashes allowed inside them)."""
    words: list[str] = []
    pos = 0
    n = len(line)
    while True:
        while pos < n and line[pos].isspace():
            pos += 1
        if pos >= n:
            return "", words
        if not line.startswith("--", pos):
            return line[pos:], words
        word: list[str] = []
        blank_ok = False
        quote = ""
        while pos < n:
            ch = line[pos]
            if quote:
                if ch == quote:
                    quote = ""
                elif ch == "\\" and pos + 1 < n:
                    pos += 1
                    word.append(line[pos])
                elif ch != "\\":
                    word.append(ch)
                pos += 1
                continue
            if ch.isspace():
                break
            if ch in ("'", '"'):
                quote = ch
                blank_ok = True
            elif ch == "\\":
                if pos + 1 < n:
                    pos += 1
                    word.append(line[pos])
            else:
                word.append(ch)
            pos += 1
        w = "".join(word)
        if w == "--":
            return line[pos:], words
        if blank_ok or w:
            words.append(w)


def _arguments(cmd: str, rest: str, escape: str) -> tuple[tuple[str, ...], bool]:
    if cmd in _JSON_CMDS or cmd in _JSON_LIST_CMDS:
        items = parse_json_array(rest)
        if items is not None:
            return tuple(items), True
    elif cmd == "healthcheck":
        parts = re.split(r"\s+", rest, maxsplit=1)
        if len(parts) == 2:
            items = parse_json_array(parts[1])
            if items is not None:
                return (parts[0], *items), True
    elif cmd == "onbuild" and rest:
        _sub_instruction(rest, escape, 0, 0)   # the trigger must itself parse (JSON of strings)
    return ((rest,) if rest else ()), False


def _sub_instruction(rest: str, escape: str, start: int, end: int) -> Instruction | None:
    """The ONBUILD trigger; an unknown keyword is only an error when it fires (as Docker)."""
    try:
        return _instruction(rest, escape, start, end)
    except DockerfileError as e:
        if e.reason.startswith("unknown instruction:"):
            return None
        raise


def parse_json_array(rest: str) -> list[str] | None:
    """The items of a JSON array of strings; None when ``rest`` is not a JSON array (shell form)."""
    rest = rest.lstrip()
    if not rest.startswith("["):
        return None
    try:
        value = _json.loads(rest)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise DockerfileError("when using JSON array syntax, arrays must be comprised of strings only")
    return value


def _can_contain_heredoc(inst: Instruction) -> bool:
    if inst.cmd == "onbuild":
        if not inst.args:
            return False
        sub = _sub_instruction(inst.args[0], "\\", inst.line, inst.end_line)
        return sub is not None and sub.cmd in _HEREDOC_CMDS and not sub.json
    return inst.cmd in _HEREDOC_CMDS and not inst.json


def parse_heredoc(word: str) -> Heredoc | None:
    """``<<EOF`` / ``<<-"EOF"`` / ``3<<EOF`` -> Heredoc without content; None if not one."""
    m = _RE_HEREDOC.match(word)
    if not m or not m.group(3):
        return None
    rest = m.group(3)
    try:
        words = shell.Lexer("\\", skip_unset=True).process(rest, {})[1]
        raw = shell.Lexer("\\", skip_unset=True, raw_quotes=True).process(rest, {})[1]
    except shell.ShellError as e:
        raise DockerfileError(str(e)) from None
    if len(words) != 1 or len(raw) != 1:
        return None
    quotes = words[0].count("'") + words[0].count('"')
    raw_quotes = raw[0].count("'") + raw[0].count('"')
    return Heredoc(name=words[0], content="", expand=quotes == raw_quotes,
                   chomp=m.group(2) == "-", fd=int(m.group(1)) if m.group(1) else None)


def heredocs_in(line: str) -> list[Heredoc]:
    """Every heredoc opener among the words of ``line`` (quotes and escapes kept raw)."""
    lex = shell.Lexer("\\", raw_quotes=True, raw_escapes=True)
    try:
        words = lex.process(line, {})[1]
    except shell.ShellError:
        return []
    docs = []
    for w in words:
        doc = parse_heredoc(w)
        if doc is not None:
            docs.append(doc)
    return docs


def _read_heredocs(line: str, lines: list[str], i: int, start: int) -> tuple[list[Heredoc], int]:
    try:
        openers = heredocs_in(line)
    except DockerfileError as e:
        raise DockerfileError(e.reason, start, i) from None
    docs = []
    for doc in openers:
        body: list[str] = []
        terminated = False
        while i < len(lines):
            raw = lines[i]
            i += 1
            candidate = _trim_newline(raw)
            if doc.chomp:
                candidate = candidate.lstrip("\t")
            if candidate == doc.name:
                terminated = True
                break
            body.append(raw)
        if not terminated:
            raise DockerfileError("unterminated heredoc", start, i)
        content = "".join(body)
        if doc.chomp:
            content = _RE_LEADING_TABS.sub("", content)
        docs.append(Heredoc(name=doc.name, content=content, expand=doc.expand,
                            chomp=doc.chomp, fd=doc.fd))
    return docs, i
