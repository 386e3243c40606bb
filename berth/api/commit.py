"""``POST /commit`` (a container's writable layer -> a new image) and
``GET /containers/{id}/export`` (a container's whole file system as a tar)."""

from __future__ import annotations

import msgspec

from berth.api.app import App, Routes
from berth.api.http import Request, Response, StreamResponse
from berth.api.jsonstream import stream_chunks
from berth.api.shape import json_response
from berth.errors import InvalidArgument
from berth.schema.containers import ContainerConfig


async def commit(app: App, req: Request) -> Response:
    body = await req.read(1 << 20)
    config = None
    if body.strip() and body.strip() != b"null":
        config = msgspec.json.decode(body, type=ContainerConfig)
    container = req.query.get("container", "")
    if not container:
        raise InvalidArgument("container is required")
    changes = [v for k, v in req.query_list if k == "changes"]
    img = await app.image_files.commit(container, req.query.get("repo", ""), req.query.get("tag", ""),
                                       req.query.get("comment", ""), req.query.get("author", ""), changes,
                                       config, req.flag("pause", True))
    return json_response({"Id": img.id}, 201)


async def export(app: App, req: Request) -> StreamResponse:
    return await stream_chunks(req, app.image_files.export(req.match["id"]), "application/x-tar")


ROUTES: Routes = [
    ("POST", "/commit", commit),
    ("GET", "/containers/{id}/export", export),
]
