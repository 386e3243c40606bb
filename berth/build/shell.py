"""build.shell: Docker's Dockerfile shell-word lexer (quotes, escapes, $VAR expansion).

Follows the rules of BuildKit's frontend/dockerfile/shell lexer, which the classic builder
uses too: single quotes are literal, double quotes expand ``$`` and honour the escape token
before ``"``, ``$`` and the escape token itself, the escape token outside quotes takes the
next character literally (``\\`` by default, a backtick after ``# escape=```), and
``${VAR}`` supports ``:-`` ``-`` ``:+`` ``+`` ``:?`` ``?`` ``#`` ``##`` ``%`` ``%%`` ``/`` ``//``.
Unset variables expand to the empty string. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from berth.errors import InvalidArgument

_EOF = ""
_SPECIAL_PARAMS = frozenset("@*#?-$!0")


class ShellError(InvalidArgument):
    """A word could not be lexed (unterminated quote, bad substitution, ${X:?msg})."""


class Lexer:
    """One lexer configuration; ``process`` returns (word, words) like BuildKit's Lex.

    raw_quotes keeps quote characters in the output, raw_escapes keeps escape tokens,
    skip_unset leaves references to unset variables as written (used to find heredoc names),
    skip_quotes treats quotes as ordinary characters (heredoc bodies).
    """

    def __init__(self, escape: str = "\\", *, raw_quotes: bool = False,
                 raw_escapes: bool = False, skip_unset: bool = False,
                 skip_quotes: bool = False) -> None:
        self.escape = escape
        self.skip_quotes = skip_quotes
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset = skip_unset

    def process(self, source: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
        try:
            return _Scan(self, source, env).process_stop_on(_EOF, self.raw_escapes)
        except ShellError as e:
            raise ShellError(f"failed to process {_go_quote(source)}: {e}") from None


def expand(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """One word: quotes removed, escapes applied, variables substituted; spaces kept."""
    return Lexer(escape).process(word, env)[0]


def expand_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Split on unquoted whitespace (also whitespace coming from $VAR), after expansion."""
    return Lexer(escape).process(text, env)[1]


def expand_heredoc(content: str, env: Mapping[str, str]) -> str:
    """A COPY/ADD heredoc body whose delimiter was not quoted: BuildKit expands $VAR and
    backslash escapes but keeps quote characters (its SkipProcessQuotes lexer)."""
    return Lexer("\\", skip_quotes=True).process(content, env)[0]


class _Words:
    def __init__(self) -> None:
        self.word = ""
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word = ""
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_raw(self, s: str) -> None:
        self.word += s
        self.in_word = True

    def add_string(self, s: str) -> None:
        for ch in s:
            self.add_char(ch)

    def done(self) -> list[str]:
        if self.word:
            self.words.append(self.word)
            self.word = ""
            self.in_word = False
        return self.words


