"""/volumes endpoints, and Docker's JSON for a volume. Each handler parses, calls the engine,
and shapes the result."""

from __future__ import annotations

import json

from berth.api.app import App, Routes, no_content
from berth.api.filters import bool_filter, check_filters, labels_match, parse_filters, prune_labels_match
from berth.api.http import Request, Response
from berth.api.shape import json_response
from berth.engine.volumes import Volume, Volumes, VolumeUsage
from berth.errors import InvalidArgument


def volume_json(vols: Volumes, v: Volume) -> dict[str, object]:
    return {"CreatedAt": v.created, "Driver": v.driver, "Labels": v.labels or None,
            "Mountpoint": str(vols.data_dir(v.name)), "Name": v.name, "Options": v.options or None,
            "Scope": "local"}


def usage_json(vols: Volumes, u: VolumeUsage) -> dict[str, object]:
    """One of ``/system/df``'s Volumes."""
    return {**volume_json(vols, u.volume), "UsageData": {"Size": u.size, "RefCount": u.ref_count}}


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


async def list_(app: App, req: Request) -> Response:
    vols = app.volumes
    filters = parse_filters(req)
    out = [volume_json(vols, v) for v in vols.list() if matches(vols, v, filters)]
    return json_response({"Volumes": out, "Warnings": []})


async def create(app: App, req: Request) -> Response:
    raw = await req.read()
    try:
        b = json.loads(raw or b"{}")
    except ValueError as e:
        raise InvalidArgument(f"invalid JSON: {e}") from None
    v = app.volumes.create(b.get("Name") or "", b.get("Driver") or "local", b.get("Labels") or {},
                           b.get("DriverOpts") or {})
    return json_response(volume_json(app.volumes, v), 201)


async def inspect(app: App, req: Request) -> Response:
    return json_response(volume_json(app.volumes, app.volumes.get(req.match["name"])))


async def delete(app: App, req: Request) -> Response:
    app.volumes.remove(req.match["name"], force=req.flag("force"))
    return no_content()


async def prune(app: App, req: Request) -> Response:
    vols = app.volumes
    filters = parse_filters(req)
    check_filters(filters, ("label", "label!", "all"))
    # API >= 1.42 prunes only anonymous volumes unless all=true.
    all_ = bool_filter(filters, "all", False) or not req.version_at_least("1.42")

    def match(v: Volume) -> bool:
        if not all_ and "com.docker.volume.anonymous" not in v.labels:
            return False
        return prune_labels_match(v.labels, filters)

    deleted, space = vols.prune(match)
    app.events.emit("volume", "prune", "", {"reclaimed": str(space)})
    return json_response({"VolumesDeleted": deleted, "SpaceReclaimed": space})


ROUTES: Routes = [
    ("GET", "/volumes", list_),
    ("POST", "/volumes/create", create),
    ("POST", "/volumes/prune", prune),
    ("GET", "/volumes/{name}", inspect),
    ("DELETE", "/volumes/{name}", delete),
]
