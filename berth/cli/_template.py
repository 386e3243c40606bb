"""A subset of Go's text/template, enough for docker's ``--format`` strings.

Supported: text, ``{{.A.B}}``, ``{{.}}``, ``$``/``$var`` (``:=``, ``=``), string/number/bool/nil
literals, pipelines (``{{.X | json}}``), parenthesised pipelines, ``if``/``else if``/``else``,
``range`` (with ``$i, $v :=``), ``with``, ``{{- -}}`` trimming and ``{{/* comments */}}``.
Functions: Go's builtins (and or not len index print printf println eq ne lt le gt ge slice)
plus docker's (json split join title lower upper pad truncate).

Values print as Go's ``fmt`` would print the decoded JSON: ``map[k:v]``, ``[a b]``, ``<nil>``,
``true``; a missing map key prints ``<no value>``. Objects (ps/images rows) expose fields as
attributes or zero-argument methods; methods with arguments (``.Label "k"``) are called too.
"""

from __future__ import annotations

import json
import math

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class TemplateError(Exception):
    """Parse or execution failure (docker prints it and exits)."""


class _NoValue:
    def __repr__(self) -> str:
        return "<no value>"


NO_VALUE = _NoValue()


# -- printing -------------------------------------------------------------------------------

def go_float(value: float) -> str:
    """Go's %v for float64: shortest digits, exponent form when exp < -4 or exp >= 21."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0" if math.copysign(1, value) > 0 else "-0"
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    mant, _, exp = text.partition("e")
    exponent = int(exp) if exp else 0
    if exponent < -4 or exponent >= 21:
        if "." in mant:
            mant = mant.rstrip("0").rstrip(".")
        return f"{mant}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    if exp:  # small exponent in repr: expand
        return format(value, "f").rstrip("0").rstrip(".")
    return text


def go_str(value: Any) -> str:
    """fmt.Sprint of one value."""
    if value is None:
        return "<nil>"
    if value is NO_VALUE:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, dict):
        items = " ".join(f"{go_str(k)}:{go_str(value[k])}" for k in sorted(value, key=str))
        return f"map[{items}]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_str(v) for v in value) + "]"
    return str(value)


def truth(value: Any) -> bool:
    if value is None or value is NO_VALUE:
        return False
    if isinstance(value, (bool, int, float, str, list, tuple, dict)):
        return bool(value)
    return True


def to_json(value: Any) -> str:
    """docker's ``json`` function: compact JSON, HTML characters not escaped."""

    if hasattr(value, "as_json"):
        # docker's row types marshal themselves with json.Marshal, which escapes HTML
        text = json.dumps(value.as_json(), separators=(",", ":"), ensure_ascii=False)
        return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    if value is NO_VALUE:
        value = None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# -- functions ------------------------------------------------------------------------------

def _sprint(*args: Any) -> str:
    out = []
    for i, arg in enumerate(args):
        if i > 0 and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(go_str(arg))
    return "".join(out)


def _sprintf(fmt: str, *args: Any) -> str:
    out = []
    i = 0
    argi = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch != "%" or i + 1 >= len(fmt):
            out.append(ch)
            i += 1
            continue
        j = i + 1
        while j < len(fmt) and fmt[j] in "+-# 0123456789.":
            j += 1
        if j >= len(fmt):
            out.append(fmt[i:])
            break
        flags, verb = fmt[i + 1:j], fmt[j]
        i = j + 1
        if verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[argi]
        argi += 1
        if verb in "vs":
            out.append(("%" + flags + "s") % go_str(arg))
        elif verb == "q":
            out.append(to_json(go_str(arg)))
        elif verb in "dxXo" and isinstance(arg, int):
            out.append(("%" + flags + verb) % arg)
        elif verb in "fgeFGE" and isinstance(arg, (int, float)):
            out.append(("%" + flags + verb) % arg)
        elif verb == "t" and isinstance(arg, bool):
            out.append(go_str(arg))
        else:
            out.append(f"%!{verb}({go_str(arg)})")
    return "".join(out)


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(item, dict):
            item = item.get(key, NO_VALUE)
        elif isinstance(item, (list, tuple, str)):
            if not isinstance(key, int) or not 0 <= key < len(item):
                raise TemplateError(f"error calling index: index out of range: {key}")
            item = item[key]
        elif item is None or item is NO_VALUE:
            raise TemplateError("error calling index: index of untyped nil")
        else:
            raise TemplateError(f"error calling index: can't index item of type {type(item)}")
    return item


