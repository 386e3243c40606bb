"""``berth build`` (the docker CLI's classic builder client) and ``berth builder prune``.

The context (a directory, ``-`` for stdin, or a URL passed as ``remote=``) is streamed to
``POST /build`` as a tar while it is produced; the JSON stream that comes back is rendered as
``plain`` (docker's classic output), ``quiet`` (the image ID) or, on a terminal with ``auto``,
a live view. A failed build exits with the daemon's error code (1 unless a RUN step returned
another), as the docker CLI does; flag mistakes exit 125.
"""

from __future__ import annotations

import json
import os
import sys

from berth.cli._common import confirm, filters_json, kv_map, print_error
from berth.cli._flags import Flag, Spec
from berth.schema.human import human_size, ram_in_bytes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any


def _size(text: str) -> int:
    return ram_in_bytes(text)


def spec_build() -> Spec:
    return Spec("build [OPTIONS] PATH | URL | -", "Build an image from a Dockerfile", [
        Flag("add-host", "", "list", "Add a custom host-to-IP mapping (\"host:ip\")"),
        Flag("build-arg", "", "list", "Set build-time variables"),
        Flag("cache-from", "", "list", "Images to consider as cache sources"),
        Flag("cpu-period", "", "int", "Limit the CPU CFS (Completely Fair Scheduler) period"),
        Flag("cpu-quota", "", "int", "Limit the CPU CFS (Completely Fair Scheduler) quota"),
        Flag("cpu-shares", "c", "int", "CPU shares (relative weight)"),
        Flag("cpuset-cpus", "", "string", "CPUs in which to allow execution (0-3, 0,1)"),
        Flag("file", "f", "string", "Name of the Dockerfile (Default is \"PATH/Dockerfile\")"),
        Flag("force-rm", "", "bool", "Always remove intermediate containers"),
        Flag("iidfile", "", "string", "Write the image ID to the file"),
        Flag("label", "", "list", "Set metadata for an image"),
        Flag("memory", "m", "bytes", "Memory limit", 0, convert=_size),
        Flag("memory-swap", "", "bytes", "Swap limit equal to memory plus swap: -1 to enable unlimited swap",
             0, convert=lambda t: -1 if t == "-1" else _size(t)),
        Flag("network", "", "string", "Set the networking mode for the RUN instructions during build", "default"),
        Flag("no-cache", "", "bool", "Do not use cache when building the image"),
        Flag("platform", "", "string", "Set platform if server is multi-platform capable"),
        Flag("progress", "", "string", "Set type of progress output (auto, plain, tty, quiet)", "auto"),
        Flag("pull", "", "bool", "Always attempt to pull a newer version of the image"),
        Flag("quiet", "q", "bool", "Suppress the build output and print image ID on success"),
        Flag("rm", "", "bool", "Remove intermediate containers after a successful build", True),
        Flag("secret", "", "list", "Secret to expose to the build (format: \"id=mysecret,src=/local/secret\")"),
        Flag("shm-size", "", "bytes", "Size of \"/dev/shm\"", 0, convert=_size),
        Flag("tag", "t", "list", "Name and optionally a tag in the \"name:tag\" format"),
        Flag("target", "", "string", "Set the target build stage to build."),
    ], aliases=("image build", "build", "builder build"), min_args=1, max_args=1)


class FlagError(Exception):
    """A flag value docker rejects before talking to the daemon (exit 125)."""


