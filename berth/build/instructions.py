"""build.instructions: typed Dockerfile commands, built from parsed Instructions.

Owns the per-instruction rules Docker applies after parsing: argument counts, builder flags
(``--from``, ``--chown``, ``--mount``...), ENV/LABEL/ARG key=value forms, EXPOSE port specs,
HEALTHCHECK durations, RUN --mount CSV options, the split into stages, and which
instructions get ``$VAR`` expansion (ADD COPY ENV EXPOSE FROM LABEL STOPSIGNAL USER VOLUME
WORKDIR ARG, and RUN --mount values). Messages copy Docker's wording. Pure: no I/O.
"""

from __future__ import annotations

import csv
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Union

from berth.build import shell
from berth.build.dockerfile import (
    Dockerfile,
    DockerfileError,
    Heredoc,
    Instruction,
    parse_heredoc,
    suggest,
)

Expand = Callable[[str], str]

PROXY_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
              "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")
PLATFORM_ARGS = ("TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT",
                 "BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT")
PREDEFINED_ARGS = PROXY_ARGS + PLATFORM_ARGS

_RE_WS = re.compile(r"[\t\v\f\r ]+")
_RE_STAGE_NAME = re.compile(r"^[a-z][a-z0-9\-_.]*$")
_MIN_HEALTH_DURATION_NS = 1_000_000   # 1ms, Docker's container.MinimumDuration


# ---------------------------------------------------------------- command types

@dataclass(frozen=True)
class Mount:
    type: str = "bind"                 # bind | cache | tmpfs | secret | ssh
    target: str = ""
    source: str = ""
    from_: str = ""
    id: str = ""                       # cache: defaults to target; secret/ssh: see to_command
    sharing: str = ""                  # cache: shared (default) | private | locked
    mode: int | None = None            # octal as written ("0755" -> 0o755)
    uid: int | None = None
    gid: int | None = None
    readonly: bool = True              # bind/secret/ssh default True; cache/tmpfs default False
    required: bool = False
    size: int | None = None            # tmpfs size in bytes
    env: str | None = None             # secret exposed as an environment variable


@dataclass(frozen=True)
class From:
    inst: Instruction
    image: str
    name: str | None
    platform: str | None


@dataclass(frozen=True)
class Run:
    inst: Instruction
    cmd: tuple[str, ...]               # shell form: (line,); exec form: the JSON items
    shell_form: bool
    mounts: tuple[Mount, ...] = ()
    network: str | None = None         # default | none | host
    security: str | None = None        # sandbox | insecure
    heredocs: tuple[Heredoc, ...] = ()


@dataclass(frozen=True)
class Cmd:
    inst: Instruction
    cmd: tuple[str, ...]
    shell_form: bool


@dataclass(frozen=True)
class Entrypoint:
    inst: Instruction
    cmd: tuple[str, ...]
    shell_form: bool


@dataclass(frozen=True)
class Shell:
    inst: Instruction
    cmd: tuple[str, ...]


@dataclass(frozen=True)
class Env:
    inst: Instruction
    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Label:
    inst: Instruction
    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Arg:
    inst: Instruction
    pairs: tuple[tuple[str, str | None], ...]


@dataclass(frozen=True)
class Expose:
    inst: Instruction
    ports: tuple[str, ...]             # normalised: "80/tcp", ranges expanded
    raw: tuple[str, ...] = ()          # the expanded words as written ("80", "53/udp")


@dataclass(frozen=True)
class Volume:
    inst: Instruction
    paths: tuple[str, ...]


@dataclass(frozen=True)
class Workdir:
    inst: Instruction
    path: str


@dataclass(frozen=True)
class User:
    inst: Instruction
    user: str


@dataclass(frozen=True)
class Stopsignal:
    inst: Instruction
    signal: str


@dataclass(frozen=True)
class Maintainer:
    inst: Instruction
    name: str


@dataclass(frozen=True)
class Onbuild:
    inst: Instruction
    expression: str                    # the trigger as written (heredoc bodies appended)


