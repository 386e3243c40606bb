"""/build (the classic builder's API: a context tar in, a JSON progress stream out),
/build/prune, and the build cache rows of /system/df.

The context body is written to disk as it arrives (never held in memory), then extracted in
a thread. The build runs as its own task; a client that hangs up cancels it (its container
is killed and removed, its temp dir deleted). An error before the first message is an HTTP
error status (as dockerd answers a bad Dockerfile); after it, the stream's last message.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from berth.api.app import App, Routes
from berth.api.filters import parse_filters
from berth.api.http import Request, Response, StreamResponse
from berth.api.jsonstream import json_stream
from berth.api.shape import json_response
from berth.build.service import BuildOptions, Builder
from berth.build.output import BuildFailed
from berth.errors import InvalidArgument
from berth.oci import reference

if TYPE_CHECKING:
    from berth.build.context import BuildContext
    from berth.registry.client.auth import Credentials

log = logging.getLogger("berth.api.build")


def _json_arg(req: Request, name: str, default: Any) -> Any:
    v = req.query.get(name)
    if not v:
        return default
    try:
        return json.loads(v)
    except ValueError:
        raise InvalidArgument(f"invalid {name} parameter: {v}") from None


def _b64json(v: str) -> Any:
    v = v.strip()
    try:
        return json.loads(base64.urlsafe_b64decode(v + "=" * (-len(v) % 4)) or b"{}")
    except ValueError:
        raise InvalidArgument("invalid X-Registry-Config header") from None


def _creds(header: str | None) -> Callable[[str], Credentials | None]:
    """``X-Registry-Config``: {registry: auth config} -> a lookup by registry domain."""
    from berth.registry.client.auth import Credentials  # lazy: start-up time
    doc = _b64json(header) if header else {}
    table: dict[str, Credentials] = {}
    if isinstance(doc, dict):
        for k, v in doc.items():
            if not isinstance(v, dict):
                continue
            host = k.split("://", 1)[-1].split("/", 1)[0]
            if host in ("index.docker.io", "registry-1.docker.io"):
                host = "docker.io"
            table[host] = Credentials(str(v.get("username") or ""), str(v.get("password") or ""),
                                      str(v.get("identitytoken") or ""), str(v.get("registrytoken") or ""),
                                      str(v.get("serveraddress") or k))
    return lambda domain: table.get(domain)


def options(req: Request) -> BuildOptions:
    q = req.query
    tags = [v for k, v in req.query_list if k == "t" and v]
    for t in tags:
        try:
            ref = reference.parse(t)
        except InvalidArgument:
            raise InvalidArgument(f"invalid reference format: {t}") from None
        if ref.digest:
            raise InvalidArgument(f"invalid reference format: {t}")
    extra = [v for k, v in req.query_list if k == "extrahosts" and v]
    hosts = [h for e in extra for h in e.replace(",", " ").split()]
    build_args = _json_arg(req, "buildargs", {})
    labels = _json_arg(req, "labels", {})
    cache_from = _json_arg(req, "cachefrom", [])
    raw_secrets = _json_arg(req, "berth-secrets", {})
    if not isinstance(build_args, dict) or not isinstance(labels, dict) or not isinstance(cache_from, list):
        raise InvalidArgument("invalid buildargs, labels or cachefrom parameter")
    secrets = {str(k): base64.b64decode(str(v)) for k, v in (raw_secrets or {}).items()}
    return BuildOptions(
        dockerfile=q.get("dockerfile") or "Dockerfile", tags=tags, extra_hosts=hosts, quiet=req.flag("q"),
        nocache=req.flag("nocache"), cache_from=[str(c) for c in cache_from], pull=req.flag("pull"),
        rm=req.flag("rm", True), forcerm=req.flag("forcerm"), memory=req.int_arg("memory", 0) or 0,
        memswap=req.int_arg("memswap", 0) or 0, cpushares=req.int_arg("cpushares", 0) or 0,
        cpusetcpus=q.get("cpusetcpus", ""), cpuperiod=req.int_arg("cpuperiod", 0) or 0,
        cpuquota=req.int_arg("cpuquota", 0) or 0, shmsize=req.int_arg("shmsize", 0) or 0,
        build_args={str(k): (None if v is None else str(v)) for k, v in build_args.items()},
        labels={str(k): str(v) for k, v in labels.items()}, network_mode=q.get("networkmode") or "default",
        platform=q.get("platform", ""), target=q.get("target", ""), secrets=secrets,
        creds=_creds(req.headers.get("x-registry-config")))


async def _receive(req: Request, path: Path) -> None:
    with open(path, "wb") as f:
        while chunk := await req.read_chunk(1 << 20):
            f.write(chunk)


async def build(app: App, req: Request) -> StreamResponse | Response:
    from berth.build.context import load  # the context's loaders (urllib): at the first build

    opts = options(req)
    bid, work = app.builder.new_dir()
    try:
        archive = work / "context.tar"
        await _receive(req, archive)
        bctx = await asyncio.to_thread(load, work, archive, req.query.get("remote", ""), opts.dockerfile)
        return await _stream(req, app.builder, bctx, opts, bid, work)
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)


async def prune(app: App, req: Request) -> Response:
    keep = req.int_arg("keep-storage", 0) or req.int_arg("reserved-space", 0) or 0
    return json_response(app.build_admin.prune(req.flag("all"), keep, parse_filters(req)))


async def cancel(app: App, req: Request) -> Response:
    """The classic builder stops a build when its client hangs up; there is nothing to cancel."""
    return Response(200, b"", None)


ROUTES: Routes = [
    ("POST", "/build", build),
    ("POST", "/build/prune", prune),
    ("POST", "/build/cancel", cancel),
]


async def _stream(req: Request, builder: Builder, bctx: BuildContext, opts: BuildOptions, bid: str,
                  work: Path) -> StreamResponse:
    """The build's progress stream; a failed step is a stream message (with its exit code)
    even when it is the first, as dockerd sends it."""
    def detail(exc: BaseException) -> dict[str, Any] | None:
        if not isinstance(exc, BuildFailed):
            return None
        return {"message": str(exc)} if exc.code is None else {"message": str(exc), "code": exc.code}

    return await json_stream(req, lambda progress: builder.build(bctx, opts, progress.emit, bid, work),
                             cancel_on_hangup=True, detail=detail)