def _len(item: Any) -> int:
    if isinstance(item, (str, list, tuple, dict)):
        return len(item)
    raise TemplateError(f"error calling len: len of type {type(item).__name__}")


def _cmp(name: str, op: Callable[[Any, Any], bool]) -> Callable[..., bool]:
    def compare(a: Any, *bs: Any) -> bool:
        if not bs:
            raise TemplateError(f"wrong number of args for {name}: want at least 2 got 1")
        try:
            return all(op(a, b) for b in bs) if name != "eq" else any(op(a, b) for b in bs)
        except TypeError:
            raise TemplateError(f"error calling {name}: incompatible types for comparison") from None
    return compare


def _and(*args: Any) -> Any:
    for arg in args:
        if not truth(arg):
            return arg
    return args[-1]


def _or(*args: Any) -> Any:
    for arg in args:
        if truth(arg):
            return arg
    return args[-1]


def _pad(s: Any, left: int, right: int) -> str:
    return " " * left + go_str(s) + " " * right


def _truncate(s: Any, length: int) -> str:
    text = go_str(s)
    return text[:length] if len(text) > length else text


def _title(s: Any) -> str:
    text = go_str(s)
    return " ".join(w[:1].upper() + w[1:].lower() for w in text.split(" "))


def _slice(item: Any, *idx: int) -> Any:
    if len(idx) == 0:
        return item
    if len(idx) == 1:
        return item[idx[0]:]
    return item[idx[0]:idx[1]]


def _join(items: Any, sep: str) -> str:
    if not isinstance(items, (list, tuple)):
        raise TemplateError("error calling join: wrong type for value; expected []string")
    return sep.join(go_str(i) for i in items)


FUNCS: dict[str, Callable[..., Any]] = {
    "and": _and,
    "or": _or,
    "not": lambda x: not truth(x),
    "len": _len,
    "index": _index,
    "slice": _slice,
    "print": _sprint,
    "printf": _sprintf,
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "eq": _cmp("eq", lambda a, b: a == b),
    "ne": _cmp("ne", lambda a, b: a != b),
    "lt": _cmp("lt", lambda a, b: a < b),
    "le": _cmp("le", lambda a, b: a <= b),
    "gt": _cmp("gt", lambda a, b: a > b),
    "ge": _cmp("ge", lambda a, b: a >= b),
    "json": to_json,
    "split": lambda s, sep: go_str(s).split(sep) if sep else list(go_str(s)),
    "join": _join,
    "title": _title,
    "lower": lambda s: go_str(s).lower(),
    "upper": lambda s: go_str(s).upper(),
    "pad": _pad,
    "truncate": _truncate,
}

# docker renders table headers with these in place of the formatting functions
HEADER_FUNCS: dict[str, Callable[..., Any]] = {
    "json": lambda v: v,
    "split": lambda v, _s: v,
    "join": lambda v, _s: v,
    "title": lambda v: v,
    "lower": lambda v: v,
    "upper": lambda v: v,
    "pad": lambda v, _l, _r: v,
    "truncate": lambda v, _l: v,
}


# -- lexing -----------------------------------------------------------------------------------

_KEYWORDS = {"if", "else", "end", "range", "with", "define", "template", "block", "break",
             "continue"}


def _split_actions(src: str) -> list[tuple[str, str]]:
    """[("text", s) | ("action", inner)] with trim markers applied."""
    parts: list[tuple[str, str]] = []
    pos = 0
    while True:
        start = src.find("{{", pos)
        if start < 0:
            parts.append(("text", src[pos:]))
            break
        text = src[pos:start]
        inner_start = start + 2
        if src.startswith("- ", inner_start) or src.startswith("-\t", inner_start) or \
                src.startswith("-\n", inner_start):
            text = text.rstrip(" \t\r\n")
            inner_start += 1
        parts.append(("text", text))
        end = _find_close(src, inner_start)
        inner = src[inner_start:end]
        pos = end + 2
        if inner.endswith((" -", "\t-", "\n-")):
            inner = inner[:-1]
            while pos < len(src) and src[pos] in " \t\r\n":
                pos += 1
        parts.append(("action", inner))
    return [p for p in parts if p[0] == "action" or p[1]]