@dataclass(frozen=True)
class Healthcheck:
    inst: Instruction
    test: tuple[str, ...] | None       # ("NONE",) | ("CMD-SHELL", line) | ("CMD", *argv)
    interval: int = 0                  # nanoseconds; 0 = inherit
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@dataclass(frozen=True)
class Copy:
    inst: Instruction
    sources: tuple[str, ...]           # context/stage paths or URLs (heredoc sources are in heredocs)
    dest: str
    from_: str | None = None
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    parents: bool = False
    exclude: tuple[str, ...] = ()
    heredocs: tuple[Heredoc, ...] = ()  # inline files: name is the file name, expand says whether $VAR applies
    is_add: bool = False
    checksum: str | None = None
    keep_git_dir: bool = False


Command = Union[From, Run, Cmd, Entrypoint, Shell, Env, Label, Arg, Expose, Volume, Workdir, User,
                Stopsignal, Maintainer, Onbuild, Healthcheck, Copy]


@dataclass
class Stage:
    index: int
    name: str | None                   # lower-cased "AS name"
    from_: Instruction
    commands: list[Instruction] = field(default_factory=list)


# ---------------------------------------------------------------- entry points

def to_command(inst: Instruction, expand_env: Mapping[str, str], escape: str = "\\") -> Command:
    """The typed command; words Docker expands are expanded with ``expand_env``."""
    lexer = shell.Lexer(escape)

    def expand(word: str) -> str:
        try:
            return lexer.process(word, expand_env)[0]
        except shell.ShellError as e:
            raise DockerfileError(str(e), inst.line, inst.end_line, parse=False) from None

    def expand_words(word: str) -> list[str]:
        try:
            return lexer.process(word, expand_env)[1]
        except shell.ShellError as e:
            raise DockerfileError(str(e), inst.line, inst.end_line, parse=False) from None

    return _convert(inst, escape, expand, expand_words)


def validate(df: Dockerfile) -> None:
    """Check every instruction's flags and arguments without expanding anything (Docker
    rejects a bad line before the build starts)."""
    for inst in df.instructions:
        _convert(inst, df.escape, None, None)
    split_stages(df)


def split_stages(df: Dockerfile) -> tuple[list[Instruction], list[Stage]]:
    """(meta ARG instructions before the first FROM, stages)."""
    meta: list[Instruction] = []
    stages: list[Stage] = []
    names: set[str] = set()
    for inst in df.instructions:
        if inst.cmd == "from":
            name = _stage_name(inst)
            if name is not None:
                if name in names:
                    raise DockerfileError(f"duplicate stage name {_q(name)}", inst.line, inst.end_line)
                names.add(name)
            stages.append(Stage(index=len(stages), name=name, from_=inst))
        elif not stages:
            if inst.cmd != "arg":
                raise DockerfileError("no build stage in current context", inst.line, inst.end_line)
            meta.append(inst)
        else:
            stages[-1].commands.append(inst)
    return meta, stages


def predefined_platform_args(target_platform: str, build_platform: str) -> dict[str, str]:
    """TARGETPLATFORM/TARGETOS/... and BUILDPLATFORM/... for "os/arch[/variant]" strings."""
    out: dict[str, str] = {}
    for prefix, platform in (("TARGET", target_platform or build_platform), ("BUILD", build_platform)):
        os_, arch, variant = split_platform(platform)
        out[prefix + "PLATFORM"] = "/".join(p for p in (os_, arch, variant) if p)
        out[prefix + "OS"] = os_
        out[prefix + "ARCH"] = arch
        out[prefix + "VARIANT"] = variant
    return out


def split_platform(platform: str) -> tuple[str, str, str]:
    """"linux/arm64/v8" -> ("linux", "arm64", "v8"); "amd64" alone means linux/amd64."""
    parts = [p.strip().lower() for p in platform.split("/")] if platform else []
    if len(parts) == 1:
        parts = ["linux", parts[0]]
    parts += [""] * (3 - len(parts))
    os_, arch, variant = parts[:3]
    arch = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm",
            "armel": "arm"}.get(arch, arch)
    return os_, arch, variant


