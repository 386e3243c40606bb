"""/containers endpoints that move bytes: attach (hijacked), logs and stats (streamed), the
archive (``docker cp``), changes and top."""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec

from berth.api.app import App, Routes
from berth.api.http import Request, Response, StreamResponse
from berth.api.shape import json_response
from berth.api.stats_shape import stats_json
from berth.engine import logjournal
from berth.engine import stats as st
from berth.engine.archive import PathStat
from berth.engine.logdrivers import ReadNotSupported
from berth.engine.logs import LogReader
from berth.engine.model import Container
from berth.engine.top import top as ps_top
from berth.errors import InvalidArgument
from berth.schema import detachkeys
from berth.schema.stdcopy import frame

_enc = msgspec.json.Encoder()


def detach_keys(req: Request, c: Container) -> bytes:
    """The attach's ``detachKeys`` as bytes (Docker's default when absent); only a tty detaches."""
    if not c.config.Tty:
        return b""
    try:
        return detachkeys.parse(req.query.get("detachKeys") or detachkeys.DEFAULT)
    except ValueError as e:
        raise InvalidArgument(str(e)) from None


def stream_type(req: Request, c: Container) -> str:
    """Raw with a tty (and before API 1.42), else stdcopy-multiplexed."""
    return "application/vnd.docker.raw-stream" if c.config.Tty or not req.version_at_least("1.42") \
        else "application/vnd.docker.multiplexed-stream"


async def stats(app: App, req: Request) -> StreamResponse:
    engine = app.containers
    c = engine.get(req.match["id"])
    stream = req.flag("stream", True)
    one_shot = req.flag("one-shot")
    ncpu = st.online_cpus()
    loop = asyncio.get_running_loop()

    async def take() -> st.Sample:
        cur = engine.by_id.get(c.id) or c
        raw = await loop.run_in_executor(None, st.raw_stats, cur)
        return st.sample(cur, raw, ncpu)

    resp = StreamResponse(req)
    await resp.prepare()
    prev = await take()
    if not stream and not one_shot:
        await asyncio.sleep(1.0)  # dockerd answers with two samples, a second apart
    elif not stream:
        await resp.write(_enc.encode(stats_json(prev)) + b"\n")
        await resp.finish()
        return resp
    while True:
        cur = await take()
        await resp.write(_enc.encode(stats_json(cur, prev)) + b"\n")
        if not stream or not engine.by_id.get(c.id) or not engine.by_id[c.id].running:
            break
        prev = cur
        await asyncio.sleep(1.0)
    await resp.finish()
    return resp


async def changes(app: App, req: Request) -> Response:
    return json_response([{"Path": ch.path, "Kind": ch.kind} for ch in app.archives.changes(req.match["id"])])


def _stat_header(ps: PathStat) -> dict[str, str]:
    doc = {"name": ps.name, "size": ps.size, "mode": ps.mode, "mtime": ps.mtime, "linkTarget": ps.link_target}
    return {"X-Docker-Container-Path-Stat": base64.b64encode(json.dumps(doc).encode()).decode()}


async def archive_head(app: App, req: Request) -> Response:
    stat = await app.archives.stat(req.match["id"], req.query.get("path", ""))
    return Response(200, b"", content_type=None, headers=_stat_header(stat))


async def archive_get(app: App, req: Request) -> StreamResponse:
    stat, body = await app.archives.get(req.match["id"], req.query.get("path", ""))
    resp = StreamResponse(req, content_type="application/x-tar", headers=_stat_header(stat))
    await resp.prepare()
    async for chunk in body:
        await resp.write(chunk)
    await resp.finish()
    return resp


async def request_body(req: Request) -> AsyncIterator[bytes]:
    while chunk := await req.read_chunk():
        yield chunk


async def archive_put(app: App, req: Request) -> Response:
    await app.archives.put(req.match["id"], req.query.get("path", ""), request_body(req),
                           req.flag("noOverwriteDirNonDir"), req.flag("copyUIDGID"))
    return Response(200, b"", content_type=None)


async def top(app: App, req: Request) -> Response:
    titles, procs = await ps_top(app.containers, req.match["id"], req.query.get("ps_args") or "-ef")
    return json_response({"Titles": titles, "Processes": procs})


async def logs(app: App, req: Request) -> StreamResponse:
    engine = app.containers
    c = engine.get(req.match["id"])
    stdout, stderr = req.flag("stdout"), req.flag("stderr")
    if not (stdout or stderr):
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    kind = c.host_config.LogConfig.Type or "json-file"
    if kind not in ("json-file", "local", "journald"):
        raise ReadNotSupported()
    tail_s = req.query.get("tail", "all")
    try:
        tail = None if tail_s in ("all", "") else int(tail_s)
    except ValueError:
        tail = None
    path = engine.data.container(c.id).log
    cid = c.id

    def running() -> bool:
        cur = engine.by_id.get(cid)
        return cur is not None and (cur.running or cur.state.starting)

    if kind == "journald":
        return await _journal_logs(req, c, path.parent, stdout, stderr, tail, running)
    reader = LogReader(path, stdout, stderr, req.query.get("since"),
                       req.query.get("until"), req.flag("timestamps"), tail)
    return await _send_logs(req, reader, c, running, req.flag("follow"))