def _find_close(src: str, i: int) -> int:
    quote = ""
    while i < len(src):
        ch = src[i]
        if quote:
            if ch == "\\" and quote == '"':
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "\"`'":
            quote = ch
        elif src.startswith("}}", i):
            return i
        i += 1
    raise TemplateError("template: :1: unclosed action")


def _tokenize(text: str) -> list[tuple[str, Any]]:
    toks: list[tuple[str, Any]] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
        elif ch == "|":
            toks.append(("pipe", "|"))
            i += 1
        elif ch in "()":
            if ch == ")" and i + 1 < n and text[i + 1] == ".":
                j = i + 1
                while j < n and (text[j].isalnum() or text[j] in "._"):
                    j += 1
                toks.append((")", text[i + 2:j].split(".")))
                i = j
                continue
            toks.append((ch, ch))
            i += 1
        elif ch == ",":
            toks.append((",", ","))
            i += 1
        elif text.startswith(":=", i):
            toks.append(("declare", ":="))
            i += 2
        elif ch == "=":
            toks.append(("assign", "="))
            i += 1
        elif ch == '"':
            j = i + 1
            buf = []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    esc = text[j + 1]
                    buf.append({"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"'}.get(
                        esc, "\\" + esc))
                    j += 2
                    continue
                buf.append(text[j])
                j += 1
            if j >= n:
                raise TemplateError("template: :1: unterminated quoted string")
            toks.append(("lit", "".join(buf)))
            i = j + 1
        elif ch == "`":
            j = text.find("`", i + 1)
            if j < 0:
                raise TemplateError("template: :1: unterminated raw quoted string")
            toks.append(("lit", text[i + 1:j]))
            i = j + 1
        elif ch == "." or ch == "$" or ch.isalnum() or ch in "_-+":
            j = i + 1
            dotted = ch in ".$" or ch.isdigit() or ch in "-+"
            while j < n and (text[j].isalnum() or text[j] == "_" or (dotted and text[j] == ".")):
                j += 1
            word = text[i:j]
            i = j
            toks.append(_classify(word))
        else:
            raise TemplateError(f"template: :1: unexpected {ch!r} in command")
    return toks


def _classify(word: str) -> tuple[str, Any]:
    if word.startswith("."):
        return ("field", [p for p in word[1:].split(".") if p] if word != "." else [])
    if word.startswith("$"):
        name, *chain = word.split(".")
        return ("var", (name, chain))
    if word in ("true", "false"):
        return ("lit", word == "true")
    if word == "nil":
        return ("lit", None)
    if word[0].isdigit() or word[0] in "-+":
        try:
            return ("lit", int(word, 0))
        except ValueError:
            try:
                return ("lit", float(word))
            except ValueError:
                raise TemplateError(f"template: :1: bad number syntax: {word!r}") from None
    if word in _KEYWORDS:
        return ("kw", word)
    return ("ident", word)


# -- parsing ----------------------------------------------------------------------------------

class _Pipe:
    def __init__(self, decl: list[str], assign: bool, cmds: list[list[tuple[str, Any]]]) -> None:
        self.decl = decl
        self.assign = assign
        self.cmds = cmds


def _parse_pipeline(toks: list[tuple[str, Any]], pos: int = 0,
                    stop: str | None = None) -> tuple[_Pipe, int]:
    decl: list[str] = []
    assign = False
    # variable declaration: $x := / $i, $v :=
    look = pos
    names = []
    while look < len(toks) and toks[look][0] == "var" and not toks[look][1][1]:
        names.append(toks[look][1][0])
        look += 1
        if look < len(toks) and toks[look][0] == ",":
            look += 1
            continue
        break
    if names and look < len(toks) and toks[look][0] in ("declare", "assign"):
        decl, assign, pos = names, toks[look][0] == "assign", look + 1
    cmds: list[list[tuple[str, Any]]] = []
    cmd: list[tuple[str, Any]] = []
    while pos < len(toks):
        kind, value = toks[pos]
        if kind == stop or kind == ")":
            break
        if kind == "pipe":
            if not cmd:
                raise TemplateError("template: :1: missing command")
            cmds.append(cmd)
            cmd = []
            pos += 1
            continue
        if kind == "(":
            sub, pos = _parse_pipeline(toks, pos + 1)
            if pos >= len(toks) or toks[pos][0] != ")":
                raise TemplateError("template: :1: unclosed left paren")
            cmd.append(("paren", (sub, toks[pos][1] if toks[pos][1] != ")" else [])))
            pos += 1
            continue
        if kind == "kw":
            raise TemplateError(f"template: :1: unexpected keyword {value} in command")
        cmd.append((kind, value))
        pos += 1
    if cmd:
        cmds.append(cmd)
    if not cmds:
        raise TemplateError("template: :1: missing value for command")
    return _Pipe(decl, assign, cmds), pos