# ---------------------------------------------------------------- builder flags

class _Flags:
    """Docker's BFlags: each instruction declares its flags; the rest are errors."""

    def __init__(self, inst: Instruction) -> None:
        self.inst = inst
        self.kinds: dict[str, str] = {}
        self.values: dict[str, str] = {}
        self.lists: dict[str, list[str]] = {}

    def add_bool(self, name: str) -> _Flags:
        self.kinds[name] = "bool"
        return self

    def add_string(self, name: str) -> _Flags:
        self.kinds[name] = "string"
        return self

    def add_strings(self, name: str) -> _Flags:
        self.kinds[name] = "strings"
        self.lists[name] = []
        return self

    def parse(self) -> _Flags:
        used: set[str] = set()
        for raw in self.inst.raw_flags:
            if raw == "--":
                break
            name, eq, value = raw[2:].partition("=")
            kind = self.kinds.get(name)
            if kind is None:
                msg = f"unknown flag: {name}"
                hint = suggest(name, list(self.kinds))
                raise self.error(msg + (f" (did you mean {hint}?)" if hint else ""))
            if name in used and kind != "strings":
                raise self.error(f"duplicate flag specified: {name}")
            used.add(name)
            if kind == "bool":
                if eq and value == "":
                    raise self.error(f"missing a value on flag: {name}")
                if value.lower() in ("", "true"):
                    self.values[name] = "true"
                elif value.lower() == "false":
                    self.values[name] = "false"
                else:
                    raise self.error(f"expecting boolean value for flag {name}, not: {value}")
            elif not eq:
                raise self.error(f"missing a value on flag: {name}")
            elif kind == "string":
                self.values[name] = value
            else:
                self.lists[name].append(value)
        return self

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def is_true(self, name: str) -> bool:
        return self.values.get(name) == "true"

    def error(self, reason: str) -> DockerfileError:
        return DockerfileError(reason, self.inst.line, self.inst.end_line)


# ---------------------------------------------------------------- conversion

_Exp = Union[Expand, None]
_ExpWords = Union[Callable[[str], list[str]], None]


def _convert(inst: Instruction, escape: str, expand: _Exp, expand_words: _ExpWords) -> Command:
    handler = _HANDLERS.get(inst.cmd)
    if handler is None:
        raise DockerfileError(f"unknown instruction: {inst.keyword or inst.cmd.upper()}",
                              inst.line, inst.end_line)
    return handler(inst, escape, expand or _identity, expand_words or _split_ws, expand is not None)


def _identity(word: str) -> str:
    return word


def _split_ws(word: str) -> list[str]:
    return [w for w in _RE_WS.split(word) if w]


def _err(inst: Instruction, reason: str) -> DockerfileError:
    return DockerfileError(reason, inst.line, inst.end_line)


def _rest(inst: Instruction) -> str:
    return inst.args[0] if inst.args and not inst.json else ""


def _list_args(inst: Instruction) -> list[str]:
    """parseMaybeJSONToList / whitespace-delimited: JSON items, or the rest split on blanks."""
    if inst.json:
        return list(inst.args)
    return [w for w in _RE_WS.split(_rest(inst)) if w]


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _from(inst, escape, expand, expand_words, expanding) -> From:
    flags = _Flags(inst).add_string("platform")
    name = _stage_name(inst)
    flags.parse()
    args = _list_args(inst)
    platform = flags.get("platform")
    image = expand(args[0])
    if expanding and not image:
        raise _err(inst, f"base name ({args[0]}) should not be blank")
    return From(inst=inst, image=image, name=name,
                platform=expand(platform) if platform else None)


def _stage_name(inst: Instruction) -> str | None:
    args = _list_args(inst)
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _RE_STAGE_NAME.match(name):
            raise _err(inst, f"invalid name for build stage: {_q(args[2])}, "
                             "name can't start with a number or contain symbols")
        return name
    if len(args) != 1:
        raise _err(inst, "FROM requires either one or three arguments")
    return None


