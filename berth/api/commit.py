"""``POST /commit`` (a container's writable layer -> a new image) and
``GET /containers/{id}/export`` (a container's whole file system as a tar)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile

import msgspec

from berth.api.http import Request, Response, Router, StreamResponse
from berth.api.system import json_response
from berth.errors import InvalidArgument
from berth.schema.containers import ContainerConfig


def routes(router: Router, ctx: object) -> None:
    files = ctx.image_files  # type: ignore[attr-defined]

    async def commit(req: Request) -> Response:
        body = await req.read(1 << 20)
        config = None
        if body.strip() and body.strip() != b"null":
            config = msgspec.json.decode(body, type=ContainerConfig)
        container = req.query.get("container", "")
        if not container:
            raise InvalidArgument("container is required")
        changes = [v for k, v in req.query_list if k == "changes"]
        img = await files.commit(container, req.query.get("repo", ""), req.query.get("tag", ""),
                                 req.query.get("comment", ""), req.query.get("author", ""), changes, config,
                                 req.flag("pause", True))
        return json_response({"Id": img.id}, 201)

    async def export(req: Request) -> StreamResponse:
        mnt = tempfile.mkdtemp(prefix="export-", dir=str(ctx.data.image_tmp))  # type: ignore[attr-defined]
        try:
            argv = files.export_command(req.match["id"], mnt)
            proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.PIPE)
            assert proc.stdout is not None and proc.stderr is not None
            first = await proc.stdout.read(1 << 16)
            if not first:
                err = (await proc.stderr.read()).decode(errors="replace").strip()
                await proc.wait()
                raise InvalidArgument(f"export: {err or 'tar failed'}")
            resp = StreamResponse(req, content_type="application/x-tar")
            try:
                await resp.write(first)
                while chunk := await proc.stdout.read(1 << 20):
                    await resp.write(chunk)
                await resp.finish()
            finally:
                if proc.returncode is None:
                    try:
                        proc.kill()
                    except ProcessLookupError:
                        pass
                await proc.wait()
            return resp
        finally:
            shutil.rmtree(mnt, ignore_errors=True)

    router.add("POST", "/commit", commit)
    router.add("GET", "/containers/{id}/export", export)
