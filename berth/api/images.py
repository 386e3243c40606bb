"""/images endpoints (list, inspect, pull, push, import, save, load, tag, remove, history,
prune), /auth and /system/df."""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import tempfile
from typing import Any, AsyncIterator, Awaitable, Callable

from berth.api.filters import labels_match, parse_filters
from berth.api.http import Request, Response, Router, StreamResponse
from berth.api.system import json_response
from berth.engine.logs import parse_time
from berth.errors import InvalidArgument, NotFound, Unsupported
from berth.image.store import Image
from berth.oci import reference
from berth.registry.client.auth import decode_registry_auth


def go_json(msg: dict[str, Any]) -> bytes:
    """One JSON message as Go's encoder writes it (``<``, ``>``, ``&`` escaped)."""
    s = json.dumps(msg, separators=(",", ":"))
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


async def json_stream(req: Request, work: Callable[[Any], Awaitable[Any]],
                      errors_in_stream: bool = False) -> StreamResponse:
    """Run ``work(progress)`` and stream its JSON messages; the response starts with the
    first message, so an error before it gets a plain status (as Docker's pull answers 404).
    An error after it is the stream's last message (``errorDetail``). With
    ``errors_in_stream`` every error is a stream message under a 200 (Docker's load)."""
    from berth.engine.distribution import Progress

    loop = asyncio.get_running_loop()
    q: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.ensure_future(work(Progress(loop, q.put_nowait)))
    resp: StreamResponse | None = StreamResponse(req) if errors_in_stream else None
    gone = False

    async def send(msg: dict[str, Any]) -> None:
        nonlocal resp, gone
        if gone:
            return
        if resp is None:
            resp = StreamResponse(req)
        try:
            await resp.write(go_json(msg) + b"\r\n")
        except (ConnectionError, OSError):
            gone = True
    while True:
        get = asyncio.ensure_future(q.get())
        done, _ = await asyncio.wait({get, task}, return_when=asyncio.FIRST_COMPLETED)
        if get in done:
            await send(get.result())
            continue
        get.cancel()
        await asyncio.sleep(0)  # let call_soon_threadsafe messages land
        while not q.empty():
            await send(q.get_nowait())
        break
    exc = task.exception()
    if exc is not None:
        if resp is None:
            raise exc
        await send({"errorDetail": {"message": str(exc)}, "error": str(exc)})
    if resp is None:
        resp = StreamResponse(req)
    if not gone:
        try:
            await resp.finish()
        except (ConnectionError, OSError):
            pass
    return resp


def image_summary(store, img: Image, req: Request | None = None) -> dict[str, object]:
    tags = store.tags_of(img.id)
    digests = store.repo_digests_of(img.id)
    cfg = img.config.config
    new = req is None or req.version_at_least("1.43")  # untagged: [] rather than "<none>:<none>"
    d: dict[str, object] = {
        "Containers": -1, "Created": int(parse_time(img.created) or 0), "Id": img.id,
        "Labels": (cfg.Labels if cfg else None) or None, "ParentId": store.parent_of(img.id),
        "RepoDigests": digests or ([] if tags or new else ["<none>@<none>"]),
        "RepoTags": tags or ([] if new else ["<none>:<none>"]), "SharedSize": -1, "Size": img.size}
    if req is not None and not req.version_at_least("1.44"):
        d["VirtualSize"] = img.size  # dropped in 1.44
    return d


# Image configs carry only what a build sets; API 1.50 stops echoing the container-only fields.
_CONTAINER_ONLY = ("Hostname", "Domainname", "AttachStdin", "AttachStdout", "AttachStderr", "Tty",
                   "OpenStdin", "StdinOnce", "Image", "NetworkDisabled", "MacAddress", "StopTimeout")


def _container_config(raw: dict[str, Any] | None) -> dict[str, object]:
    """A commit's ContainerConfig (the container's Config then), in the shape Config has."""
    import msgspec

    from berth.api.containers import config_json
    from berth.schema.containers import ContainerConfig
    try:
        cfg = msgspec.convert(raw, ContainerConfig) if raw else None
    except msgspec.ValidationError:
        cfg = None
    return config_json(cfg)


