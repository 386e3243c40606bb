"""A small pflag/cobra look-alike: flag parsing, usage errors and help text for one command.

Only the spec of the command being run is built, so start-up stays cheap. Parsing follows pflag:
``--name=value``, ``--name value``, ``-abc`` (combined booleans), ``-nVALUE``, ``-n=VALUE``,
``--`` ends the flags, and with ``interspersed=False`` (run, create, exec, top) the first
positional argument ends them too. Error texts copy pflag's, because users and scripts see them.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any


PROG = "berth"


class UsageError(Exception):
    """A command-line mistake. ``flag_error`` ones exit 125, argument-count ones exit 1."""

    def __init__(self, message: str, flag_error: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.flag_error = flag_error


class HelpRequested(Exception):
    """-h/--help was given."""


def parse_bool(text: str) -> bool:
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{text}": invalid syntax')


def parse_int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(f'strconv.ParseInt: parsing "{text}": invalid syntax') from None


class Flag:
    """One flag: ``kind`` is bool, string, int, list (repeatable), or a converter's name."""

    __slots__ = ("long", "short", "kind", "help", "default", "convert", "hidden")

    def __init__(self, long: str, short: str = "", kind: str = "bool", help: str = "",
                 default: Any = None, convert: Callable[[str], Any] | None = None,
                 hidden: bool = False) -> None:
        self.long = long
        self.short = short
        self.kind = kind
        self.help = help
        self.default = default
        self.convert = convert
        self.hidden = hidden

    @property
    def dest(self) -> str:
        return self.long.replace("-", "_")

    @property
    def display(self) -> str:
        return f"-{self.short}, --{self.long}" if self.short else f"--{self.long}"

    def initial(self) -> Any:
        if self.kind == "list":
            return list(self.default or [])
        if self.default is not None:
            return self.default
        return {"bool": False, "string": "", "int": 0}.get(self.kind)

    def value_of(self, text: str) -> Any:
        if self.kind == "bool":
            return parse_bool(text)
        if self.kind == "int":
            return parse_int(text)
        if self.convert is not None:
            return self.convert(text)
        return text


class Spec:
    """A command: its usage line, description, flags and argument rule."""

    def __init__(self, use: str, short: str, flags: list[Flag] | None = None,
                 aliases: Sequence[str] = (), min_args: int = 0, max_args: int | None = None,
                 interspersed: bool = True) -> None:
        self.use = use
        self.short = short
        self.flags = flags or []
        self.aliases = aliases
        self.min_args = min_args
        self.max_args = max_args
        self.interspersed = interspersed

    @property
    def path(self) -> str:
        """The command path as typed: "ps", "container prune"."""
        words = []
        for word in self.use.split():
            if word.isupper() or word.startswith("[") or word.endswith("]"):
                break
            words.append(word)
        return " ".join(words)

    def _lookup(self) -> tuple[dict[str, Flag], dict[str, Flag]]:
        longs = {f.long: f for f in self.flags}
        shorts = {f.short: f for f in self.flags if f.short}
        return longs, shorts

    def parse(self, argv: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
        """Return (options by dest, positional args).

        Raises:
            UsageError: unknown flag, bad value, or wrong number of arguments.
            HelpRequested: --help (or -h when not taken by another flag).
        """
        longs, shorts = self._lookup()
        opts = {f.dest: f.initial() for f in self.flags}
        changed: set[str] = set()
        opts["_changed"] = changed
        args: list[str] = []
        i = 0
        n = len(argv)

        def assign(flag: Flag, text: str) -> None:
            changed.add(flag.dest)
            try:
                value = flag.value_of(text)
            except ValueError as exc:
                raise UsageError(
                    f'invalid argument "{text}" for "{flag.display}" flag: {exc}') from None
            if flag.kind == "list":
                opts[flag.dest].append(value)
            else:
                opts[flag.dest] = value

        while i < n:
            arg = argv[i]
            i += 1
            if arg == "--":
                args.extend(argv[i:])
                break
            if arg.startswith("--") and len(arg) > 2:
                name, eq, text = arg[2:].partition("=")
                flag = longs.get(name)
                if flag is None:
                    if name == "help":
                        raise HelpRequested()
                    raise UsageError(f"unknown flag: --{name}")
                if eq:
                    assign(flag, text)
                elif flag.kind == "bool":
                    opts[flag.dest] = True
                    changed.add(flag.dest)
                elif i < n:
                    assign(flag, argv[i])
                    i += 1
                else:
                    raise UsageError(f"flag needs an argument: --{name}")
            elif arg.startswith("-") and len(arg) > 1:
                j = 1
                while j < len(arg):
                    ch = arg[j]
                    flag = shorts.get(ch)
                    if flag is None:
                        if ch == "h":
                            raise HelpRequested()
                        raise UsageError(f"unknown shorthand flag: '{ch}' in {arg}")
                    rest = arg[j + 1:]
                    if rest.startswith("="):
                        assign(flag, rest[1:])
                        break
                    if flag.kind == "bool":
                        opts[flag.dest] = True
                        changed.add(flag.dest)
                        j += 1
                        continue
                    if rest:
                        assign(flag, rest)
                    elif i < n:
                        assign(flag, argv[i])
                        i += 1
                    else:
                        raise UsageError(f"flag needs an argument: '{ch}' in -{ch}")
                    break
            else:
                args.append(arg)
                if not self.interspersed:
                    args.extend(argv[i:])
                    break
        self._check_args(args)
        return opts, args

    def _check_args(self, args: list[str]) -> None:
        cmd = f"{PROG} {self.path}"
        count = len(args)
        lo, hi = self.min_args, self.max_args
        if lo == hi and count != lo:
            if lo == 0:
                raise UsageError(f"'{cmd}' accepts no arguments", flag_error=False)
            plural = "argument" if lo == 1 else "arguments"
            raise UsageError(f"'{cmd}' requires {lo} {plural}", flag_error=False)
        if count < lo:
            plural = "argument" if lo == 1 else "arguments"
            raise UsageError(f"'{cmd}' requires at least {lo} {plural}", flag_error=False)
        if hi is not None and count > hi:
            plural = "argument" if hi == 1 else "arguments"
            raise UsageError(f"'{cmd}' requires at most {hi} {plural}", flag_error=False)

    # -- text --------------------------------------------------------------------------------

    def usage_line(self) -> str:
        return f"Usage:  {PROG} {self.use}"

    def help_text(self) -> str:
        parts = [self.usage_line(), "", self.short, ""]
        if self.aliases:
            parts += ["Aliases:", "  " + ", ".join(f"{PROG} {a}" for a in self.aliases), ""]
        visible = [f for f in self.flags if not f.hidden]
        if visible:
            parts.append("Options:")
            lines = []
            for f in sorted(visible, key=lambda f: f.long):
                left = f"  -{f.short}, --{f.long}" if f.short else f"      --{f.long}"
                if f.kind != "bool":
                    left += " " + ("list" if f.kind == "list" else f.kind)
                lines.append((left, f.help))
            width = max(len(left) for left, _ in lines) + 3
            parts += [left.ljust(width) + text for left, text in lines]
            parts.append("")
        return "\n".join(parts)

    def error_text(self, err: UsageError) -> str:
        """What docker prints on stderr for a usage mistake."""
        if err.flag_error:
            return (f"{err.message}\n\n{self.usage_line()}\n\n"
                    f"Run '{PROG} {self.path} --help' for more information")
        hint = "See" if "at least" in err.message else "Run"
        return (f"{PROG}: {err.message}\n\n{self.usage_line()}\n\n"
                f"{hint} '{PROG} {self.path} --help' for more information")
