"""``berth cri pods|ps|images|exec|logs``: crictl's view of a node, read from berthd's CRI
socket (``--cri-socket``, default /run/berth/cri.sock), with crictl's columns."""

from __future__ import annotations

import sys
import time
from typing import Any

from berth.cli._flags import Flag, Spec, UsageError
from berth.client.cri import DEFAULT_SOCKET, CriClient


def _socket_flag() -> Flag:
    return Flag("cri-socket", "", "string", "The CRI socket", DEFAULT_SOCKET)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """crictl's tabwriter: columns padded by three spaces."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    return "".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n" for r in [headers, *rows])


def _ago(nanos: int) -> str:
    s = max(int(time.time() - nanos / 1e9), 0)
    for unit, n in (("hours", 3600), ("minutes", 60)):
        if s >= 2 * n:
            return f"{s // n} {unit} ago"
    return "About a minute ago" if s >= 60 else f"{s} seconds ago"


def _call(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as e:  # grpc.RpcError (imported lazily): its code and message
        details = getattr(e, "details", None)
        if callable(details):
            code = e.code().name  # type: ignore[attr-defined]
            raise SystemExit(_fail(f"rpc error: code = {code} desc = {details()}")) from None
        raise


def _fail(msg: str) -> int:
    sys.stderr.write(f"berth cri: {msg}\n")
    return 1


def spec_cri_pods() -> Spec:
    return Spec("cri pods [OPTIONS]", "List pod sandboxes", [_socket_flag(), Flag("quiet", "q", "bool", "Only IDs")],
                aliases=("cri pods",), max_args=0)


def run_cri_pods(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    with CriClient(opts["cri_socket"]) as c:
        items = _call(c.runtime.ListPodSandbox, c.pb.ListPodSandboxRequest()).items
        state = {0: "Ready", 1: "NotReady"}
        rows = [[p.id[:13], _ago(p.created_at), state.get(p.state, "?"), p.metadata.name, p.metadata.namespace,
                 str(p.metadata.attempt), p.runtime_handler or "(default)"]
                for p in sorted(items, key=lambda p: -p.created_at)]
    if opts["quiet"]:
        sys.stdout.write("".join(r[0] + "\n" for r in rows))
    else:
        sys.stdout.write(_table(["POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME"], rows))
    return 0


def spec_cri_ps() -> Spec:
    return Spec("cri ps [OPTIONS]", "List containers", [
        _socket_flag(), Flag("all", "a", "bool", "Show all containers (default: running)"),
        Flag("quiet", "q", "bool", "Only IDs")], aliases=("cri ps",), max_args=0)


def run_cri_ps(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    with CriClient(opts["cri_socket"]) as c:
        pb = c.pb
        f = None if opts["all"] else pb.ContainerFilter(
            state=pb.ContainerStateValue(state=pb.ContainerState.CONTAINER_RUNNING))
        items = _call(c.runtime.ListContainers, pb.ListContainersRequest(filter=f)).containers
        pods = {p.id: p.metadata.name for p in _call(c.runtime.ListPodSandbox, pb.ListPodSandboxRequest()).items}
        state = {0: "Created", 1: "Running", 2: "Exited", 3: "Unknown"}
        rows = [[x.id[:13], x.image.image, _ago(x.created_at), state.get(x.state, "?"), x.metadata.name,
                 str(x.metadata.attempt), x.pod_sandbox_id[:13], pods.get(x.pod_sandbox_id, "")]
                for x in sorted(items, key=lambda x: -x.created_at)]
    if opts["quiet"]:
        sys.stdout.write("".join(r[0] + "\n" for r in rows))
    else:
        sys.stdout.write(_table(["CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD ID", "POD"], rows))
    return 0


def spec_cri_images() -> Spec:
    return Spec("cri images [OPTIONS]", "List images", [_socket_flag(), Flag("quiet", "q", "bool", "Only IDs")],
                aliases=("cri images",), max_args=0)


def run_cri_images(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    with CriClient(opts["cri_socket"]) as c:
        images = _call(c.images.ListImages, c.pb.ListImagesRequest()).images
    rows = []
    for im in images:
        short = im.id.removeprefix("sha256:")[:13]
        for tag in im.repo_tags or ["<none>:<none>"]:
            repo, _, t = tag.rpartition(":")
            rows.append([repo, t, short, _size(im.size)])
    if opts["quiet"]:
        sys.stdout.write("".join(dict.fromkeys(r[2] + "\n" for r in rows)))
    else:
        sys.stdout.write(_table(["IMAGE", "TAG", "IMAGE ID", "SIZE"], sorted(rows)))
    return 0


def _size(n: int) -> str:
    for unit, k in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= k:
            return f"{n / k:.3g}{unit}"
    return f"{n}B"


def spec_cri_exec() -> Spec:
    return Spec("cri exec [OPTIONS] CONTAINER COMMAND [ARG...]", "Run a command in a running container", [
        _socket_flag(), Flag("timeout", "", "int", "Seconds before the command is stopped (0: none)", 0)],
        aliases=("cri exec",), min_args=2, interspersed=False)


def run_cri_exec(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    with CriClient(opts["cri_socket"]) as c:
        r = _call(c.runtime.ExecSync, c.pb.ExecSyncRequest(container_id=args[0], cmd=args[1:],
                                                            timeout=opts["timeout"]))
    sys.stdout.buffer.write(r.stdout)
    sys.stdout.flush()
    sys.stderr.buffer.write(r.stderr)
    return int(r.exit_code)


def spec_cri_logs() -> Spec:
    return Spec("cri logs [OPTIONS] CONTAINER", "Fetch the logs of a container", [
        _socket_flag(), Flag("tail", "", "int", "Lines from the end (-1: all)", -1),
        Flag("timestamps", "t", "bool", "Show timestamps")], aliases=("cri logs",), min_args=1, max_args=1)


def run_cri_logs(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    """The container's CRI log file, each line's stream to stdout or stderr (``P`` parts joined)."""
    with CriClient(opts["cri_socket"]) as c:
        st = _call(c.runtime.ContainerStatus, c.pb.ContainerStatusRequest(container_id=args[0])).status
    if not st.log_path:
        raise UsageError(f"container {args[0]} has no log path", flag_error=False)
    with open(st.log_path, "rb") as f:
        lines = f.read().splitlines()
    if opts["tail"] >= 0:
        lines = lines[len(lines) - opts["tail"]:] if opts["tail"] else []
    for line in lines:
        ts, stream, tag, text = (line.split(b" ", 3) + [b"", b"", b""])[:4]
        out = sys.stderr.buffer if stream == b"stderr" else sys.stdout.buffer
        out.write((ts + b" " if opts["timestamps"] else b"") + text + (b"\n" if tag == b"F" else b""))
    return 0
