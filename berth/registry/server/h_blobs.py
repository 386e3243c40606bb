"""Blob handlers: HEAD/GET (with Range, served by sendfile) and DELETE."""

from __future__ import annotations

from aiohttp import web

from berth.registry.server.context import Registry
from berth.registry.server.errors import Unsupported
from berth.registry.server.names import parse_digest


async def get(request: web.Request, reg: Registry, params: dict[str, str]) -> web.StreamResponse:
    digest = params["digest"]
    parse_digest(digest)
    size = reg.storage.stat_blob(params["name"], digest)
    headers = {"Docker-Content-Digest": digest, "Content-Type": "application/octet-stream",
               "Accept-Ranges": "bytes", "ETag": f'"{digest}"',
               "Cache-Control": "max-age=31536000"}
    if request.method == "HEAD":
        headers["Content-Length"] = str(size)
        return web.Response(status=200, headers=headers)
    return web.FileResponse(reg.storage.blob_path(digest), chunk_size=1 << 18, headers=headers)


async def delete(request: web.Request, reg: Registry, params: dict[str, str]) -> web.StreamResponse:
    if not reg.config.storage.delete:
        raise Unsupported("deletion is disabled in this registry's config")
    digest = params["digest"]
    parse_digest(digest)
    reg.storage.unlink_blob(params["name"], digest)
    return web.Response(status=202, headers={"Docker-Content-Digest": digest,
                                             "Content-Length": "0"})