class _Scan:
    def __init__(self, lex: Lexer, src: str, env: Mapping[str, str]) -> None:
        self.lex = lex
        self.src = src
        self.pos = 0
        self.env = env
        self.raw_escapes = lex.raw_escapes

    def peek(self) -> str:
        return self.src[self.pos] if self.pos < len(self.src) else _EOF

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self.pos += 1
        return ch

    def process_stop_on(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            return self._stop_on(stop)
        finally:
            self.raw_escapes = saved

    def _stop_on(self, stop: str) -> tuple[str, list[str]]:
        out: list[str] = []
        words = _Words()
        esc = self.lex.escape
        while self.peek() != _EOF:
            ch = self.peek()
            if stop and ch == stop:
                self.next()
                return "".join(out), words.done()
            if ch == "$":
                tmp = self.dollar()
                out.append(tmp)
                words.add_string(tmp)
            elif ch == "'" and not self.lex.skip_quotes:
                tmp = self.single_quote()
                out.append(tmp)
                words.add_raw(tmp)
            elif ch == '"' and not self.lex.skip_quotes:
                tmp = self.double_quote()
                out.append(tmp)
                words.add_raw(tmp)
            else:
                ch = self.next()
                if ch == esc:
                    if self.raw_escapes:
                        words.add_raw(ch)
                        out.append(ch)
                    ch = self.next()
                    if ch == _EOF:
                        break
                    words.add_raw(ch)
                else:
                    words.add_char(ch)
                out.append(ch)
        if stop:
            raise ShellError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out), words.done()

    def single_quote(self) -> str:
        out: list[str] = []
        ch = self.next()
        if self.lex.raw_quotes:
            out.append(ch)
        while True:
            ch = self.next()
            if ch == _EOF:
                raise ShellError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self.lex.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        out: list[str] = []
        esc = self.lex.escape
        ch = self.next()
        if self.lex.raw_quotes:
            out.append(ch)
        while True:
            p = self.peek()
            if p == _EOF:
                raise ShellError("unexpected end of statement while looking for matching double-quote")
            if p == '"':
                ch = self.next()
                if self.lex.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if p == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == esc:
                if self.raw_escapes:
                    out.append(ch)
                nxt = self.peek()
                if nxt == _EOF:
                    continue
                if nxt in ('"', "$", esc):
                    ch = self.next()
            out.append(ch)

    def name(self) -> str:
        out: list[str] = []
        while self.peek() != _EOF:
            ch = self.peek()
            if not out and ch.isdigit():
                while self.peek() != _EOF and self.peek().isdigit():
                    out.append(self.next())
                return "".join(out)
            if not out and ch in _SPECIAL_PARAMS:
                return self.next()
            if not (ch.isalpha() or ch.isdigit() or ch == "_"):
                break
            out.append(self.next())
        return "".join(out)

    def getenv(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            return self.env[name], True
        return "", False

    def dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value, found = self.getenv(name)
            if not found and self.lex.skip_unset:
                return "$" + name
            return value
        self.next()
        p = self.peek()
        if p == _EOF:
            raise ShellError("syntax error: missing '}'")
        if p in "{}:":
            raise ShellError("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        if ch == _EOF:
            raise ShellError("syntax error: missing '}'")
        if ch == "}":
            value, found = self.getenv(name)
            if not found and self.lex.skip_unset:
                return "${" + name + "}"
            return value
        if ch == "/":
            return self._replace(name)
        chs = ch
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            ch = self.next()
            chs += ch
        if ch == _EOF:
            raise ShellError("syntax error: missing '}'")
        if ch not in ("+", "-", "?", "#", "%"):
            raise ShellError(f"unsupported modifier ({chs}) in substitution")
        word = self._operand(ch in "#%")
        value, found = self.getenv(name)
        if self.lex.skip_unset and not found:
            return "${" + name + chs + word + "}"
        empty = not found or (null_is_unset and value == "")
        if ch == "-":
            return word if empty else value
        if ch == "+":
            return "" if empty else word
        if ch == "?":
            if not found:
                raise ShellError(f"{name}: {word or 'is not allowed to be unset'}")
            if null_is_unset and value == "":
                raise ShellError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        greedy = word[:1] == ch
        if greedy:
            word = word[1:]
        if ch == "%":
            return _trim_suffix(word, value, greedy)
        return _trim_prefix(word, value, greedy)

    def _operand(self, raw_escapes: bool) -> str:
        try:
            word, _ = self.process_stop_on("}", raw_escapes)
        except ShellError:
            if self.peek() == _EOF:
                raise ShellError("syntax error: missing '}'") from None
            raise
        return word

    def _replace(self, name: str) -> str:
        replace_all = self.peek() == "/"
        if replace_all:
            self.next()
        try:
            pattern, _ = self.process_stop_on("/", True)
        except ShellError:
            if self.peek() == _EOF:
                raise ShellError("syntax error: missing '/' in ${}") from None
            raise
        try:
            replacement, _ = self.process_stop_on("}", True)
        except ShellError:
            if self.peek() == _EOF:
                raise ShellError("syntax error: missing '}'") from None
            raise
        value, found = self.getenv(name)
        if self.lex.skip_unset and not found:
            return "${%s/%s/%s}" % (name, pattern, replacement)
        rx = _pattern_regex(pattern, greedy=True, anchored=False)
        if replace_all:
            return rx.sub(lambda _m: replacement, value)
        m = rx.search(value)
        if m:
            value = value[:m.start()] + replacement + value[m.end():]
        return value


def _pattern_regex(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A shell wildcard (``*`` ``?``, ``\\`` escapes; no brackets) as a regular expression."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    while i < len(pattern):
        tok = pattern[i]
        i += 1
        if tok == "*":
            out.append(star)
        elif tok == "?":
            out.append(".")
        elif tok == "\\":
            nxt = pattern[i] if i < len(pattern) else ""
            if nxt in ("}", "/"):
                continue
            i += 1
            if nxt not in ("*", "?", "\\"):
                raise ShellError(f"invalid pattern ({pattern}) in substitution: invalid escape '\\{nxt}'")
            out.append(re.escape(nxt))
        else:
            out.append(re.escape(tok))
    return re.compile("".join(out), re.DOTALL)


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    m = _pattern_regex(pattern, greedy=greedy, anchored=True).search(value)
    return value[m.end():] if m else value


def _reverse_pattern(pattern: str) -> str:
    tokens: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            tokens.append(pattern[i:i + 2])
            i += 2
        else:
            tokens.append(pattern[i])
            i += 1
    return "".join(reversed(tokens))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


def _go_quote(s: str) -> str:
    """Go's %q for the common printable case (used in error messages)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'