def image_inspect(store, img: Image, req: Request | None = None) -> dict[str, object]:
    from berth.api.containers import config_json
    c = img.config
    cfg = c.config
    layers = [str(p) for p in store.lower_dirs(img)]
    config = config_json(cfg) if cfg else None
    if config is not None and (req is None or req.version_at_least("1.50")):
        for k in _CONTAINER_ONLY:
            config.pop(k, None)
    d: dict[str, object] = {
        "Id": img.id, "RepoTags": store.tags_of(img.id), "RepoDigests": store.repo_digests_of(img.id),
        "Parent": store.parent_of(img.id),
        "Comment": c.comment or (c.history[-1].comment if c.history else "") or "",
        "Created": img.created, "Container": c.container or "",
        "ContainerConfig": _container_config(c.container_config), "DockerVersion": c.docker_version or "",
        "Author": c.author or "", "Config": config,
        "Architecture": c.architecture, "Os": c.os, "Size": img.size, "VirtualSize": img.size,
        "GraphDriver": {"Data": {"LowerDir": ":".join(layers[1:]) or None, "MergedDir": None,
                                 "UpperDir": layers[0] if layers else None, "WorkDir": None} if layers else {},
                        "Name": "overlay2"},
        "RootFS": {"Type": "layers", "Layers": list(c.rootfs.diff_ids)},
        "Metadata": {"LastTagTime": img.tagged or "0001-01-01T00:00:00Z"},
    }
    if c.variant:
        d["Variant"] = c.variant
    if req is None or req.version_at_least("1.44"):
        del d["VirtualSize"]
        if not img.created:
            del d["Created"]
    if req is None or req.version_at_least("1.45"):
        del d["Container"], d["ContainerConfig"]
    return d


def parse_platforms(req: Request, key: str) -> list[dict[str, str]]:
    """``platform`` query values: JSON-encoded OCI platforms (as the CLI sends) or os/arch[/variant]."""
    out = []
    for k, v in req.query_list:
        if k != key or not v:
            continue
        try:
            p = json.loads(v)
        except ValueError:
            parts = v.split("/")
            p = {"os": parts[0], "architecture": parts[1] if len(parts) > 1 else "",
                 "variant": parts[2] if len(parts) > 2 else ""}
        if not isinstance(p, dict):
            raise InvalidArgument(f"invalid platform: {v}")
        out.append({"os": str(p.get("os") or ""), "architecture": str(p.get("architecture") or ""),
                    "variant": str(p.get("variant") or "")})
    return out


def _platform_str(p: dict[str, str]) -> str:
    return "/".join(x for x in (p["os"], p["architecture"], p["variant"]) if x)


def check_platform(img: Image, name: str, wanted: list[dict[str, str]]) -> None:
    """berth keeps one platform per image: a request for another one is a 404, as dockerd words it."""
    c = img.config
    have = {"os": c.os or "linux", "architecture": c.architecture or "", "variant": c.variant or ""}
    for p in wanted:
        if ((not p["os"] or p["os"] == have["os"]) and (not p["architecture"] or p["architecture"] == have["architecture"])
                and (not p["variant"] or not have["variant"] or p["variant"] == have["variant"])):
            continue
        raise NotFound(f"image with reference {name} was found but does not provide the specified platform "
                       f"({_platform_str(p)})")


