"""/volumes endpoints. Each handler parses, calls the engine, and shapes Docker's JSON."""

from __future__ import annotations

import json

from berth.api.http import Request, Response, Router
from berth.api.filters import labels_match, parse_filters
from berth.api.system import json_response
from berth.engine.volumes import Volume, Volumes
from berth.errors import InvalidArgument


def matches(vols: Volumes, v: Volume, filters: dict[str, list[str]]) -> bool:
    for key, vals in filters.items():
        if key == "name":
            if not any(x in v.name for x in vals):
                return False
        elif key == "label":
            if not labels_match(v.labels, vals):
                return False
        elif key == "label!":
            if any(labels_match(v.labels, [x]) for x in vals):
                return False
        elif key == "dangling":
            want = vals[0] in ("true", "1")
            if want != (not vols.users(v.name)):
                return False
        elif key == "driver":
            if v.driver not in vals:
                return False
        elif key == "all":
            continue
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
    return True


def routes(router: Router, ctx: object) -> None:
    vols: Volumes = ctx.volumes  # type: ignore[attr-defined]

    async def list_(req: Request) -> Response:
        filters = parse_filters(req)
        out = [vols.volume_json(v) for v in vols.list() if matches(vols, v, filters)]
        return json_response({"Volumes": out, "Warnings": []})

    async def create(req: Request) -> Response:
        raw = await req.read()
        try:
            b = json.loads(raw or b"{}")
        except ValueError as e:
            raise InvalidArgument(f"invalid JSON: {e}") from None
        v = vols.create(b.get("Name") or "", b.get("Driver") or "local", b.get("Labels") or {},
                        b.get("DriverOpts") or {})
        return json_response(vols.volume_json(v), 201)

    async def inspect(req: Request) -> Response:
        return json_response(vols.volume_json(vols.get(req.match["name"])))

    async def delete(req: Request) -> Response:
        vols.remove(req.match["name"], force=req.flag("force"))
        return Response(204, b"", content_type=None)

    async def prune(req: Request) -> Response:
        filters = parse_filters(req)
        # API >= 1.42 prunes only anonymous volumes unless all=true.
        all_ = bool(filters.get("all")) and filters["all"][0] in ("true", "1") or not req.version_at_least("1.42")
        f = {k: v for k, v in filters.items() if k in ("label", "label!")}

        def match(v: Volume) -> bool:
            if not all_ and "com.docker.volume.anonymous" not in v.labels:
                return False
            return matches(vols, v, f)

        deleted, space = vols.prune(match)
        return json_response({"VolumesDeleted": deleted, "SpaceReclaimed": space})

    router.add("GET", "/volumes", list_)
    router.add("POST", "/volumes/create", create)
    router.add("POST", "/volumes/prune", prune)
    router.add("GET", "/volumes/{name}", inspect)
    router.add("DELETE", "/volumes/{name}", delete)
