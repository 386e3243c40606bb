"""/images endpoints."""

from __future__ import annotations

import fnmatch
import json
from typing import AsyncIterator

from berth.api.http import Request, Response, Router, StreamResponse
from berth.api.system import json_response
from berth.engine.logs import parse_time
from berth.errors import InvalidArgument, NotFound, Unsupported
from berth.image.store import Image
from berth.oci import reference


def parse_filters(req: Request) -> dict[str, list[str]]:
    raw = req.query.get("filters")
    if not raw:
        return {}
    try:
        f = json.loads(raw)
    except ValueError:
        raise InvalidArgument("invalid filter") from None
    if not isinstance(f, dict):
        raise InvalidArgument("invalid filter")
    out: dict[str, list[str]] = {}
    for k, v in f.items():
        # Two forms: {"k": ["v"]} and the older {"k": {"v": true}}.
        out[k] = list(v.keys()) if isinstance(v, dict) else list(v)
    return out


def image_summary(store, img: Image) -> dict[str, object]:
    tags = store.tags_of(img.id)
    cfg = img.config.config
    return {"Containers": -1, "Created": int(parse_time(img.created) or 0), "Id": img.id,
            "Labels": (cfg.Labels if cfg else None) or None, "ParentId": "",
            "RepoDigests": [] if tags else ["<none>@<none>"],
            "RepoTags": tags or ["<none>:<none>"], "SharedSize": -1, "Size": img.size, "VirtualSize": img.size}


def image_inspect(store, img: Image) -> dict[str, object]:
    from berth.api.containers import config_json
    c = img.config
    cfg = c.config
    layers = [str(p) for p in store.lower_dirs(img)]
    return {
        "Id": img.id, "RepoTags": store.tags_of(img.id), "RepoDigests": [], "Parent": "",
        "Comment": c.comment or (c.history[-1].comment if c.history else "") or "",
        "Created": img.created, "Container": "",
        "ContainerConfig": config_json(None), "DockerVersion": c.docker_version or "",
        "Author": c.author or "", "Config": config_json(cfg) if cfg else None,
        "Architecture": c.architecture, "Os": c.os, "Size": img.size, "VirtualSize": img.size,
        "GraphDriver": {"Data": {"LowerDir": ":".join(layers[1:]) or None, "MergedDir": None,
                                 "UpperDir": layers[0] if layers else None, "WorkDir": None} if layers else {},
                        "Name": "overlay2"},
        "RootFS": {"Type": "layers", "Layers": list(c.rootfs.diff_ids)},
        "Metadata": {"LastTagTime": img.tagged or "0001-01-01T00:00:00Z"},
    }


def routes(router: Router, ctx: object) -> None:
    store = ctx.image_store  # type: ignore[attr-defined]
    images = ctx.images  # type: ignore[attr-defined]

    async def list_images(req: Request) -> Response:
        filters = parse_filters(req)
        out = []
        for img in store.list():
            tags = store.tags_of(img.id)
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
                if not all(_label_match(labels, lf) for lf in filters["label"]):
                    continue
            if "before" in filters or "since" in filters:
                key = "before" if "before" in filters else "since"
                ref_img = store.resolve(filters[key][0])
                if key == "before" and not img.created < ref_img.created:
                    continue
                if key == "since" and not img.created > ref_img.created:
                    continue
            out.append(image_summary(store, img))
        return json_response(out)

    async def inspect(req: Request) -> Response:
        return json_response(image_inspect(store, store.resolve(req.match["name"])))

    async def tag(req: Request) -> Response:
        images.tag(req.match["name"], req.query.get("repo", ""), req.query.get("tag") or None)
        return Response(201, b"", content_type=None)

    async def delete(req: Request) -> Response:
        return json_response(images.remove(req.match["name"], req.flag("force")))

    async def history(req: Request) -> Response:
        return json_response(images.history(req.match["name"]))

    async def create(req: Request) -> StreamResponse | Response:
        src = req.query.get("fromSrc")
        if src is None:
            if req.query.get("fromImage"):
                pull = getattr(ctx, "pull", None)
                if pull is None:
                    ref = req.query["fromImage"] + (f":{req.query['tag']}" if req.query.get("tag") else "")
                    try:
                        name = reference.parse(ref).familiar
                    except InvalidArgument:
                        name = ref
                    raise _PullUnavailable(f"pull access denied for {name}: registry access is not "
                                           "available in this build of berth")
                return await pull(req)
            raise InvalidArgument("fromImage or fromSrc is required")
        if src != "-":
            raise Unsupported("import from a URL is not supported yet")
        changes = [v for k, v in req.query_list if k == "changes"]

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

    router.add("GET", "/images/json", list_images)
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


def _label_match(labels: dict[str, str], f: str) -> bool:
    k, eq, v = f.partition("=")
    if not eq:
        return k in labels
    return labels.get(k) == v
