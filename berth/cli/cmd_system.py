"""``version``, ``info`` and ``inspect`` (plus ``container inspect`` / ``image inspect``)."""

from __future__ import annotations

import datetime
import json
import os
import sys

from berth import __version__
from berth.cli._common import format_flag, go_json_indent, print_error, print_template
from berth.cli._flags import Flag, Spec
from berth.cli._units import bytes_size
from berth.client._http import quote
from berth.client.api import MAX_API_VERSION, APIError, DaemonUnavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# -- version --------------------------------------------------------------------------------------


def spec_version() -> Spec:
    return Spec("version [OPTIONS]", "Show the berth version information",
                [format_flag("f")], max_args=0)


def _ansic(rfc3339: str) -> str:
    """Go's time.ANSIC rendering of an RFC 3339 timestamp ("Thu May  7 21:09:36 2026")."""

    text = rfc3339.replace("Z", "+00:00")
    if "." in text:
        head, _, rest = text.partition(".")
        frac = "".join(ch for ch in rest if ch.isdigit())
        tz = rest[len(frac):]
        text = f"{head}.{frac[:6]}{tz}"
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        return rfc3339
    return when.strftime("%a %b ") + f"{when.day:2d}" + when.strftime(" %H:%M:%S %Y")


def _client_info(api_version: str) -> dict[str, Any]:
    return {
        "Platform": {"Name": ""},
        "Version": __version__,
        "ApiVersion": api_version,
        "DefaultAPIVersion": MAX_API_VERSION,
        "GitCommit": "",
        "PythonVersion": "%d.%d.%d" % sys.version_info[:3],
        "Os": "linux",
        "Arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine,
                                                           os.uname().machine),
        "Context": "default",
    }


def _client_text(info: dict[str, Any]) -> str:
    api = info["ApiVersion"]
    if api != MAX_API_VERSION:
        api = f"{api} (downgraded from {MAX_API_VERSION})"
    return (
        "Client:\n"
        f" Version:           {info['Version']}\n"
        f" API version:       {api}\n"
        f" Python version:    {info['PythonVersion']}\n"
        f" OS/Arch:           {info['Os']}/{info['Arch']}\n"
        f" Context:           {info['Context']}\n"
    )


def _server_text(server: dict[str, Any]) -> str:
    name = (server.get("Platform") or {}).get("Name") or ""
    lines = ["", "Server:" + (f" {name}" if name else "")]
    components = server.get("Components") or [{
        "Name": "Engine", "Version": server.get("Version", ""),
        "Details": {"ApiVersion": server.get("ApiVersion", ""),
                    "MinAPIVersion": server.get("MinAPIVersion", ""),
                    "GoVersion": server.get("GoVersion", ""),
                    "GitCommit": server.get("GitCommit", ""),
                    "BuildTime": server.get("BuildTime", ""),
                    "Os": server.get("Os", ""), "Arch": server.get("Arch", ""),
                    "Experimental": str(server.get("Experimental", False)).lower()}}]
    for comp in components:
        details = comp.get("Details") or {}
        lines.append(f" {comp.get('Name', '')}:")
        if comp.get("Name") == "Engine":
            d = details.get
            build = d("BuildTime", "")
            lines += [
                f"  Version:          {comp.get('Version', '')}",
                f"  API version:      {d('ApiVersion', '')} (minimum version "
                f"{d('MinAPIVersion', '')})",
                f"  Go version:       {d('GoVersion', '')}",
                f"  Git commit:       {d('GitCommit', '')}",
                f"  Built:            {_ansic(build) if build else ''}",
                f"  OS/Arch:          {d('Os', '')}/{d('Arch', '')}",
                f"  Experimental:     {d('Experimental', '')}",
            ]
        else:
            lines.append(f"  Version:          {comp.get('Version', '')}")
            for key in sorted(details):
                lines.append(f"  {key}:{' ' * max(18 - len(key) - 1, 0)}{details[key]}")
    return "\n".join(lines) + "\n"


