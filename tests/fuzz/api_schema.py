"""The Engine API fuzzed from its own definition (issue 16): schemathesis turns Docker's
swagger (shared/reference/engine-api/swagger-v1.50.yaml) into requests, sent to a real berthd
on its Unix socket. Used by the suite's short run (test_api_schema.py) and the long one
(api_long.py).

What keeps the run safe: berthd runs in a network namespace of its own that has only a
loopback (the bridges a fuzzed network create makes, and any connection a request could make,
stay there); operations that reach registries (pull, push, search, auth, build, distribution)
and the swarm, plugin and session ones are left out; path parameters name the fuzzer's own
objects (``fuzz-*``), and names in queries and bodies get that prefix, so nothing else is
addressed. The canaries (a running container with its volume, network and image) are made
first and must come out unchanged.

The bar (``judge``): no 500 (berth's error table answers an unmapped exception with one), a
501/503 only where Docker documents it, every error a JSON ``{"message": ...}``, the head of
every answer within 10 s and the whole of it too unless the operation streams by design
(events, logs, stats, wait, attach, exec start, export).
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import subprocess
import tarfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
SPECS = [ROOT.parent / "shared", Path("/work/shared")]
SPEC_NAME = "reference/engine-api/swagger-v1.50.yaml"

EXCLUDED_PREFIXES = ("/plugins", "/nodes", "/swarm", "/services", "/tasks", "/secrets", "/configs",
                     "/distribution", "/session")
EXCLUDED = {("POST", "/images/create"), ("POST", "/images/{name}/push"), ("GET", "/images/search"),
            ("POST", "/auth"), ("POST", "/build")}  # each would reach a registry or a URL
STREAMING = {"/events", "/containers/{id}/logs", "/containers/{id}/stats", "/containers/{id}/wait",
             "/containers/{id}/attach", "/containers/{id}/attach/ws", "/exec/{id}/start",
             "/containers/{id}/export"}
TIMEOUT = 10.0
STREAM_CUT = 1.0  # a stream still open this long after its head is cut (the client hangs up)
# stop and restart wait for the container to end (Docker's stop timeout, 10 s unless ?t= says
# otherwise) before they answer: their bar is that wait plus TIMEOUT, ?t= held to 10 s at most.
STOPPING = {"/containers/{id}/stop", "/containers/{id}/restart"}
STOP_WAIT = 10

FUZZ_CONTAINER, FUZZ_IMAGE, FUZZ_VOLUME, FUZZ_NETWORK = "fuzz-c", "fuzz-img:1", "fuzz-vol", "fuzz-net"
CANARY = "canary"
# The fuzz container ends on SIGTERM within a second: a fuzzed stop ?t= never waits it out.
FUZZ_CMD = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]


def spec_path() -> Path | None:
    for base in SPECS:
        if (base / SPEC_NAME).exists():
            return base / SPEC_NAME
    return None


def operations(spec: Path) -> list[Any]:
    """The single-host operations schemathesis can generate for, minus those that leave the host."""
    import schemathesis
    schemathesis.serializer("application/x-tar", "application/x-tar+gzip")(_as_tar)
    schema = schemathesis.openapi.from_path(str(spec))
    ops = []
    for result in schema.get_all_operations():
        op = result.ok()
        if op.path.startswith(EXCLUDED_PREFIXES) or (op.method.upper(), op.path) in EXCLUDED:
            continue
        ops.append(op)
    return ops


def _as_tar(ctx: Any, value: Any) -> bytes:
    """A tar body (archive PUT, images/load): one member whose name and bytes come from the
    generated value, or the value's own bytes when it is binary (a malformed tar)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    data = json.dumps(value, default=str).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(f"fuzz-{len(data)}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# -- talking to berthd -------------------------------------------------------------------------------


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


@dataclass
class Answer:
    status: int = 0
    body: bytes = b""
    head_s: float = 0.0
    total_s: float = 0.0
    timed_out: str = ""  # "", "head" or "body"