def _shell_cmd(inst: Instruction) -> tuple[tuple[str, ...], bool]:
    if inst.json:
        return tuple(inst.args), False
    return ((inst.args[0],) if inst.args else ()), True


def _run(inst, escape, expand, expand_words, expanding) -> Run:
    flags = _Flags(inst).add_strings("mount").add_string("network").add_string("security").parse()
    mounts = tuple(parse_mount(m, expand if expanding else None, inst) for m in flags.lists["mount"])
    network = flags.get("network")
    if network is not None and network not in ("default", "none", "host"):
        raise _err(inst, f"invalid network mode {_q(network)}")
    security = flags.get("security")
    if security is not None and security not in ("sandbox", "insecure"):
        raise _err(inst, f"security {_q(security)} is not valid")
    cmd, shell_form = _shell_cmd(inst)
    return Run(inst=inst, cmd=cmd, shell_form=shell_form, mounts=mounts, network=network,
               security=security, heredocs=inst.heredocs)


def _cmd(inst, escape, expand, expand_words, expanding) -> Cmd:
    _Flags(inst).parse()
    cmd, shell_form = _shell_cmd(inst)
    return Cmd(inst=inst, cmd=cmd, shell_form=shell_form)


def _entrypoint(inst, escape, expand, expand_words, expanding) -> Entrypoint:
    _Flags(inst).parse()
    cmd, shell_form = _shell_cmd(inst)
    return Entrypoint(inst=inst, cmd=cmd, shell_form=shell_form)


def _shell(inst, escape, expand, expand_words, expanding) -> Shell:
    _Flags(inst).parse()
    if inst.json and not inst.args:
        raise _err(inst, "SHELL requires at least one argument")
    if not inst.json:
        if not inst.args:
            raise _err(inst, "SHELL requires at least one argument")
        raise _err(inst, "SHELL requires the arguments to be in JSON form")
    return Shell(inst=inst, cmd=tuple(inst.args))


def parse_words(rest: str, escape: str = "\\") -> list[str]:
    """Docker's parseWords: split on blanks outside quotes, keeping quotes and escapes."""
    words: list[str] = []
    word: list[str] = []
    in_word = False
    blank_ok = False
    quote = ""
    i, n = 0, len(rest)
    while i < n:
        ch = rest[i]
        if not in_word:
            if ch.isspace():
                i += 1
                continue
            in_word = True
        if not quote:
            if ch.isspace():
                if blank_ok or word:
                    words.append("".join(word))
                word, blank_ok, in_word = [], False, False
                i += 1
                continue
            if ch in ("'", '"'):
                quote = ch
                blank_ok = True
            if ch == escape:
                if i + 1 == n:
                    i += 1
                    continue
                word.append(ch)
                i += 1
                ch = rest[i]
            word.append(ch)
            i += 1
            continue
        if ch == quote:
            quote = ""
        if ch == escape and quote != "'":
            if i + 1 == n:
                quote = ""
                i += 1
                continue
            word.append(ch)
            i += 1
            ch = rest[i]
        word.append(ch)
        i += 1
    if in_word and (blank_ok or word):
        words.append("".join(word))
    return words


def _name_values(inst: Instruction, escape: str, what: str) -> list[tuple[str, str]]:
    rest = _rest(inst)
    words = parse_words(rest, escape)
    if not words:
        raise _err(inst, f"{what} requires at least one argument")
    if "=" not in words[0]:
        parts = _RE_WS.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise _err(inst, f"{what} must have two arguments")
        pairs = [(parts[0], parts[1])]
    else:
        pairs = []
        for word in words:
            if "=" not in word:
                raise _err(inst, f"Syntax error - can't find = in {_q(word)}. "
                                 "Must be of the form: name=value")
            key, _, value = word.partition("=")
            pairs.append((key, value))
    for key, _ in pairs:
        if not key:
            raise _err(inst, f"{what} names can not be blank")
    return pairs


