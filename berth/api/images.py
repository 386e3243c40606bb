"""/images endpoints (list, inspect, pull, push, import, save, load, tag, remove, history,
prune) and /auth. Docker's JSON for images is shaped in ``images_shape``."""

from __future__ import annotations

import asyncio
import fnmatch
import json
from collections.abc import AsyncIterator

from berth.api import images_shape as shape
from berth.api.app import App, Routes
from berth.api.filters import bool_filter, check_filters, labels_match, parse_filters
from berth.api.http import Request, Response, StreamResponse
from berth.api.jsonstream import json_stream, stream_chunks
from berth.api.shape import json_response
from berth.engine.distribution import Credentials, credentials
from berth.engine.image_records import Image
from berth.errors import InvalidArgument, NotFound


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


def _ref_match(pattern: str, tag: str) -> bool:
    if ":" not in pattern.rsplit("/", 1)[-1]:
        tag = tag.rsplit(":", 1)[0]
    return fnmatch.fnmatchcase(tag, pattern)


def _listed(app: App, img: Image, tags: list[str], filters: dict[str, list[str]]) -> bool:
    if "dangling" in filters and bool_filter(filters, "dangling", False) != (not tags):
        return False
    if "reference" in filters:
        pats = filters["reference"]
        if not any(_ref_match(p, t) for p in pats for t in tags):
            return False
    if "label" in filters:
        labels = (img.config.config.Labels if img.config.config else None) or {}
        if not labels_match(labels, filters["label"]):
            return False
    if "before" in filters or "since" in filters:
        key = "before" if "before" in filters else "since"
        ref_img = app.images.resolve(filters[key][0])
        if key == "before" and not img.created < ref_img.created:
            return False
        if key == "since" and not img.created > ref_img.created:
            return False
    if "until" in filters:
        from berth.engine.logs import parse_time
        if (parse_time(img.created) or 0) >= (parse_time(filters["until"][0]) or 0):
            return False
    return True


async def list_images(app: App, req: Request) -> Response:
    filters = parse_filters(req)
    check_filters(filters, ("dangling", "label", "before", "since", "reference", "until"))
    bool_filter(filters, "dangling", False)
    out = []
    hidden = app.build_admin.intermediate() if not req.flag("all") else set()
    for r in app.images.records():
        img = r.image
        if img.id in hidden:
            continue  # a build step's intermediate image (docker images -a shows it)
        if _listed(app, img, r.tags, filters):
            out.append(shape.summary(r, req))
    if req.flag("shared-size") and req.version_at_least("1.42"):
        shared = app.image_files.shared_sizes()
        for d in out:
            d["SharedSize"] = shared.get(str(d["Id"]), 0)
    return json_response(out)


def resolve(app: App, req: Request, key: str, since: str) -> Image:
    """The image named in the path; on API >= ``since`` the ``key`` platforms must match it."""
    img = app.images.resolve(req.match["name"])
    if req.version_at_least(since):
        check_platform(img, req.match["name"], parse_platforms(req, key))
    return img


async def inspect(app: App, req: Request) -> Response:
    return json_response(shape.inspect(app.images.record(resolve(app, req, "platform", "1.49"), layers=True), req))


async def tag(app: App, req: Request) -> Response:
    app.images.tag(req.match["name"], req.query.get("repo", ""), req.query.get("tag") or None)
    return Response(201, b"", content_type=None)


async def delete(app: App, req: Request) -> Response:
    resolve(app, req, "platforms", "1.50")
    return json_response(shape.removals(app.images.remove(req.match["name"], req.flag("force"))))


async def history(app: App, req: Request) -> Response:
    resolve(app, req, "platform", "1.48")
    return json_response(shape.history(app.images.history(req.match["name"])))


async def _request_body(req: Request) -> AsyncIterator[bytes]:
    while chunk := await req.read_chunk():
        yield chunk