def call(sock: str, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = TIMEOUT,
         stream: bool = False) -> Answer:
    """One request on a new connection: the head within ``timeout``, then the body (up to 1 MiB)
    within ``timeout`` (a ``stream`` for STREAM_CUT after its head), then the client hangs up."""
    a = Answer()
    c = _Unix(sock, timeout)
    t0 = time.monotonic()
    try:
        c.request(method, path, body=body, headers=headers or {})
        try:
            r = c.getresponse()
        except TimeoutError:
            a.timed_out, a.total_s = "head", time.monotonic() - t0
            return a
        a.status, a.head_s = r.status, time.monotonic() - t0
        deadline = time.monotonic() + STREAM_CUT if stream else t0 + timeout
        parts: list[bytes] = []
        size = 0
        try:
            while size < (1 << 20) and time.monotonic() < deadline:
                if c.sock is not None:
                    c.sock.settimeout(max(0.05, deadline - time.monotonic()))
                chunk = r.read1(65536) if method != "HEAD" else b""
                if not chunk:
                    break
                parts.append(chunk)
                size += len(chunk)
            else:
                a.timed_out = "body" if time.monotonic() >= deadline else ""
        except TimeoutError:  # the socket's own timeout: no byte for ``timeout``
            a.timed_out = "body"
        except (http.client.IncompleteRead, ConnectionError):
            pass
        a.body = b"".join(parts)
    finally:
        c.close()
        a.total_s = a.total_s or time.monotonic() - t0
    return a


def api(sock: str, method: str, path: str, doc: object | None = None) -> tuple[int, Any]:
    body = json.dumps(doc).encode() if doc is not None else None
    a = call(sock, method, f"/v1.50{path}", body, {"Content-Type": "application/json"} if body else {})
    try:
        return a.status, json.loads(a.body) if a.body else None
    except ValueError:
        return a.status, a.body


# -- the fuzzer's own objects, and the canaries ------------------------------------------------------


def ensure_fuzz_objects(sock: str) -> str:
    """(Re)make the objects path parameters name; returns an exec ID on the fuzz container."""
    api(sock, "POST", "/images/busybox:latest/tag?repo=fuzz-img&tag=1")
    api(sock, "POST", "/volumes/create", {"Name": FUZZ_VOLUME})
    api(sock, "POST", "/networks/create", {"Name": FUZZ_NETWORK})
    status, _ = api(sock, "GET", f"/containers/{FUZZ_CONTAINER}/json")
    if status == 404:
        api(sock, "POST", f"/containers/create?name={FUZZ_CONTAINER}",
            {"Image": FUZZ_IMAGE, "Cmd": FUZZ_CMD, "HostConfig": {"NetworkMode": "none"}})
    api(sock, "POST", f"/containers/{FUZZ_CONTAINER}/unpause")
    api(sock, "POST", f"/containers/{FUZZ_CONTAINER}/start")
    status, doc = api(sock, "POST", f"/containers/{FUZZ_CONTAINER}/exec", {"Cmd": ["true"]})
    return str(doc["Id"]) if status == 201 and isinstance(doc, dict) else "fuzz-exec"


def make_canaries(sock: str) -> None:
    assert api(sock, "POST", "/images/busybox:latest/tag?repo=canary-img&tag=1")[0] == 201
    assert api(sock, "POST", "/volumes/create", {"Name": "canary-vol"})[0] == 201
    assert api(sock, "POST", "/networks/create", {"Name": "canary-net"})[0] == 201
    status, doc = api(sock, "POST", f"/containers/create?name={CANARY}", {
        "Image": "canary-img:1", "Cmd": ["sleep", "3600"],
        "HostConfig": {"Binds": ["canary-vol:/data"], "NetworkMode": "canary-net"}})
    assert status == 201, doc
    assert api(sock, "POST", f"/containers/{CANARY}/start")[0] == 204


def snapshot(sock: str) -> dict[str, Any]:
    """What must not change: the canaries' identities and state, and every object that is not
    the fuzzer's (by ID), with what identifies it."""
    _, c = api(sock, "GET", f"/containers/{CANARY}/json")
    _, img = api(sock, "GET", "/images/canary-img:1/json")
    _, vol = api(sock, "GET", "/volumes/canary-vol")
    _, net = api(sock, "GET", "/networks/canary-net")
    return {
        "container": c and {"Id": c["Id"], "Name": c["Name"], "Image": c["Image"], "Cmd": c["Config"]["Cmd"],
                            "Running": c["State"]["Running"], "Paused": c["State"]["Paused"],
                            "Pid": c["State"]["Pid"], "Mounts": [m.get("Name") for m in c["Mounts"]],
                            "Networks": sorted(c["NetworkSettings"]["Networks"])},
        "image": img and {"Id": img["Id"], "RepoTags": sorted(t for t in img["RepoTags"] if not t.startswith("fuzz"))},
        "volume": vol and {"Name": vol["Name"], "Mountpoint": vol["Mountpoint"], "CreatedAt": vol["CreatedAt"]},
        "network": net and {"Id": net["Id"], "IPAM": net["IPAM"], "Containers": sorted(net["Containers"] or {})},
    }


# -- one generated case ------------------------------------------------------------------------------


def _fuzz_name(v: Any) -> Any:
    return f"fuzz-{v}" if isinstance(v, str) else v