def run_version(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    fmt = opts["format"]
    client = cli.client
    server: dict[str, Any] | None = None
    error = None
    try:
        api_version = client.api_version
        server = client.get_json("/version")
    except (DaemonUnavailable, APIError) as exc:
        api_version = MAX_API_VERSION
        error = str(exc) if isinstance(exc, DaemonUnavailable) else \
            f"Error response from daemon: {exc.message}"
    info = _client_info(api_version)
    if fmt:
        data = {"Client": info, "Server": server}
        if fmt == "json":
            sys.stdout.write(json.dumps(data, separators=(",", ":")) + "\n")
        elif print_template(fmt, data):
            return 1
    else:
        sys.stdout.write(_client_text(info))
        if server is not None:
            sys.stdout.write(_server_text(server))
    if error:
        print_error(error)
        return 1
    return 0


# -- info -----------------------------------------------------------------------------------------


def spec_info() -> Spec:
    return Spec("info [OPTIONS]", "Display system-wide information", [format_flag("f")],
                aliases=("system info", "info"), max_args=0)


def _info_text(i: dict[str, Any]) -> str:
    g = i.get
    out = ["Client:", f" Version:    {__version__}", " Context:    default",
           " Debug Mode: false", "", "Server:"]
    out += [f" Containers: {g('Containers', 0)}", f"  Running: {g('ContainersRunning', 0)}",
            f"  Paused: {g('ContainersPaused', 0)}", f"  Stopped: {g('ContainersStopped', 0)}",
            f" Images: {g('Images', 0)}", f" Server Version: {g('ServerVersion', '')}",
            f" Storage Driver: {g('Driver', '')}"]
    for pair in g("DriverStatus") or []:
        if len(pair) == 2:
            out.append(f"  {pair[0]}: {pair[1]}")
    out += [f" Logging Driver: {g('LoggingDriver', '')}",
            f" Cgroup Driver: {g('CgroupDriver', '')}"]
    if g("CgroupVersion"):
        out.append(f" Cgroup Version: {g('CgroupVersion')}")
    plugins = g("Plugins") or {}
    out.append(" Plugins:")
    for kind in ("Volume", "Network", "Authorization", "Log"):
        if plugins.get(kind):
            out.append(f"  {kind}: {' '.join(plugins[kind])}")
    swarm = (g("Swarm") or {}).get("LocalNodeState") or "inactive"
    out.append(f" Swarm: {swarm}")
    runtimes = g("Runtimes") or {}
    if runtimes:
        out.append(f" Runtimes: {' '.join(sorted(runtimes))}")
    out.append(f" Default Runtime: {g('DefaultRuntime', '')}")
    if g("InitBinary") is not None:
        out.append(f" Init Binary: {g('InitBinary', '')}")
    for label, key in (("containerd", "ContainerdCommit"), ("runc", "RuncCommit"),
                       ("init", "InitCommit")):
        if g(key) is not None:
            out.append(f" {label} version: {(g(key) or {}).get('ID', '')}")
    secopts = g("SecurityOptions") or []
    if secopts:
        out.append(" Security Options:")
        for opt in secopts:
            fields = dict(kv.partition("=")[::2] for kv in opt.split(","))
            out.append(f"  {fields.pop('name', opt)}")
            for key, value in fields.items():
                out.append(f"   {key.capitalize()}: {value}")
    out += [f" Kernel Version: {g('KernelVersion', '')}",
            f" Operating System: {g('OperatingSystem', '')}",
            f" OSType: {g('OSType', '')}", f" Architecture: {g('Architecture', '')}",
            f" CPUs: {g('NCPU', 0)}", f" Total Memory: {bytes_size(g('MemTotal') or 0)}",
            f" Name: {g('Name', '')}", f" ID: {g('ID', '')}",
            f" Docker Root Dir: {g('DockerRootDir', '')}",
            f" Debug Mode: {str(bool(g('Debug'))).lower()}",
            f" Experimental: {str(bool(g('ExperimentalBuild'))).lower()}"]
    registries = (g("RegistryConfig") or {}).get("InsecureRegistryCIDRs") or []
    if registries:
        out.append(" Insecure Registries:")
        out += [f"  {r}" for r in registries]
    out.append(f" Live Restore Enabled: {str(bool(g('LiveRestoreEnabled'))).lower()}")
    return "\n".join(out) + "\n\n"


def run_info(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    fmt = opts["format"]
    info = cli.client.get_json("/info")
    if fmt:
        if fmt == "json":
            sys.stdout.write(json.dumps(info, separators=(",", ":")) + "\n")
            return 0
        return print_template(fmt, info)
    sys.stdout.write(_info_text(info))
    for warning in info.get("Warnings") or []:
        print_error(warning)
    return 0


# -- inspect --------------------------------------------------------------------------------------

_INSPECT_FLAGS = [
    format_flag("f"),
    Flag("size", "s", "bool", "Display total file sizes if the type is container"),
]


def spec_inspect() -> Spec:
    flags = _INSPECT_FLAGS + [Flag("type", "", "string", "Only inspect objects of the given type")]
    return Spec("inspect [OPTIONS] NAME|ID [NAME|ID...]",
                "Return low-level information on berth objects", flags, min_args=1)


def spec_container_inspect() -> Spec:
    return Spec("container inspect [OPTIONS] CONTAINER [CONTAINER...]",
                "Display detailed information on one or more containers",
                list(_INSPECT_FLAGS), min_args=1)


def spec_image_inspect() -> Spec:
    return Spec("image inspect [OPTIONS] IMAGE [IMAGE...]",
                "Display detailed information on one or more images",
                [format_flag("f")], min_args=1)


_PATHS = {
    "container": "/containers/{}/json",
    "image": "/images/{}/json",
    "network": "/networks/{}",
    "volume": "/volumes/{}",
}


def _inspect(cli: Any, opts: dict[str, Any], names: list[str], kind: str | None) -> int:
    client = cli.client
    found: list[Any] = []
    errors: list[str] = []
    if kind is not None and kind not in _PATHS:
        print_error(f'"{kind}" is not a valid value for --type')
        return 1
    kinds = [kind] if kind else ["container", "image", "network", "volume"]
    for name in names:
        params = {"size": True} if opts.get("size") else None
        element = None
        last_error: APIError | None = None
        for k in kinds:
            path = _PATHS[k].format(quote(name, safe="/:@"))
            try:
                element = client.get_json(path, params if k == "container" else None)
                break
            except APIError as exc:
                if exc.status != 404 and not (exc.status == 400 and kind is None):
                    last_error = exc
                    break
                last_error = exc
        if element is not None:
            found.append(element)
        elif kind is None and last_error is not None and last_error.status in (400, 404):
            errors.append(f"Error: No such object: {name}")
        elif last_error is not None:
            errors.append(f"Error response from daemon: {last_error.message}")
    fmt = opts.get("format") or ""
    if fmt and fmt != "json":
        from berth.cli._template import Template, TemplateError

        try:
            tmpl = Template(fmt)
            for element in found:
                sys.stdout.write(tmpl.execute(element) + "\n")
        except TemplateError as exc:
            print_error(f"template parsing error: {exc}")
            return 1
    else:
        sys.stdout.write(go_json_indent(found) + "\n")
    for err in errors:
        print_error(err)
    return 1 if errors else 0


def run_inspect(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    return _inspect(cli, opts, args, opts["type"] or None)


def run_container_inspect(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    return _inspect(cli, opts, args, "container")


def run_image_inspect(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    return _inspect(cli, opts, args, "image")
