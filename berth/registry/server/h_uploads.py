"""Blob upload handlers: start (POST, with monolithic ``?digest=`` and cross-repository
``?mount=&from=``), chunked or streamed PATCH, status GET, finishing PUT, cancelling DELETE."""

from __future__ import annotations

import asyncio
import re
import time

from aiohttp import web

from berth.registry.server import auth as authz
from berth.registry.server._body import stream_into
from berth.registry.server.context import Registry, authenticate
from berth.registry.server.errors import (DigestInvalid, RangeInvalid, RegistryError,
                                          SizeInvalid)
from berth.registry.server.names import check_name, parse_digest
from berth.registry.server.uploads import Upload

_RANGE = re.compile(r"(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?")


def _upload_headers(name: str, up: Upload) -> dict[str, str]:
    return {"Location": f"/v2/{name}/blobs/uploads/{up.uuid}",
            "Range": f"0-{max(up.offset - 1, 0)}",
            "Docker-Upload-UUID": up.uuid, "Content-Length": "0"}


def _created(name: str, digest: str) -> web.Response:
    return web.Response(status=201, headers={
        "Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest,
        "Content-Length": "0"})


async def start(request: web.Request, reg: Registry, params: dict[str, str]) -> web.StreamResponse:
    name = params["name"]
    query = request.query
    mount, source = query.get("mount"), query.get("from")
    if mount and source:
        parse_digest(mount)
        if await _may_pull(request, reg, check_name(source)) and \
                reg.storage.linked(source, mount) and reg.storage.blob_size(mount) is not None:
            reg.storage.link_blob(name, mount)
            return _created(name, mount)
    digest = query.get("digest")
    up = reg.uploads.create(name)
    if digest is None:
        return web.Response(status=202, headers=_upload_headers(name, up))
    parse_digest(digest)
    async with up.lock:
        try:
            await stream_into(request, up, reg.executor)
        except RegistryError:
            reg.uploads.cancel(up)
            raise
        await _finish(reg, up, digest)
    return _created(name, digest)


async def _may_pull(request: web.Request, reg: Registry, source: str) -> bool:
    """Whether the requester may read source (a mount never reveals a blob otherwise)."""
    try:
        _, granted = await authenticate(
            request, reg, authz.Scope("repository", source, frozenset({"pull"})))
    except RegistryError:
        return False
    return "pull" in granted or "*" in granted


def _check_range(request: web.Request, up: Upload) -> None:
    value = request.headers.get("Content-Range")
    if value is None:
        return
    m = _RANGE.fullmatch(value.strip())
    if m is None:
        raise RangeInvalid(f"malformed Content-Range {value[:100]}")
    first, last = int(m.group(1)), int(m.group(2))
    if first != up.offset or last < first:
        raise RangeInvalid(f"chunk {first}-{last} does not start at offset {up.offset}",
                           detail={"offset": up.offset})
    length = request.content_length
    if length is not None and length != last - first + 1:
        raise SizeInvalid(f"Content-Length {length} does not match Content-Range {value[:100]}")


async def patch(request: web.Request, reg: Registry, params: dict[str, str]) -> web.StreamResponse:
    name = params["name"]
    up = reg.uploads.get(name, params["uuid"])
    async with up.lock:
        try:
            _check_range(request, up)
        except RangeInvalid:
            return web.Response(status=416, headers=_upload_headers(name, up))
        await stream_into(request, up, reg.executor)
    return web.Response(status=202, headers=_upload_headers(name, up))


async def status(request: web.Request, reg: Registry, params: dict[str, str]) -> web.StreamResponse:
    name = params["name"]
    up = reg.uploads.get(name, params["uuid"])
    return web.Response(status=204, headers=_upload_headers(name, up))


async def put(request: web.Request, reg: Registry, params: dict[str, str]) -> web.StreamResponse:
    name = params["name"]
    up = reg.uploads.get(name, params["uuid"])
    digest = request.query.get("digest")
    if not digest:
        raise DigestInvalid("digest parameter missing")
    parse_digest(digest)
    async with up.lock:
        if request.body_exists:
            _check_range(request, up)
            await stream_into(request, up, reg.executor)
        await _finish(reg, up, digest)
    return _created(name, digest)


async def _finish(reg: Registry, up: Upload, digest: str) -> None:
    """Verify and commit; hashing again (after a restart) runs on a worker thread."""
    alg, _ = parse_digest(digest)
    actual = await asyncio.get_running_loop().run_in_executor(reg.executor, up.digest_of, alg)
    reg.uploads.finish(up, digest, actual=actual)
    reg.metrics.upload_done(time.time() - up.started)


async def cancel(request: web.Request, reg: Registry, params: dict[str, str]) -> web.StreamResponse:
    up = reg.uploads.get(params["name"], params["uuid"])
    reg.uploads.cancel(up)
    return web.Response(status=204, headers={"Content-Length": "0"})