def _env(inst, escape, expand, expand_words, expanding) -> Env:
    _Flags(inst).parse()
    pairs = _name_values(inst, escape, "ENV")
    return Env(inst=inst, pairs=tuple((expand(k), expand(v)) for k, v in pairs))


def _label(inst, escape, expand, expand_words, expanding) -> Label:
    _Flags(inst).parse()
    pairs = _name_values(inst, escape, "LABEL")
    return Label(inst=inst, pairs=tuple((expand(k), expand(v)) for k, v in pairs))


def _arg(inst, escape, expand, expand_words, expanding) -> Arg:
    words = parse_words(_rest(inst), escape)
    if not words:
        raise _err(inst, "ARG requires at least one argument")
    _Flags(inst).parse()
    pairs: list[tuple[str, str | None]] = []
    for word in words:
        if "=" in word:
            key, _, value = word.partition("=")
            if not key:
                raise _err(inst, "ARG names can not be blank")
            pairs.append((expand(key), expand(value)))
        else:
            pairs.append((expand(word), None))
    return Arg(inst=inst, pairs=tuple(pairs))


def _expose(inst, escape, expand, expand_words, expanding) -> Expose:
    args = sorted(_list_args(inst))
    if not args:
        raise _err(inst, "EXPOSE requires at least one argument")
    _Flags(inst).parse()
    raw: list[str] = []
    for a in args:
        raw.extend(expand_words(a))
    ports: list[str] = []
    for spec in raw:
        try:
            for p in port_specs(spec):
                if p not in ports:
                    ports.append(p)
        except ValueError as e:
            raise _err(inst, str(e)) from None
    return Expose(inst=inst, ports=tuple(ports), raw=tuple(raw))


def port_specs(spec: str) -> list[str]:
    """Docker's nat.ParsePortSpec for EXPOSE: "80" -> ["80/tcp"], "8000-8001/udp" -> two."""
    container = spec.rsplit(":", 1)[-1] if ":" in spec else spec
    port, _, proto = container.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise ValueError(f"invalid proto: {proto}")
    start, dash, end = port.partition("-")
    try:
        lo = _port_number(start)
        hi = _port_number(end) if dash else lo
    except ValueError:
        raise ValueError(f"invalid containerPort: {port}") from None
    if hi < lo:
        raise ValueError(f"invalid range specified for container port: {port}")
    return [f"{p}/{proto}" for p in range(lo, hi + 1)]


def _port_number(s: str) -> int:
    if not s.isdigit():
        raise ValueError(s)
    n = int(s)
    if n > 65535:
        raise ValueError(s)
    return n


def _volume(inst, escape, expand, expand_words, expanding) -> Volume:
    args = _list_args(inst)
    if not args:
        raise _err(inst, "VOLUME requires at least one argument")
    _Flags(inst).parse()
    paths = []
    for a in args:
        if not a.strip():
            raise _err(inst, "VOLUME specified can not be an empty string")
        v = expand(a.strip())
        if expanding and not v:
            raise _err(inst, "VOLUME specified can not be an empty string")
        paths.append(v)
    return Volume(inst=inst, paths=tuple(paths))


def _one(inst: Instruction, what: str) -> str:
    if len(inst.args) != 1 or inst.json:
        raise _err(inst, f"{what} requires exactly one argument")
    return inst.args[0]


def _workdir(inst, escape, expand, expand_words, expanding) -> Workdir:
    path = _one(inst, "WORKDIR")
    _Flags(inst).parse()
    return Workdir(inst=inst, path=expand(path))


def _user(inst, escape, expand, expand_words, expanding) -> User:
    user = _one(inst, "USER")
    _Flags(inst).parse()
    return User(inst=inst, user=expand(user))


def _stopsignal(inst, escape, expand, expand_words, expanding) -> Stopsignal:
    sig = _one(inst, "STOPSIGNAL")
    return Stopsignal(inst=inst, signal=expand(sig))


def _maintainer(inst, escape, expand, expand_words, expanding) -> Maintainer:
    name = _one(inst, "MAINTAINER")
    _Flags(inst).parse()
    return Maintainer(inst=inst, name=name)