async def _journal_logs(req: Request, c: Container, tmp_dir: Path, stdout: bool, stderr: bool,
                        tail: int | None, running: Callable[[], bool]) -> StreamResponse:
    """The journald driver's entries, through a temporary json-file (``logjournal``)."""
    tmp = tempfile.NamedTemporaryFile(dir=tmp_dir, prefix="journal-", delete=False)
    tmp.close()
    path = Path(tmp.name)
    follower = None
    try:
        cursor = await logjournal.export(c.id, path)
        reader = LogReader(path, stdout, stderr, req.query.get("since"), req.query.get("until"),
                           req.flag("timestamps"), tail)
        if not req.flag("follow"):
            return await _send_logs(req, reader, c, lambda: False, False)
        follower = await logjournal.Follower.start(c.id, path, cursor)
        f = follower
        return await _send_logs(req, reader, c, lambda: f.following(running()), True)
    finally:
        if follower is not None:
            await follower.close()
        path.unlink(missing_ok=True)


async def _send_logs(req: Request, reader: LogReader, c: Container, running: Callable[[], bool],
                     follow: bool) -> StreamResponse:
    resp = StreamResponse(req, content_type=stream_type(req, c))
    await resp.prepare()
    async for chunk in reader.chunks(follow, running, raw=c.config.Tty):
        await resp.write(chunk)
    await resp.finish()
    return resp


async def attach(app: App, req: Request) -> None:
    engine = app.containers
    c = engine.get(req.match["id"])
    stdin, stdout, stderr = req.flag("stdin"), req.flag("stdout"), req.flag("stderr")
    keys = detach_keys(req, c) if stdin else b""
    # Subscribed before the client hears it is attached: the start it sends next must not
    # release the init before the subscription exists (output would be lost).
    sub = engine.attach_soon(c.id, stdin, stdout, stderr) if req.flag("stream") else None
    try:
        req.hijack(stream_type(req, c))
        await req.head_read()
        if req.flag("logs"):
            reader = LogReader(engine.data.container(c.id).log, stdout, stderr, None, None, False, None)
            async for stream, data in reader.read(False, lambda: False):
                req.writer.write(data if c.config.Tty else frame(stream, data))
            await req.writer.drain()
    except BaseException:
        if sub is not None:
            sub.cancel()
        raise
    if sub is None:
        req.writer.close()
        return
    try:
        shim_r, shim_w = await sub
    except (asyncio.CancelledError, Exception):
        req.writer.close()
        return
    await relay(req.reader, req.writer, shim_r, shim_w, stdin, keys)


async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                shim_r: asyncio.StreamReader, shim_w: asyncio.StreamWriter, stdin: bool,
                detach_keys: bytes = b"") -> None:
    """Pump bytes both ways until the container's output ends (or the client leaves, or types
    the detach keys: then its stream ends and the container keeps running)."""
    matcher = detachkeys.Matcher(detach_keys)
    detached = False

    async def upstream() -> None:
        nonlocal detached
        try:
            while True:
                data = await client_r.read(65536)
                if not data:
                    break
                if stdin:
                    data, detached = matcher.feed(data)
                    if data:
                        shim_w.write(data)
                        await shim_w.drain()
                    if detached:
                        down.cancel()
                        return
        except (ConnectionError, OSError):
            pass
        try:
            shim_w.write_eof()  # "no more stdin from me"; output keeps flowing
        except (OSError, RuntimeError):
            pass

    async def downstream() -> None:
        try:
            while True:
                data = await shim_r.read(65536)
                if not data:
                    break
                client_w.write(data)
                await client_w.drain()
        except (ConnectionError, OSError):
            pass

    down = asyncio.ensure_future(downstream())
    up = asyncio.ensure_future(upstream())
    try:
        await down
    except asyncio.CancelledError:
        if not detached:
            raise
    finally:
        up.cancel()
        shim_w.close()
        try:
            client_w.close()
        except Exception:
            pass


ROUTES: Routes = [
    ("GET", "/containers/{id}/stats", stats),
    ("GET", "/containers/{id}/changes", changes),
    ("HEAD", "/containers/{id}/archive", archive_head),
    ("GET", "/containers/{id}/archive", archive_get),
    ("PUT", "/containers/{id}/archive", archive_put),
    ("GET", "/containers/{id}/top", top),
    ("GET", "/containers/{id}/logs", logs),
    ("POST", "/containers/{id}/attach", attach),
]
