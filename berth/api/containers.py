"""/containers lifecycle endpoints: create (adapted to the requested API version), list,
inspect, start, stop, restart, kill, wait, rename, resize, pause, update, remove, prune.
JSON shaping is in ``containers_shape``; streams and files in ``containers_io``."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import msgspec

from berth.api import containers_list
from berth.api import links as links_api
from berth.api.app import App, Routes, no_content
from berth.api.containers_shape import inspect_for_version, inspect_json, summary
from berth.api.filters import check_filters, labels_match, parse_filters, prune_labels_match
from berth.api.http import Request, Response, StreamResponse
from berth.api.shape import json_response
from berth.engine.containers import Containers, parse_signal
from berth.engine.logs import parse_time
from berth.engine.model import Container, Status
from berth.errors import BerthError, InvalidArgument
from berth.schema.containers import CreateRequest, HostConfig, decode_create

_enc = msgspec.json.Encoder()


def _matches(engine: Containers, c: Container, filters: dict[str, list[str]]) -> bool:
    for key, vals in filters.items():
        if key == "id":
            if not any(c.id.startswith(v) for v in vals):
                return False
        elif key == "name":
            if not any(re.search(v.removeprefix("/"), c.name) for v in vals):
                return False
        elif key == "status":
            for v in vals:
                if v not in [s.value for s in Status]:
                    raise InvalidArgument(f"Invalid filter 'status={v}'")
            if c.state.status.value not in vals:
                return False
        elif key == "label":
            if not labels_match(c.config.Labels or {}, vals):
                return False
        elif key == "ancestor":
            ok = False
            for v in vals:
                try:
                    if engine.images.resolve(v).id == c.image_id:
                        ok = True
                except Exception:
                    pass
            if not ok:
                return False
        elif key == "exited":
            if c.state.status != Status.EXITED or str(c.state.exit_code) not in vals:
                return False
        elif key in ("before", "since"):
            other = engine.get(vals[0])
            if key == "before" and not c.created < other.created:
                return False
            if key == "since" and not c.created > other.created:
                return False
        elif key == "is-task":
            if vals and vals[0] in ("true", "1"):
                return False
        elif key in ("volume", "network", "health", "publish", "expose", "isolation"):
            continue
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
    return True


_OPTIONS_OF = {"bind": "BindOptions", "volume": "VolumeOptions", "tmpfs": "TmpfsOptions"}


def adapt_create(req: Request, creq: CreateRequest) -> list[str]:
    """Bring a create request of the requested API version to berth's (1.50) shape, as dockerd's
    router does. -> warnings. Raises InvalidArgument."""
    hc = creq.HostConfig
    if hc is None:
        hc = creq.HostConfig = HostConfig()
    mounts = hc.Mounts or []
    if not req.version_at_least("1.42"):
        for m in mounts:  # options of another mount type were ignored; CreateMountpoint did not exist
            kind = str(m.get("Type") or "").lower()
            for t, key in _OPTIONS_OF.items():
                if t != kind:
                    m.pop(key, None)
            if isinstance(m.get("BindOptions"), dict):
                m["BindOptions"].pop("CreateMountpoint", None)
    if not req.version_at_least("1.43"):
        hc.Annotations = None
    if not req.version_at_least("1.44"):
        if creq.Healthcheck:
            creq.Healthcheck.pop("StartInterval", None)
        for m in mounts:
            bo = m.get("BindOptions")
            if isinstance(bo, dict):
                bo.pop("ReadOnlyNonRecursive", None)
                if bo.pop("ReadOnlyForceRecursive", None):
                    raise InvalidArgument("BindOptions.ReadOnlyForceRecursive needs API v1.44 or newer")
        eps = (creq.NetworkingConfig or {}).get("EndpointsConfig") or {}
        if len(eps) > 1:
            raise InvalidArgument("Container cannot be connected to network endpoints: " + ", ".join(eps))
    if not req.version_at_least("1.45"):
        for m in mounts:
            if isinstance(m.get("VolumeOptions"), dict):
                m["VolumeOptions"].pop("Subpath", None)
    if not req.version_at_least("1.46"):
        for m in mounts:
            if isinstance(m.get("TmpfsOptions"), dict):
                m["TmpfsOptions"].pop("Options", None)
    return _mac_address_bc(req, creq, hc)


def _mac_address_bc(req: Request, creq: CreateRequest, hc: HostConfig) -> list[str]:
    """Config.MacAddress was container-wide; since 1.44 a MAC belongs to an endpoint."""
    mac = creq.MacAddress
    if not mac:
        return []
    creq.MacAddress = None
    mode = hc.NetworkMode or "default"
    net = "bridge" if mode == "default" else mode
    per_net = mode not in ("host", "none") and not mode.startswith("container:")
    nc = creq.NetworkingConfig = dict(creq.NetworkingConfig or {})
    eps = nc["EndpointsConfig"] = dict(nc.get("EndpointsConfig") or {})
    key = next((k for k in (mode, net) if k in eps), None)
    if not req.version_at_least("1.44"):
        if not per_net:
            raise InvalidArgument("conflicting options: mac-address and the network mode")
        key = key or mode
        eps[key] = {**(eps.get(key) or {}), "MacAddress": mac}
        return []
    if per_net:
        if not eps:
            eps[mode] = {"MacAddress": mac}
            key = mode
        if key is None:
            raise InvalidArgument("if a container-wide MAC address is supplied, HostConfig.NetworkMode must "
                                  "match the identity of a network in NetworkSettings.Networks")
        if (eps[key] or {}).get("MacAddress") != mac:
            raise InvalidArgument("the container-wide MAC address must match the endpoint-specific MAC address "
                                  "for the main network, or be left empty")
    return ["The container-wide MacAddress field is now deprecated. It should be specified in EndpointsConfig instead."]


async def create(app: App, req: Request) -> Response:
    body = await req.read()
    if not body.strip():
        raise InvalidArgument("config cannot be empty in order to create a container")
    try:
        creq = decode_create(body)
    except msgspec.ValidationError as e:
        raise InvalidArgument(f"json: cannot unmarshal: {e}") from None
    except msgspec.DecodeError as e:
        raise InvalidArgument(f"invalid character in JSON: {e}") from None
    early = adapt_create(req, creq)
    c, warnings = app.containers.create(creq, req.query.get("name") or None)
    return json_response({"Id": c.id, "Warnings": (early + list(warnings or [])) or warnings}, 201)


async def list_containers(app: App, req: Request) -> Response:
    engine = app.containers
    filters = parse_filters(req)
    all_ = req.flag("all")
    limit = req.int_arg("limit", -1) or -1
    if req.query.get("limit") is None:
        limit = req.int_arg("n", -1) or -1
    want_size = req.flag("size")
    annotations = req.version_at_least("1.46")
    now = time.time()
    cache = containers_list.of(app)
    cache.begin(app)
    out: list[bytes] = [b"["]  # JSON pieces: entries end with a comma, the last one dropped
    n = 0
    for c in engine.list():
        if not all_ and limit <= 0 and not c.running and "status" not in filters and "exited" not in filters:
            continue
        if filters and not _matches(engine, c, filters):
            continue
        if want_size or annotations and c.host_config.Annotations:
            out.append(_enc.encode(_summary(app, c, now, want_size, annotations)))
        else:
            cache.entry(app, c, now, out)
        out.append(b",")
        n += 1
        if 0 < limit <= n:
            break
    out[-1] = b"]\n" if n else b"[]\n"
    return Response(200, b"".join(out))


def _summary(app: App, c: Container, now: float, size: bool, annotations: bool) -> dict[str, Any]:
    """An entry made afresh (sizes, or annotations, which depend on the request)."""
    d = summary(app, c, now, size)
    if c.host_config.Annotations and annotations:
        d["HostConfig"]["Annotations"] = dict(c.host_config.Annotations)
    h = app.health.get(c.id)
    if h is not None and c.state.status == Status.RUNNING:
        d["Status"] = f"{d['Status']} ({'health: starting' if h.status == 'starting' else h.status})"
    return d


async def inspect(app: App, req: Request) -> Response:
    c = app.containers.get(req.match["id"])
    out = inspect_json(app, c, req.flag("size"))
    inspect_for_version(req, app, c, out)
    return json_response(out)


async def start(app: App, req: Request) -> Response:
    await app.containers.start(req.match["id"])
    return no_content()


async def stop(app: App, req: Request) -> Response:
    await app.containers.stop(req.match["id"], req.int_arg("t"), req.query.get("signal"))
    return no_content()


async def restart(app: App, req: Request) -> Response:
    sig = req.query.get("signal") or None if req.version_at_least("1.42") else None
    await app.containers.restart(req.match["id"], req.int_arg("t"), sig)
    return no_content()


async def kill(app: App, req: Request) -> Response:
    sig = req.query.get("signal") or "SIGKILL"
    try:
        parse_signal(sig)
        await app.containers.kill(req.match["id"], sig)
    except BerthError as e:  # dockerd 25+'s router wraps every kill error so (the signal's too)
        e.args = (f"cannot kill container: {req.match['id']}: {e}",)
        raise
    return no_content()


async def delete(app: App, req: Request) -> Response:
    links_api.default_link_name(req)
    await app.containers.remove(req.match["id"], req.flag("force"), volumes=req.flag("v"))
    return no_content()


async def wait(app: App, req: Request) -> StreamResponse:
    fut = app.containers.wait_future(req.match["id"], req.query.get("condition", ""))
    resp = StreamResponse(req)
    await resp.prepare()
    st = await fut
    err = {"Message": st.error} if st.error else None
    await resp.write(_enc.encode({"Error": err, "StatusCode": st.exit_code}) + b"\n")
    await resp.finish()
    return resp


async def rename(app: App, req: Request) -> Response:
    app.containers.rename(req.match["id"], req.query.get("name", ""))
    return no_content()


async def resize(app: App, req: Request) -> Response:
    h, w = req.int_arg("h", 0) or 0, req.int_arg("w", 0) or 0
    if h < 0 or w < 0:
        raise InvalidArgument("invalid terminal size")
    await app.containers.resize(req.match["id"], h, w)
    return Response(200, b"", content_type="text/plain; charset=utf-8")


async def pause(app: App, req: Request) -> Response:
    await app.containers.pause(req.match["id"])
    return no_content()


async def unpause(app: App, req: Request) -> Response:
    await app.containers.unpause(req.match["id"])
    return no_content()


async def update(app: App, req: Request) -> Response:
    body = await req.read()
    try:
        changes = json.loads(body or b"{}")
    except ValueError as e:
        raise InvalidArgument(f"invalid character in JSON: {e}") from None
    if not isinstance(changes, dict):
        raise InvalidArgument("json: cannot unmarshal update config")
    warnings = await app.containers.update(req.match["id"], changes)
    return json_response({"Warnings": warnings})


async def prune(app: App, req: Request) -> Response:
    engine = app.containers
    filters = parse_filters(req)
    check_filters(filters, ("label", "label!", "until"))
    deleted, space = [], 0
    until = parse_time(filters["until"][0]) if "until" in filters else None
    for c in engine.list():
        if c.running or c.state.starting:
            continue
        if until is not None and (parse_time(c.created) or 0) >= until:
            continue
        if not prune_labels_match(c.config.Labels or {}, filters):
            continue
        space += engine.size_rw(c)
        await engine.remove(c.id, force=False)
        deleted.append(c.id)
    app.events.emit("container", "prune", "", {"reclaimed": str(space)})
    return json_response({"ContainersDeleted": deleted, "SpaceReclaimed": space})


ROUTES: Routes = [
    ("POST", "/containers/create", create),
    ("GET", "/containers/json", list_containers),
    ("POST", "/containers/prune", prune),
    ("GET", "/containers/{id}/json", inspect),
    ("POST", "/containers/{id}/start", start),
    ("POST", "/containers/{id}/stop", stop),
    ("POST", "/containers/{id}/restart", restart),
    ("POST", "/containers/{id}/kill", kill),
    ("POST", "/containers/{id}/wait", wait),
    ("POST", "/containers/{id}/rename", rename),
    ("POST", "/containers/{id}/resize", resize),
    ("POST", "/containers/{id}/pause", pause),
    ("POST", "/containers/{id}/update", update),
    ("POST", "/containers/{id}/unpause", unpause),
    ("DELETE", "/containers/{id}", delete),
]