def routes(router: Router, ctx: object) -> None:
    store = ctx.image_store  # type: ignore[attr-defined]
    images = ctx.images  # type: ignore[attr-defined]
    dist = ctx.distribution  # type: ignore[attr-defined]
    files = ctx.image_files  # type: ignore[attr-defined]

    async def list_images(req: Request) -> Response:
        filters = parse_filters(req)
        out = []
        admin = getattr(ctx, "build_admin", None)
        hidden = admin.intermediate() if admin is not None and not req.flag("all") else set()
        for img in store.list():
            tags = store.tags_of(img.id)
            if img.id in hidden:
                continue  # a build step's intermediate image (docker images -a shows it)
            if "dangling" in filters:
                want = filters["dangling"][0].lower() in ("true", "1")
                if want != (not tags):
                    continue
            if "reference" in filters:
                pats = filters["reference"]
                if not any(_ref_match(p, t) for p in pats for t in tags):
                    continue
            if "label" in filters:
                labels = (img.config.config.Labels if img.config.config else None) or {}
                if not labels_match(labels, filters["label"]):
                    continue
            if "before" in filters or "since" in filters:
                key = "before" if "before" in filters else "since"
                ref_img = store.resolve(filters[key][0])
                if key == "before" and not img.created < ref_img.created:
                    continue
                if key == "since" and not img.created > ref_img.created:
                    continue
            out.append(image_summary(store, img, req))
        if req.flag("shared-size") and req.version_at_least("1.42"):
            shared = files.shared_sizes()
            for d in out:
                d["SharedSize"] = shared.get(str(d["Id"]), 0)
        return json_response(out)

    def resolve(req: Request, key: str, since: str) -> Image:
        """The image named in the path; on API >= ``since`` the ``key`` platforms must match it."""
        img = store.resolve(req.match["name"])
        if req.version_at_least(since):
            check_platform(img, req.match["name"], parse_platforms(req, key))
        return img

    async def inspect(req: Request) -> Response:
        return json_response(image_inspect(store, resolve(req, "platform", "1.49"), req))

    async def tag(req: Request) -> Response:
        images.tag(req.match["name"], req.query.get("repo", ""), req.query.get("tag") or None)
        return Response(201, b"", content_type=None)

    async def delete(req: Request) -> Response:
        resolve(req, "platforms", "1.50")
        return json_response(images.remove(req.match["name"], req.flag("force")))

    async def history(req: Request) -> Response:
        resolve(req, "platform", "1.48")
        return json_response(images.history(req.match["name"]))

    async def create(req: Request) -> StreamResponse | Response:
        src = req.query.get("fromSrc")
        if src is None:
            if req.query.get("fromImage"):
                creds = decode_registry_auth(req.headers.get("x-registry-auth"))
                name, tag = req.query["fromImage"], req.query.get("tag", "")
                platform = req.query.get("platform") or None
                return await json_stream(req, lambda p: dist.pull(name, tag, creds, platform, p))
            raise InvalidArgument("fromImage or fromSrc is required")
        changes = [v for k, v in req.query_list if k == "changes"]
        if src != "-":
            img = await images.import_url(src, req.query.get("repo", ""), req.query.get("tag", ""),
                                          changes, req.query.get("message", ""))
            resp = StreamResponse(req)
            await resp.write(json.dumps({"status": img.id}).encode() + b"\r\n")
            await resp.finish()
            return resp

        async def body() -> AsyncIterator[bytes]:
            while True:
                chunk = await req.read_chunk()
                if not chunk:
                    return
                yield chunk

        resp = StreamResponse(req)
        img = await images.import_tar(body(), req.query.get("repo", ""), req.query.get("tag", ""),
                                      changes, req.query.get("message", ""))
        await resp.write(json.dumps({"status": img.id}).encode() + b"\r\n")
        await resp.finish()
        return resp

    async def push(req: Request) -> StreamResponse:
        creds = decode_registry_auth(req.headers.get("x-registry-auth"))
        name, tag = req.match["name"], req.query.get("tag", "")
        if req.version_at_least("1.46") and (wanted := parse_platforms(req, "platform")):
            check_platform(store.resolve(f"{name}:{tag}" if tag else name), name, wanted)
        return await json_stream(req, lambda p: dist.push(name, tag, creds, p))

    async def auth(req: Request) -> Response:
        from berth.registry.client.auth import Credentials
        body = json.loads(await req.read(1 << 20) or b"{}")
        creds = Credentials(str(body.get("username") or ""), str(body.get("password") or ""),
                            str(body.get("identitytoken") or ""), "", str(body.get("serveraddress") or ""))
        return json_response(await asyncio.to_thread(dist.login, creds))

    async def save(req: Request) -> StreamResponse:
        names = [v for k, v in req.query_list if k == "names"] if "name" not in req.match else [req.match["name"]]
        if not names:
            raise InvalidArgument("no images to save")
        wanted = parse_platforms(req, "platform") if req.version_at_least("1.48") else []
        for n in names:
            check_platform(store.resolve(n), n, wanted)  # a missing image answers 404 before the tar starts
        fd, path = tempfile.mkstemp(dir=str(ctx.data.image_tmp), prefix="save-")  # type: ignore[attr-defined]
        try:
            with os.fdopen(fd, "wb") as f:
                await asyncio.to_thread(files.save, names, f)
            resp = StreamResponse(req, content_type="application/x-tar")
            with open(path, "rb") as f:
                while b := await asyncio.to_thread(f.read, 1 << 20):
                    await resp.write(b)
            await resp.finish()
            return resp
        finally:
            os.unlink(path)

    async def load(req: Request) -> StreamResponse:
        fd, path = tempfile.mkstemp(dir=str(ctx.data.image_tmp), prefix="load-")  # type: ignore[attr-defined]
        try:
            with os.fdopen(fd, "wb") as f:
                while chunk := await req.read_chunk(1 << 20):
                    f.write(chunk)
            # dockerd answers 200 and reports a bad archive inside the stream; docker-py
            # raises ImageLoadError only for an "error" message there.
            return await json_stream(req, lambda p: files.load(path, p.emit), errors_in_stream=True)
        finally:
            os.unlink(path)

    async def prune(req: Request) -> Response:
        return json_response(files.prune(parse_filters(req)))

    async def system_df(req: Request) -> Response:
        from berth.api.containers import summary
        import time as _time
        now = _time.time()
        out = files.disk_usage(lambda img: image_summary(store, img, req),
                               lambda c: summary(ctx.containers, c, now, True))  # type: ignore[attr-defined]
        out["Volumes"] = await asyncio.to_thread(ctx.volumes.disk_usage)  # type: ignore[attr-defined]
        admin = getattr(ctx, "build_admin", None)
        if admin is not None:
            out["BuildCache"] = admin.rows()
        if not req.version_at_least("1.42"):
            out["BuilderSize"] = sum(int(r["Size"]) for r in out.get("BuildCache") or [])
        types = [v for k, v in req.query_list if k == "type"] if req.version_at_least("1.42") else []
        for t in types:
            if t not in ("container", "image", "volume", "build-cache"):
                raise InvalidArgument(f"unknown object type: {t}")
        if types:  # only the asked-for object types are computed and returned
            keep = {"container": ["Containers"], "image": ["LayersSize", "Images"], "volume": ["Volumes"],
                    "build-cache": ["BuildCache"]}
            wanted = {k for t in types for k in keep[t]}
            out = {k: v for k, v in out.items() if k in wanted}
        return json_response(out)

    router.add("GET", "/images/json", list_images)
    router.add("POST", "/images/load", load)
    router.add("GET", "/images/get", save)
    router.add("POST", "/images/prune", prune)
    router.add("POST", "/auth", auth)
    router.add("GET", "/system/df", system_df)
    router.add("GET", "/images/{name:.+}/get", save)
    router.add("POST", "/images/{name:.+}/push", push)
    router.add("POST", "/images/create", create)
    router.add("GET", "/images/{name:.+}/json", inspect)
    router.add("GET", "/images/{name:.+}/history", history)
    router.add("POST", "/images/{name:.+}/tag", tag)
    router.add("DELETE", "/images/{name:.+}", delete)


class _PullUnavailable(NotFound):
    pass


def _ref_match(pattern: str, tag: str) -> bool:
    if ":" not in pattern.rsplit("/", 1)[-1]:
        tag = tag.rsplit(":", 1)[0]
    return fnmatch.fnmatchcase(tag, pattern)