_RE_ONBUILD = re.compile(r"^\s*ONBUILD\s*", re.IGNORECASE)


def _onbuild(inst, escape, expand, expand_words, expanding) -> Onbuild:
    if not inst.args:
        raise _err(inst, "ONBUILD requires at least one argument")
    _Flags(inst).parse()
    trigger = _RE_WS.split(inst.args[0].strip(), maxsplit=1)[0].upper()
    if trigger == "ONBUILD":
        raise _err(inst, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise _err(inst, f"{trigger} isn't allowed as an ONBUILD trigger")
    expression = _RE_ONBUILD.sub("", inst.original, count=1)
    for doc in inst.heredocs:
        expression += "\n" + doc.content + doc.name
    return Onbuild(inst=inst, expression=expression)


def _healthcheck(inst, escape, expand, expand_words, expanding) -> Healthcheck:
    if inst.json:
        typ, args = inst.args[0], list(inst.args[1:])
    else:
        parts = _RE_WS.split(_rest(inst).strip(), maxsplit=1) if inst.args else []
        if not parts or not parts[0]:
            raise _err(inst, "HEALTHCHECK requires at least one argument")
        typ, args = parts[0], parts[1:]
    typ = typ.upper()
    if typ == "NONE":
        if args:
            raise _err(inst, "HEALTHCHECK NONE takes no arguments")
        return Healthcheck(inst=inst, test=("NONE",))
    flags = (_Flags(inst).add_string("interval").add_string("timeout").add_string("start-period")
             .add_string("start-interval").add_string("retries").parse())
    if typ != "CMD":
        raise _err(inst, f"Unknown type {_q(typ)} in HEALTHCHECK (try CMD)")
    if not args:
        raise _err(inst, "Missing command after HEALTHCHECK CMD")
    test = ("CMD", *args) if inst.json else ("CMD-SHELL", args[0])
    durations = {}
    for name in ("interval", "timeout", "start-period", "start-interval"):
        value = flags.get(name) or ""
        try:
            ns = parse_duration(value) if value else 0
        except ValueError as e:
            raise _err(inst, str(e)) from None
        if 0 < ns < _MIN_HEALTH_DURATION_NS:
            raise _err(inst, f"Interval {_q(name)} cannot be less than 1ms")
        if ns < 0:
            raise _err(inst, f"Interval {_q(name)} cannot be less than 1ms")
        durations[name] = ns
    retries = 0
    if flags.get("retries"):
        value = flags.get("retries") or ""
        try:
            retries = int(value, 10)
        except ValueError:
            raise _err(inst, f'strconv.ParseInt: parsing {_q(value)}: invalid syntax') from None
        if retries < 0:
            raise _err(inst, f"--retries cannot be negative ({retries})")
    return Healthcheck(inst=inst, test=test, interval=durations["interval"],
                       timeout=durations["timeout"], start_period=durations["start-period"],
                       start_interval=durations["start-interval"], retries=retries)


_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
                   "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_RE_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)?")


def parse_duration(s: str) -> int:
    """Go's time.ParseDuration, in nanoseconds ("1m30s" -> 90_000_000_000)."""
    orig = s
    sign = 1
    if s[:1] in ("+", "-"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"time: invalid duration {_q(orig)}")
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _RE_DURATION_PART.match(s, pos)
        if not m:
            raise ValueError(f"time: invalid duration {_q(orig)}")
        if m.group(2) is None:
            raise ValueError(f"time: missing unit in duration {_q(orig)}")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return sign * int(round(total))