def confine(case: Any, exec_id: str) -> None:
    """Point the case at the fuzzer's own objects (see the module's docstring)."""
    path = case.operation.path
    pins = {"id": FUZZ_CONTAINER, "name": FUZZ_IMAGE}
    if path.startswith("/exec/"):
        pins["id"] = exec_id
    elif path.startswith("/volumes/"):
        pins["name"] = FUZZ_VOLUME
    elif path.startswith("/networks/"):
        pins["id"] = FUZZ_NETWORK
    if case.path_parameters:
        case.path_parameters = {k: pins.get(k, v) for k, v in case.path_parameters.items()}
    q = case.query if isinstance(case.query, dict) else None
    if q is not None:
        for k in ("name", "repo"):
            if k in q:
                q[k] = _fuzz_name(q[k]).lower() if k == "repo" and isinstance(q[k], str) else _fuzz_name(q[k])
        if "container" in q:
            q["container"] = FUZZ_CONTAINER
        if path in STOPPING and "t" in q and _int(q["t"]) > STOP_WAIT:
            q["t"] = STOP_WAIT
    if isinstance(case.body, dict):
        if "Name" in case.body and path in ("/volumes/create", "/networks/create"):
            case.body["Name"] = _fuzz_name(case.body["Name"])
        if "Container" in case.body:
            case.body["Container"] = FUZZ_CONTAINER


def _int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


@dataclass
class Verdict:
    method: str
    path: str
    url: str
    answer: Answer
    problems: list[str] = field(default_factory=list)


def send(sock: str, case: Any) -> Verdict:
    import requests
    kw = case.as_transport_kwargs(base_url="http://berth/v1.50")
    keep = ("method", "url", "headers", "params", "data", "json", "files")
    prepared = requests.Request(**{k: v for k, v in kw.items() if k in keep}).prepare()
    target = urlsplit(prepared.url)
    url = target.path + (f"?{target.query}" if target.query else "")
    body = prepared.body.encode() if isinstance(prepared.body, str) else prepared.body
    headers = {k: v for k, v in prepared.headers.items() if k.lower() not in ("connection", "accept-encoding")}
    a = call(sock, str(prepared.method), url, body, headers,
             TIMEOUT + STOP_WAIT if case.operation.path in STOPPING else TIMEOUT,
             case.operation.path in STREAMING)
    return judge(Verdict(case.method.upper(), case.operation.path, url, a), _documented(case))


def _documented(case: Any) -> set[int]:
    codes = set()
    for k in case.operation.definition.raw.get("responses", {}):
        if str(k).isdigit():
            codes.add(int(k))
    return codes


def judge(v: Verdict, documented: set[int]) -> Verdict:
    a = v.answer
    if a.timed_out == "head":
        v.problems.append(f"no answer within {a.total_s:.0f} s")
    elif a.timed_out == "body" and v.path not in STREAMING:
        v.problems.append(f"answer not finished within {TIMEOUT:.0f} s")
    if a.status == 500 or (a.status > 500 and a.status not in documented):
        v.problems.append(f"{a.status}: {a.body[:300]!r}")
    if a.status >= 400 and v.method != "HEAD" and not a.timed_out and not _go_websocket(v, a):
        try:
            msg = json.loads(a.body).get("message")
        except (ValueError, AttributeError):
            msg = None
        if not isinstance(msg, str):
            v.problems.append(f"{a.status} without a JSON message: {a.body[:200]!r}")
    return v


def _go_websocket(v: Verdict, a: Answer) -> bool:
    """dockerd's attach/ws answers a request that is no handshake as Go's x/net/websocket does:
    a text/plain 400, not JSON."""
    return v.path == "/containers/{id}/attach/ws" and a.status == 400 and a.body.startswith(b"Bad Request: ")


# -- a berthd in its own network namespace ------------------------------------------------------------


def netns() -> Iterator[str]:
    name = f"bfz{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def run_operation(sock: str, op: Any, examples: int, seed: int | None,
                  report: Callable[[Verdict], None]) -> int:
    """``examples`` generated cases of one operation; returns how many were sent."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    exec_id = ensure_fuzz_objects(sock)
    sent = 0

    @settings(max_examples=examples, deadline=None, database=None, derandomize=seed is None,
              suppress_health_check=list(HealthCheck), phases=(Phase.generate,))
    @given(case=op.as_strategy())
    def one(case: Any) -> None:
        nonlocal sent
        confine(case, exec_id)
        report(send(sock, case))
        sent += 1

    if seed is not None:
        one = hseed(seed)(one)
    one()
    return sent