def _build_args(items: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key:
            raise FlagError(f"invalid argument \"{item}\" for \"--build-arg\" flag: "
                            f"invalid environment variable: {item}")
        out[key] = value if eq else os.environ.get(key)
    return out


def _hosts(items: list[str]) -> list[str]:
    out = []
    for item in items:
        sep = "=" if "=" in item else ":"
        host, ok, ip = item.partition(sep)
        if not ok or not host or not ip:
            raise FlagError(f"invalid argument \"{item}\" for \"--add-host\" flag: "
                            f"bad format for add-host: \"{item}\"")
        out.append(f"{host}:{ip.strip('[]')}")
    return out


def _secrets(items: list[str]) -> dict[str, str]:
    """``--secret id=x,src=path`` (or ``env=VAR``): id -> base64 of the content."""
    import base64

    out = {}
    for item in items:
        fields = dict(f.partition("=")[::2] for f in item.split(","))
        ident = fields.get("id", "")
        src = fields.get("src") or fields.get("source")
        env = fields.get("env")
        if not ident:
            raise FlagError(f"invalid argument \"{item}\" for \"--secret\" flag: secret ID missing")
        if src:
            try:
                with open(src, "rb") as f:
                    data = f.read()
            except OSError as exc:
                raise FlagError(f"failed to read secret {ident} from {src}: {exc.strerror}") from None
        elif env or ident in os.environ:
            data = os.environ.get(env or ident, "").encode()
        else:
            raise FlagError(f"invalid argument \"{item}\" for \"--secret\" flag: "
                            f"secret {ident}: no src given")
        out[ident] = base64.b64encode(data).decode()
    return out


def _registry_config() -> str:
    """X-Registry-Config: every ``auths`` entry of the docker config file, base64url JSON."""
    import base64

    cfg_dir = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    auths: dict[str, dict[str, str]] = {}
    try:
        with open(os.path.join(cfg_dir, "config.json")) as f:
            doc = json.load(f)
        for server, entry in (doc.get("auths") or {}).items():
            user, _, pw = base64.b64decode(entry.get("auth") or "").decode().partition(":")
            auths[server] = {"username": user, "password": pw, "serveraddress": server}
            if entry.get("identitytoken"):
                auths[server]["identitytoken"] = entry["identitytoken"]
    except (OSError, ValueError, AttributeError):
        pass
    return base64.urlsafe_b64encode(json.dumps(auths, separators=(",", ":")).encode()).decode()


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://", "git://", "git@", "github.com/"))


def build_params(opts: dict[str, Any]) -> dict[str, object]:
    params: dict[str, object] = {
        "t": opts["tag"], "q": opts["quiet"] or opts["progress"] == "quiet",
        "nocache": opts["no_cache"], "pull": opts["pull"], "forcerm": opts["force_rm"],
        "rm": "1" if opts["rm"] else "0", "target": opts["target"] or None,
        "platform": opts["platform"] or None, "version": "1",
    }
    if opts["network"] and opts["network"] != "default":
        params["networkmode"] = opts["network"]
    if opts["build_arg"]:
        params["buildargs"] = json.dumps(_build_args(opts["build_arg"]), separators=(",", ":"))
    if opts["label"]:
        params["labels"] = json.dumps(kv_map(opts["label"]), separators=(",", ":"))
    if opts["cache_from"]:
        params["cachefrom"] = json.dumps(opts["cache_from"], separators=(",", ":"))
    if opts["add_host"]:
        params["extrahosts"] = _hosts(opts["add_host"])
    if opts["secret"]:
        params["berth-secrets"] = json.dumps(_secrets(opts["secret"]), separators=(",", ":"))
    for dest, key in (("memory", "memory"), ("memory_swap", "memswap"), ("shm_size", "shmsize"),
                      ("cpu_shares", "cpushares"), ("cpu_period", "cpuperiod"), ("cpu_quota", "cpuquota")):
        if opts[dest]:
            params[key] = str(opts[dest])
    if opts["cpuset_cpus"]:
        params["cpusetcpus"] = opts["cpuset_cpus"]
    return params


def _context(ctx: str, opts: dict[str, Any], params: dict[str, object], stats: Any) -> Iterator[bytes] | None:
    """Fill ``dockerfile``/``remote`` in params; return the body (None for a remote context)."""
    from berth.client import buildcontext as bc

    dockerfile = opts["file"]
    if _is_url(ctx) and not os.path.exists(ctx):
        params["remote"] = ctx
        if dockerfile:
            params["dockerfile"] = dockerfile
        return None
    if ctx == "-":
        if dockerfile == "-":
            raise bc.ContextError("invalid argument: can't use stdin for both build context and dockerfile")
        head, archive = bc.sniff_stdin(sys.stdin.buffer)
        if archive:
            if dockerfile:
                params["dockerfile"] = dockerfile
            return bc.stream_rest(head, sys.stdin.buffer, stats)
        content = head + sys.stdin.buffer.read()
        params["dockerfile"] = "Dockerfile"
        return bc.single_dockerfile_tar(content, stats)
    if not os.path.isdir(ctx):
        raise bc.ContextError(f"path \"{ctx}\" not found" if not os.path.exists(ctx)
                              else f"context must be a directory: {ctx}")
    if dockerfile == "-":
        content = sys.stdin.buffer.read()
        name = bc.random_dockerfile_name()
        params["dockerfile"] = name
        return bc.dir_tar(ctx, "", content, name, stats)
    rel, outside = bc.resolve_dockerfile(ctx, dockerfile)
    if outside is not None:
        with open(outside, "rb") as f:
            content = f.read()
        name = bc.random_dockerfile_name()
        params["dockerfile"] = name
        return bc.dir_tar(ctx, "", content, name, stats)
    params["dockerfile"] = rel
    return bc.dir_tar(ctx, rel, None, "", stats)


def run_build(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    from berth.client import buildcontext as bc

    progress = "quiet" if opts["quiet"] else opts["progress"]
    if progress not in ("auto", "plain", "tty", "quiet", "rawjson"):
        print_error(f"invalid argument \"{progress}\" for \"--progress\" flag: "
                    "must be one of auto, plain, tty, quiet or rawjson")
        return 125
    opts["progress"] = progress
    if opts["iidfile"]:
        try:
            os.unlink(opts["iidfile"])
        except FileNotFoundError:
            pass
        except OSError as exc:
            print_error(f"Removing image ID file: {exc}")
            return 1
    stats = bc.Stats()
    try:
        params = build_params(opts)
        body = _context(args[0], opts, params, stats)
    except FlagError as exc:
        print_error(str(exc))
        return 125
    except bc.ContextError as exc:
        print_error(f"unable to prepare context: {exc}")
        return 1
    headers = {"Content-Type": "application/x-tar", "X-Registry-Config": _registry_config()}
    try:
        resp = cli.client.request("POST", "/build", params, body=body if body is not None else b"",
                                  headers=headers)
    except bc.ContextError as exc:
        print_error(f"error checking context: {exc}")
        return 1
    return _show(resp, opts, stats)


def _show(resp: Any, opts: dict[str, Any], stats: Any) -> int:
    from berth.cli import _buildprogress as bp

    progress = opts["progress"]
    tty = progress == "tty" or (progress == "auto" and sys.stdout.isatty())
    size = human_size(stats.sent) if stats.sent else ""
    try:
        if progress == "quiet":
            result = bp.render_quiet(resp.iter_lines())
        elif tty:
            result = bp.render_tty(resp.iter_lines(), sys.stdout, size)
        elif progress == "rawjson":
            result = bp.Result()
            for line in resp.iter_lines():
                sys.stdout.write(line.decode("utf-8", "replace") + "\n")
        else:
            if size:
                sys.stdout.write(f"Sending build context to Docker daemon  {size}\n\n")
            result = bp.render_plain(resp.iter_lines(), sys.stdout)
    except bp.BuildFailed as exc:
        print_error(exc.message)
        return exc.code
    finally:
        resp.close()
    if progress == "quiet":
        text = "".join(result.stream_text).strip()
        sys.stdout.write((result.image_id or text) + "\n")
    if opts["iidfile"] and result.image_id:
        with open(opts["iidfile"], "w") as f:
            f.write(result.image_id)
    return 0


# -- builder prune --------------------------------------------------------------------------------


def spec_builder_prune() -> Spec:
    return Spec("builder prune [OPTIONS]", "Remove build cache", [
        Flag("all", "a", "bool", "Remove all unused build cache, not just dangling ones"),
        Flag("filter", "", "list", "Provide filter values (e.g. \"until=24h\")"),
        Flag("force", "f", "bool", "Do not prompt for confirmation"),
        Flag("keep-storage", "", "bytes", "Amount of disk space to keep for cache", 0, convert=_size),
        Flag("reserved-space", "", "bytes", "Amount of disk space always allowed to keep for cache", 0,
             convert=_size),
    ], max_args=0)


def run_builder_prune(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    if not opts["force"]:
        what = "all build cache" if opts["all"] else "all dangling build cache"
        if not confirm(f"WARNING! This will remove {what}. "):
            return 0
    try:
        filters = filters_json(opts["filter"])
    except ValueError as exc:
        print_error(str(exc))
        return 125
    keep = opts["reserved_space"] or opts["keep_storage"]
    params: dict[str, object] = {"all": opts["all"], "filters": filters}
    if keep:
        params["keep-storage"] = str(keep)
        params["reserved-space"] = str(keep)
    res = cli.client.json("POST", "/build/prune", params) or {}
    deleted = res.get("CachesDeleted") or []
    if deleted:
        sys.stdout.write("Deleted build cache objects:\n")
        for ident in deleted:
            sys.stdout.write(f"{ident}\n")
        sys.stdout.write("\n")
    sys.stdout.write(f"Total:\t{human_size(res.get('SpaceReclaimed') or 0)}\n")
    return 0