def _copy(inst, escape, expand, expand_words, expanding, *, is_add: bool = False) -> Copy:
    what = "ADD" if is_add else "COPY"
    args = _list_args(inst)
    if len(args) < 2:
        raise _err(inst, f"{what} requires at least two arguments, but only one was provided. "
                         "Destination could not be determined")
    flags = _Flags(inst).add_string("chown").add_string("chmod").add_bool("link").add_strings("exclude")
    if is_add:
        flags.add_bool("keep-git-dir").add_string("checksum")
    else:
        flags.add_string("from").add_bool("parents")
    flags.parse()
    dest = args[-1]
    if parse_heredoc(dest) is not None:
        raise _err(inst, f"{what} cannot accept a heredoc as a destination")
    by_name = {d.name: d for d in inst.heredocs}
    sources: list[str] = []
    heredocs: list[Heredoc] = []
    for src in args[:-1]:
        doc = parse_heredoc(src) if not inst.json else None
        if doc is not None:
            heredocs.append(by_name.get(doc.name, doc))
        else:
            sources.append(expand(src))

    def opt(name: str) -> str | None:
        value = flags.get(name)
        return expand(value) if value else None

    return Copy(inst=inst, sources=tuple(sources), dest=expand(dest), from_=opt("from"),
                chown=opt("chown"), chmod=opt("chmod"), link=flags.is_true("link"),
                parents=flags.is_true("parents"),
                exclude=tuple(expand(e) for e in flags.lists["exclude"]),
                heredocs=tuple(heredocs), is_add=is_add, checksum=opt("checksum"),
                keep_git_dir=flags.is_true("keep-git-dir"))


def _add(inst, escape, expand, expand_words, expanding) -> Copy:
    return _copy(inst, escape, expand, expand_words, expanding, is_add=True)


_HANDLERS: dict[str, Callable[..., Command]] = {
    "from": _from, "run": _run, "cmd": _cmd, "entrypoint": _entrypoint, "shell": _shell,
    "env": _env, "label": _label, "arg": _arg, "expose": _expose, "volume": _volume,
    "workdir": _workdir, "user": _user, "stopsignal": _stopsignal, "maintainer": _maintainer,
    "onbuild": _onbuild, "healthcheck": _healthcheck, "copy": _copy, "add": _add,
}


# ---------------------------------------------------------------- RUN --mount

_MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
_SHARING = ("shared", "private", "locked")
_MOUNT_KEYS = ["type", "from", "source", "target", "readonly", "id", "sharing", "required", "mode",
               "uid", "gid", "src", "dst", "ro", "rw", "readwrite", "size", "env", "destination"]


def parse_mount(value: str, expand: Expand | None, inst: Instruction) -> Mount:
    """``type=cache,target=/root/.cache,sharing=locked`` -> Mount (BuildKit's rules)."""
    try:
        fields = next(csv.reader([value]), [])
    except csv.Error as e:
        raise _err(inst, f"failed to parse csv mounts: {e}") from None
    m: dict[str, object] = {"type": "bind"}
    ro_auto = True
    if expand is None and any("$" in f for f in fields):
        return Mount(type="bind")   # validated once the variables are known (as BuildKit defers)
    for f in fields:
        key, eq, val = f.partition("=")
        key = key.lower()
        if not eq:
            if key in ("readonly", "ro"):
                m["readonly"], ro_auto = True, False
            elif key in ("readwrite", "rw"):
                m["readonly"], ro_auto = False, False
            elif key == "required":
                if m["type"] not in ("secret", "ssh"):
                    raise _err(inst, f"unexpected key '{key}' for mount type '{m['type']}'")
                m["required"] = True
            else:
                raise _err(inst, f"invalid field '{f}' must be a key=value pair")
            continue
        if expand is not None:
            val = expand(val)
        ro_auto = _mount_key(m, key, val, f, inst) and ro_auto
    return _finish_mount(m, ro_auto, inst)


def _parse_bool(key: str, val: str, inst: Instruction) -> bool:
    v = val.lower()
    if v in ("1", "t", "true"):
        return True
    if v in ("0", "f", "false"):
        return False
    raise _err(inst, f"invalid value for {key}: {val}")


