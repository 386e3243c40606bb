"""Helpers shared by several commands: flag constructors and formatted-output plumbing."""

from __future__ import annotations

import json
import sys

from berth.cli._flags import Flag, UsageError
from berth.client.api import APIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FORMAT_HELP = "Format output using a custom template"


def format_flag(short: str = "") -> Flag:
    return Flag("format", short, "string", FORMAT_HELP)


def kv_map(items: list[str]) -> dict[str, str]:
    """``key=value`` flag values (``--label``, ``--opt``...) as a map; a bare ``key`` maps to ""."""
    out: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def filters_json(items: list[str], extra: dict[str, list[str]] | None = None) -> str | None:
    """docker's filters.Args encoding: {"key":{"value":true}}."""

    out: dict[str, dict[str, bool]] = {}
    for item in items:
        key, _, value = item.partition("=")
        if not _:
            raise ValueError("bad format of filter (expected name=value)")
        out.setdefault(key.strip().lower(), {})[value.strip()] = True
    for key, values in (extra or {}).items():
        for value in values:
            out.setdefault(key, {})[value] = True
    return json.dumps(out, separators=(",", ":")) if out else None


def filters_param(items: list[str], extra: dict[str, list[str]] | None = None) -> str | None:
    """filters_json for a command's ``--filter`` values; a malformed one is a usage error."""
    try:
        return filters_json(items, extra)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def confirm(warning: str) -> bool:
    """Print ``warning`` and docker's prune question; True when the answer is y or yes."""
    sys.stdout.write(warning + "Are you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def remove_each(cli: Any, names: list[str], path: str, params: dict[str, object] | None = None,
                ignore_missing: bool = False) -> int:
    """DELETE ``path.format(name)`` for each name, printing it; errors print and make the exit code 1."""
    code = 0
    for name in names:
        try:
            cli.client.call("DELETE", path.format(name), params)
            sys.stdout.write(name + "\n")
        except APIError as exc:
            if ignore_missing and exc.status == 404:
                continue
            print_error(f"Error response from daemon: {exc.message}")
            code = 1
    return code


def print_template(fmt: str, data: Any) -> int:
    """Execute a Go template over ``data`` and print the result plus a newline."""
    from berth.cli._template import Template, TemplateError

    try:
        text = Template(fmt).execute(data)
    except TemplateError as exc:
        sys.stderr.write(f"template parsing error: {exc}\n")
        return 1
    sys.stdout.write(text + "\n")
    return 0


def go_json_indent(value: Any) -> str:
    """json.MarshalIndent-like output as ``docker inspect`` prints it (4-space indent)."""

    text = json.dumps(value, indent=4, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def print_error(message: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def inspect_each(cli: Any, fmt: str | None, paths: list[str]) -> int:
    """GET each object, then print them as docker does: one template each, or a JSON array.

    A missing object prints the daemon's error and makes the exit code 1; the rest still print.
    """

    out, code = [], 0
    for path in paths:
        try:
            out.append(cli.client.get_json(path))
        except APIError as exc:
            print_error(f"Error response from daemon: {exc.message}")
            code = 1
    if fmt:
        for obj in out:
            if print_template(fmt, obj):
                return 1
        return code
    sys.stdout.write(go_json_indent(out) + "\n")
    return code
