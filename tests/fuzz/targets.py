"""The fuzz targets: every parser berth runs on outside input, each as ``Target(run, allowed)``.

``run(data)`` feeds one input to the parser the way berth does; ``allowed`` lists the parser's
documented error types. Any other exception is a crash (a bug). The same targets serve the
short seeded run in the suite (tests/fuzz/test_fuzz.py) and the long runs (tests/fuzz/run.py,
atheris). Corpora: tests/fuzz/corpus/<name>/ (seeds, and every crash found, kept as a
regression input).

"""

from __future__ import annotations

import asyncio
import atexit
import io
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from berth.errors import BerthError


@dataclass(frozen=True)
class Target:
    run: Callable[[bytes], None]
    allowed: tuple[type[BaseException], ...]
    root: bool = False  # needs uid 0 (real whiteout devices)


def text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


_LOOP: asyncio.AbstractEventLoop | None = None


def _run_async(coro: Any) -> Any:
    global _LOOP
    if _LOOP is None:
        _LOOP = asyncio.new_event_loop()
    return _LOOP.run_until_complete(coro)


class _Writer:
    """The write end of a connection that keeps what was written (the parser under test reads
    from a real asyncio.StreamReader)."""

    def __init__(self) -> None:
        self.out = bytearray()

    def write(self, b: bytes) -> None:
        self.out += b

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def can_write_eof(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def _reader(data: bytes, limit: int = 1 << 16) -> asyncio.StreamReader:
    r = asyncio.StreamReader(limit=limit)
    r.feed_data(data)
    r.feed_eof()
    return r


# -- HTTP/1.1 requests and chunked bodies (berth/api/http.py) ---------------------------------------


class Crash(Exception):
    """An exception the server's error table would have answered with a 500."""


def _http_server() -> Any:
    from berth.api import http
    logging.getLogger("berth.api").setLevel(logging.CRITICAL)  # "error after response started"

    async def body(req: http.Request) -> http.Response:
        return http.Response(200, b'{"n":%d}' % len(await req.read(limit=1 << 20)))

    async def ping(req: http.Request) -> http.Response:
        return http.Response(200, b"OK", "text/plain")

    async def stream(req: http.Request) -> http.StreamResponse:
        r = http.StreamResponse(req)
        while chunk := await req.read_chunk(4096):
            await r.write(chunk)
        await r.finish()
        return r

    def on_error(req: http.Request | None, e: BaseException) -> http.Response:
        if isinstance(e, (http.BadRequest, BerthError)):
            return http.Response(400, b'{"message":"bad"}')
        raise Crash(f"{type(e).__name__}: {e}") from e

    router = http.Router()
    router.add("POST", "/body", body)
    router.add("GET", "/_ping", ping)
    router.add("POST", "/stream/{name:.*}", stream)
    return http.Server(router, {"Api-Version": "1.50"}, on_error, ("1.24", "1.50"))


async def _http(data: bytes) -> None:
    server = _http_server()
    reader, writer = _reader(data), _Writer()
    for _ in range(64):  # the requests of one keep-alive connection
        if not await server._one(reader, writer):  # type: ignore[arg-type]
            break


def http_request(data: bytes) -> None:
    _run_async(_http(data))


# -- WebSocket framing (berth/api/attach_ws.py) ------------------------------------------------------


async def _ws(data: bytes) -> None:
    from berth.api.attach_ws import WebSocket
    ws = WebSocket(_reader(data), _Writer())  # type: ignore[arg-type]
    for _ in range(1024):
        if await ws.receive() is None:
            break
    await ws.wait_closed(timeout=0.05)


def websocket(data: bytes) -> None:
    _run_async(_ws(data))


# -- layer tars: the header guard, and whiteouts applied for real (berth/image/unpack.py) ------------


def tar_guard(data: bytes) -> None:
    """The first byte picks how the stream is cut into pieces (headers straddle them)."""
    from berth.image.unpack import TarGuard
    g = TarGuard()
    step = 1 + data[0] * 7 if data else 512
    body = data[1:]
    for i in range(0, len(body), step):
        g.feed(body[i:i + step])


_SCRATCH: Path | None = None


def layer(data: bytes) -> None:
    """A whole layer applied into a fresh directory: guard, GNU tar, whiteouts, opaque dirs."""
    from berth.image.unpack import apply_layer
    global _SCRATCH
    if _SCRATCH is None:
        _SCRATCH = Path(tempfile.mkdtemp(prefix="berth-fuzz-layer-"))
        atexit.register(shutil.rmtree, _SCRATCH, True)
    dest = _SCRATCH / "diff"
    dest.mkdir()  # as the store's staging directory is
    try:
        apply_layer(io.BytesIO(data), dest)
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    leaked = [p for p in os.listdir(_SCRATCH) if p != "diff"]
    if leaked:
        raise Crash(f"written outside the layer directory: {leaked}")


# -- image references, digests, manifests, configs (berth/oci/) --------------------------------------


def reference(data: bytes) -> None:
    from berth.oci import reference as ref
    s = text(data)
    r = ref.parse(s)
    assert ref.parse(str(r)) == r, f"{s!r} -> {r} does not parse back to itself"
    ref.is_image_id(s)
    ref.parse(s, default_tag=False)


def manifest(data: bytes) -> None:
    """The first line is the Content-Type header; the rest the body, read as berth's pull
    reads it (the kind, then a list and its platform choice, or a manifest and its blobs)."""
    from berth.oci import manifest as mf
    from berth.oci.image import chain_ids, decode_config
    head, _, body = data.partition(b"\n")
    kind = mf.kind_of(body, text(head))
    if kind in mf.INDEXES:
        index = mf.decode_index(body)
        mf.choose(index, mf.host_platform())
        for d in index.manifests:
            if d.platform is not None:
                mf.choose(index, mf.parse_platform(f"{d.platform.os}/{d.platform.architecture}"))
    else:
        m = mf.decode_manifest(body)
        for d in (m.config, *m.layers):
            mf.check_blob_media_type(d.mediaType)
    config = decode_config(body)
    chain_ids(list(config.rootfs.diff_ids))


def image_config(data: bytes) -> None:
    from berth.oci.image import chain_ids, decode_config
    chain_ids(list(decode_config(data).rootfs.diff_ids))


def platform(data: bytes) -> None:
    from berth.oci import manifest as mf
    mf.parse_platform(text(data))


# -- the Go-template formatter of the CLI (berth/cli/_template.py) -----------------------------------

_TEMPLATE_DATA = {
    "ID": "0123456789ab", "Names": ["/web", "/db"], "Image": "busybox", "Status": "Up 2 seconds",
    "Labels": {"com.example": "x", "a": ""}, "Ports": [{"PrivatePort": 80, "Type": "tcp"}],
    "Size": 1234, "Ratio": 0.5, "Nil": None, "Ok": True,
}


def template(data: bytes) -> None:
    from berth.cli._template import Template
    Template(text(data)).execute(_TEMPLATE_DATA)


# -- Dockerfiles, shell words, .dockerignore (berth/build/, berth/schema/dockerignore.py) -----------


def dockerfile(data: bytes) -> None:
    from berth.build import dockerfile as df
    from berth.build import instructions
    parsed = df.parse(data)
    instructions.validate(parsed)
    instructions.split_stages(parsed)
    env = {"A": "a", "EMPTY": "", "HOME": "/root"}
    for inst in parsed.instructions:
        instructions.to_command(inst, env, parsed.escape)


def shell_words(data: bytes) -> None:
    from berth.build import shell
    s = text(data)
    env = {"A": "a b", "EMPTY": "", "X": "*"}
    shell.expand(s, env)
    shell.expand_words(s, env)
    shell.expand_heredoc(s, env)
    shell.expand(s, env, escape="`")


def dockerignore(data: bytes) -> None:
    from berth.schema import dockerignore as di
    patterns = di.parse(data)
    m = di.Matcher(patterns)
    for path in ("a", "a/b", "a/b/c.txt", ".dockerignore", "Dockerfile", "x/y/z"):
        m.excluded(path)
        m.excluded(path, is_dir=True)
        m.may_contain_included(path)


# -- the embedded DNS server's packets (berth/network/dns/message.py) --------------------------------


def dns(data: bytes) -> None:
    from ipaddress import IPv4Address

    from berth.network.dns import message
    message.error(data, message.SERVFAIL)
    q = message.parse_query(data)
    message.answer(data, q, [IPv4Address("10.0.0.2")])


# -- daemon.json (berth/daemon/config.py) -------------------------------------------------------------


_CONF_DIR: Path | None = None


def daemon_json(data: bytes) -> None:
    """The file as berthd reads it at start (every key checked, then the keys checked together),
    then again as a SIGHUP reads it: the same file changes nothing."""
    from berth.daemon import config
    global _CONF_DIR
    if _CONF_DIR is None:
        _CONF_DIR = Path(tempfile.mkdtemp(prefix="berth-fuzz-conf-"))
        atexit.register(shutil.rmtree, _CONF_DIR, True)
    path = _CONF_DIR / "daemon.json"
    path.write_bytes(data)
    args = config.load(["--config-file", str(path)])
    changed = config.reload(args)
    if changed:
        raise Crash(f"a SIGHUP with the same file changed {sorted(changed)}")


def _allowed() -> dict[str, tuple[type[BaseException], ...]]:
    from berth.api.http import BadRequest
    from berth.network.dns.message import BadMessage
    from berth.cli._template import TemplateError
    from berth.daemon.config import ConfigError
    stream_end = (asyncio.IncompleteReadError, ConnectionError)
    _ = BadRequest  # answered 400 inside _one; escaping it, it would be logged as a crash
    return {"http_request": stream_end, "websocket": (), "dns": (BadMessage,), "template": (TemplateError,),
            "daemon_json": (ConfigError,)}


def targets() -> dict[str, Target]:
    """name -> Target. BerthError covers InvalidArgument (a bad reference, Dockerfile, layer...),
    Unsupported (a schema 1 manifest) and NotFound (no manifest for this platform)."""
    extra = _allowed()
    plain: dict[str, Callable[[bytes], None]] = {
        "http_request": http_request, "websocket": websocket, "tar_guard": tar_guard,
        "reference": reference, "manifest": manifest, "image_config": image_config, "platform": platform, "template": template,
        "dockerfile": dockerfile, "shell_words": shell_words, "dockerignore": dockerignore, "dns": dns,
        "daemon_json": daemon_json,
    }
    out = {name: Target(run, extra.get(name, (BerthError,))) for name, run in plain.items()}
    out["layer"] = Target(layer, (BerthError,), root=True)
    return out