def _mount_key(m: dict[str, object], key: str, val: str, f: str, inst: Instruction) -> bool:
    """Apply one key=value; returns False when it settles read-only-ness explicitly."""
    if key == "type":
        t = val.lower()
        if t not in _MOUNT_TYPES:
            hint = suggest(t, _MOUNT_TYPES)
            raise _err(inst, f"unsupported mount type {_q(val)}" + (f" (did you mean {hint}?)" if hint else ""))
        m["type"] = t
    elif key == "from":
        m["from_"] = val
    elif key in ("source", "src"):
        m["source"] = val
    elif key in ("target", "dst", "destination"):
        m["target"] = val
    elif key in ("readonly", "ro"):
        m["readonly"] = _parse_bool(key, val, inst)
        return False
    elif key in ("readwrite", "rw"):
        m["readonly"] = not _parse_bool(key, val, inst)
        return False
    elif key == "required":
        if m["type"] not in ("secret", "ssh"):
            raise _err(inst, f"unexpected key '{key}' for mount type '{m['type']}'")
        m["required"] = _parse_bool(key, val, inst)
    elif key == "size":
        if m["type"] != "tmpfs":
            raise _err(inst, f"unexpected key '{key}' for mount type '{m['type']}'")
        try:
            m["size"] = ram_in_bytes(val)
        except ValueError:
            raise _err(inst, f"invalid value for {key}: {val}") from None
    elif key == "id":
        m["id"] = val
    elif key == "sharing":
        s = val.lower()
        if s not in _SHARING:
            raise _err(inst, f"unsupported sharing value {_q(val)}")
        m["sharing"] = s
    elif key in ("mode", "uid", "gid"):
        try:
            n = int(val, 8 if key == "mode" else 10)
            if n < 0 or n >= 1 << 32:
                raise ValueError(val)
        except ValueError:
            raise _err(inst, f"invalid value {val} for {key}") from None
        m[key] = n
    elif key == "env":
        m["env"] = val
    else:
        hint = suggest(key, _MOUNT_KEYS)
        raise _err(inst, f"unexpected key '{key}' in '{f}'" + (f" (did you mean {hint}?)" if hint else ""))
    return True


def _finish_mount(m: dict[str, object], ro_auto: bool, inst: Instruction) -> Mount:
    typ = str(m["type"])
    if typ not in ("secret", "ssh", "cache"):
        for key in ("mode", "uid", "gid"):
            if m.get(key) is not None:
                raise _err(inst, f"{key} not allowed for {_q(typ)} type mounts")
    if ro_auto:
        m["readonly"] = typ not in ("cache", "tmpfs")
    if typ == "secret":
        if m.get("from_"):
            raise _err(inst, "secret mount should not have a from")
        if m.get("sharing"):
            raise _err(inst, "secret mount should not define sharing")
        if not m.get("source") and not m.get("target") and not m.get("id"):
            raise _err(inst, "invalid secret mount. one of source, target required")
        if m.get("source") and m.get("id"):
            raise _err(inst, "both source and id can't be set")
    if m.get("sharing") and typ != "cache":
        raise _err(inst, f"invalid cache sharing set for {typ} mount")
    if typ in ("bind", "cache", "tmpfs") and not m.get("target"):
        raise _err(inst, "mount target is required")
    if typ == "cache":
        m.setdefault("sharing", "shared")
        if not m.get("id"):
            m["id"] = m["target"]
    if typ in ("secret", "ssh"):
        ident = str(m.get("id") or m.get("source") or "")
        if typ == "secret" and not ident:
            ident = posixpath.basename(str(m.get("target", "")))
        if typ == "ssh" and not ident:
            ident = "default"
        m["id"] = ident
        if not m.get("target") and not (typ == "secret" and m.get("env")):
            m["target"] = ("/run/secrets/" + ident) if typ == "secret" else ""
    return Mount(**m)  # type: ignore[arg-type]


_RE_RAM = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")


def ram_in_bytes(s: str) -> int:
    """docker/go-units RAMInBytes: "64m" -> 67108864 (binary multipliers)."""
    m = _RE_RAM.match(s)
    if not m:
        raise ValueError(s)
    mult = {None: 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
    unit = m.group(2).lower() if m.group(2) else None
    return int(float(m.group(1)) * mult[unit])