async def create(app: App, req: Request) -> StreamResponse | Response:
    """``docker pull`` (fromImage) or ``docker import`` (fromSrc: a URL, or ``-`` for the body)."""
    src = req.query.get("fromSrc")
    if src is None:
        if req.query.get("fromImage"):
            creds = credentials(req.headers.get("x-registry-auth"))
            name, tag = req.query["fromImage"], req.query.get("tag", "")
            platform = req.query.get("platform") or None
            return await json_stream(req, lambda p: app.distribution.pull(name, tag, creds, platform, p),
                                     cancel_on_hangup=True)
        raise InvalidArgument("fromImage or fromSrc is required")
    changes = [v for k, v in req.query_list if k == "changes"]
    repo, tag, message = req.query.get("repo", ""), req.query.get("tag", ""), req.query.get("message", "")
    if src != "-":
        img = await app.images.import_url(src, repo, tag, changes, message)
    else:
        img = await app.images.import_tar(_request_body(req), repo, tag, changes, message)
    resp = StreamResponse(req)
    await resp.write(json.dumps({"status": img.id}).encode() + b"\r\n")
    await resp.finish()
    return resp


async def push(app: App, req: Request) -> StreamResponse:
    creds = credentials(req.headers.get("x-registry-auth"))
    name, tag = req.match["name"], req.query.get("tag", "")
    if req.version_at_least("1.46") and (wanted := parse_platforms(req, "platform")):
        check_platform(app.images.resolve(f"{name}:{tag}" if tag else name), name, wanted)
    return await json_stream(req, lambda p: app.distribution.push(name, tag, creds, p))


async def auth(app: App, req: Request) -> Response:
    body = json.loads(await req.read(1 << 20) or b"{}")
    creds = Credentials(str(body.get("username") or ""), str(body.get("password") or ""),
                        str(body.get("identitytoken") or ""), "", str(body.get("serveraddress") or ""))
    token = await asyncio.to_thread(app.distribution.login, creds)
    return json_response({"Status": "Login Succeeded", "IdentityToken": token})


async def save(app: App, req: Request) -> StreamResponse:
    names = [v for k, v in req.query_list if k == "names"] if "name" not in req.match else [req.match["name"]]
    if not names:
        raise InvalidArgument("no images to save")
    wanted = parse_platforms(req, "platform") if req.version_at_least("1.48") else []
    for n in names:
        check_platform(app.images.resolve(n), n, wanted)  # a missing image answers 404 before the tar starts
    # the whole tar is written before its first chunk: errors are plain statuses
    return await stream_chunks(req, app.image_files.save_chunks(names), "application/x-tar", empty=b"")


async def load(app: App, req: Request) -> StreamResponse:
    files = app.image_files
    with files.scratch("load-") as path:
        with open(path, "wb") as f:
            while chunk := await req.read_chunk(1 << 20):
                f.write(chunk)
        # dockerd answers 200 and reports a bad archive inside the stream; docker-py
        # raises ImageLoadError only for an "error" message there.
        return await json_stream(req, lambda p: files.load(path, lambda line: p.emit({"stream": line})),
                                 errors_in_stream=True)


async def prune(app: App, req: Request) -> Response:
    filters = parse_filters(req)
    check_filters(filters, ("dangling", "label", "label!", "until"))
    bool_filter(filters, "dangling", True)
    report = app.image_files.prune(filters)
    app.events.emit("image", "prune", "", {"reclaimed": str(report.space_reclaimed)})
    return json_response(shape.prune(report))


ROUTES: Routes = [
    ("GET", "/images/json", list_images),
    ("POST", "/images/load", load),
    ("GET", "/images/get", save),
    ("POST", "/images/prune", prune),
    ("POST", "/auth", auth),
    ("GET", "/images/{name:.+}/get", save),
    ("POST", "/images/{name:.+}/push", push),
    ("POST", "/images/create", create),
    ("GET", "/images/{name:.+}/json", inspect),
    ("GET", "/images/{name:.+}/history", history),
    ("POST", "/images/{name:.+}/tag", tag),
    ("DELETE", "/images/{name:.+}", delete),
]