class Template:
    """A parsed template; ``execute(data)`` returns the text."""

    def __init__(self, source: str, funcs: dict[str, Callable[..., Any]] | None = None) -> None:
        self.source = source
        self.funcs = dict(FUNCS)
        if funcs:
            self.funcs.update(funcs)
        items = _split_actions(source)
        self._pos = 0
        self._items = items
        self.tree, end = self._parse_list(())
        if end is not None:
            raise TemplateError(f"template: :1: unexpected {{{{{end}}}}}")

    def _parse_list(self, stops: tuple[str, ...]) -> tuple[list[Any], str | None]:
        nodes: list[Any] = []
        while self._pos < len(self._items):
            kind, text = self._items[self._pos]
            self._pos += 1
            if kind == "text":
                nodes.append(("text", text))
                continue
            stripped = text.strip()
            if stripped.startswith("/*"):
                continue
            toks = _tokenize(stripped)
            if not toks:
                raise TemplateError("template: :1: missing value for command")
            head = toks[0]
            if head[0] == "kw":
                word = head[1]
                if word in ("end", "else"):
                    if word not in stops:
                        raise TemplateError(f"template: :1: unexpected {{{{{word}}}}}")
                    if word == "else":
                        self._else_toks = toks[1:]
                    return nodes, word
                if word in ("if", "range", "with"):
                    nodes.append(self._parse_control(word, toks[1:]))
                    continue
                raise TemplateError(f"template: :1: {word} is not supported")
            pipe, _ = _parse_pipeline(toks)
            nodes.append(("action", pipe))
        if stops:
            raise TemplateError("template: :1: unexpected EOF")
        return nodes, None

    def _parse_control(self, word: str, toks: list[tuple[str, Any]]) -> tuple[Any, ...]:
        pipe, _ = _parse_pipeline(toks)
        body, end = self._parse_list(("end", "else"))
        else_body: list[Any] = []
        if end == "else":
            rest = self._else_toks
            if rest and rest[0] == ("kw", "if") and word == "if":
                else_body = [self._parse_control("if", rest[1:])]
                return (word, pipe, body, else_body)
            if rest and rest[0] == ("kw", "with") and word == "with":
                else_body = [self._parse_control("with", rest[1:])]
                return (word, pipe, body, else_body)
            else_body, end = self._parse_list(("end",))
        return (word, pipe, body, else_body)

    # -- execution ------------------------------------------------------------------------------

    def execute(self, data: Any) -> str:
        out: list[str] = []
        self._run(self.tree, data, [{"$": data}], out)
        return "".join(out)

    def _run(self, nodes: list[Any], dot: Any, scopes: list[dict[str, Any]],
             out: list[str]) -> None:
        for node in nodes:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "action":
                value = self._pipe(node[1], dot, scopes)
                if not node[1].decl:
                    out.append(go_str(value))
            elif kind in ("if", "with"):
                _, pipe, body, else_body = node
                value = self._pipe(pipe, dot, scopes)
                scopes.append({})
                if truth(value):
                    self._run(body, value if kind == "with" else dot, scopes, out)
                else:
                    self._run(else_body, dot, scopes, out)
                scopes.pop()
            elif kind == "range":
                self._range(node, dot, scopes, out)

    def _range(self, node: tuple[Any, ...], dot: Any, scopes: list[dict[str, Any]],
               out: list[str]) -> None:
        _, pipe, body, else_body = node
        decl = pipe.decl
        pipe = _Pipe([], False, pipe.cmds)
        value = self._pipe(pipe, dot, scopes)
        if isinstance(value, dict):
            pairs = [(k, value[k]) for k in sorted(value, key=str)]
        elif isinstance(value, (list, tuple)):
            pairs = list(enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            pairs = [(i, i) for i in range(value)]
        elif value is None or value is NO_VALUE:
            pairs = []
        else:
            raise TemplateError(f"range can't iterate over {go_str(value)}")
        if not pairs:
            self._run(else_body, dot, scopes, out)
            return
        for key, elem in pairs:
            scope: dict[str, Any] = {}
            if len(decl) == 1:
                scope[decl[0]] = elem
            elif len(decl) == 2:
                scope[decl[0]], scope[decl[1]] = key, elem
            scopes.append(scope)
            self._run(body, elem, scopes, out)
            scopes.pop()

    def _pipe(self, pipe: _Pipe, dot: Any, scopes: list[dict[str, Any]]) -> Any:
        value: Any = _MISSING
        for cmd in pipe.cmds:
            value = self._command(cmd, dot, scopes, value)
        if pipe.decl:
            if pipe.assign:
                for scope in reversed(scopes):
                    if pipe.decl[0] in scope:
                        scope[pipe.decl[0]] = value
                        break
                else:
                    raise TemplateError(f"undefined variable: {pipe.decl[0]}")
            else:
                scopes[-1][pipe.decl[0]] = value
        return value

    def _command(self, cmd: list[tuple[str, Any]], dot: Any, scopes: list[dict[str, Any]],
                 piped: Any) -> Any:
        kind, value = cmd[0]
        if kind == "ident":
            fn = self.funcs.get(value)
            if fn is None:
                raise TemplateError(f'template: :1: function "{value}" not defined')
            args = [self._arg(a, dot, scopes) for a in cmd[1:]]
            if piped is not _MISSING:
                args.append(piped)
            return _call(value, fn, args)
        if kind == "field" and (len(cmd) > 1 or piped is not _MISSING) and value:
            # method call with arguments: .Label "com.example"
            target = self._walk(dot, value[:-1])
            method = getattr(target, value[-1], None) if not isinstance(target, dict) else None
            if not callable(method):
                raise TemplateError(f"can't give argument to non-function .{'.'.join(value)}")
            args = [self._arg(a, dot, scopes) for a in cmd[1:]]
            if piped is not _MISSING:
                args.append(piped)
            return _call(value[-1], method, args)
        if len(cmd) > 1 or piped is not _MISSING:
            raise TemplateError(f"can't give argument to non-function {cmd[0][1]}")
        return self._arg(cmd[0], dot, scopes)

    def _arg(self, tok: tuple[str, Any], dot: Any, scopes: list[dict[str, Any]]) -> Any:
        kind, value = tok
        if kind == "lit":
            return value
        if kind == "field":
            return self._walk(dot, value)
        if kind == "var":
            name, chain = value
            for scope in reversed(scopes):
                if name in scope:
                    return self._walk(scope[name], chain)
            raise TemplateError(f"template: :1: undefined variable \"{name}\"")
        if kind == "paren":
            sub, chain = value
            return self._walk(self._pipe(sub, dot, scopes), chain)
        if kind == "ident":
            fn = self.funcs.get(value)
            if fn is None:
                raise TemplateError(f'template: :1: function "{value}" not defined')
            return _call(value, fn, [])  # a function as an argument is called without any
        raise TemplateError(f"template: :1: unexpected {value!r}")

    @staticmethod
    def _walk(value: Any, chain: list[str]) -> Any:
        for name in chain:
            if isinstance(value, dict):
                value = value.get(name, NO_VALUE)
            elif value is None or value is NO_VALUE:
                raise TemplateError(f"nil pointer evaluating .{name}")
            else:
                attr = getattr(value, name, _MISSING)
                if attr is _MISSING or name.startswith("_"):
                    raise TemplateError(
                        f"can't evaluate field {name} in type {type(value).__name__}")
                value = attr() if callable(attr) else attr
        return value


_MISSING: Any = object()


def _call(name: str, fn: Callable[..., Any], args: list[Any]) -> Any:
    """Call a template function or method; its failure is a template error, in Go's words."""
    try:
        return fn(*args)
    except TemplateError:
        raise
    except TypeError as exc:
        raise TemplateError(f"error calling {name}: wrong number of args ({exc})") from None
    except Exception as exc:
        raise TemplateError(f"error calling {name}: {exc}") from None


def render(source: str, data: Any) -> str:
    return Template(source).execute(data)
