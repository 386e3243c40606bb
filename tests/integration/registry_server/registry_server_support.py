"""Helpers for the registry server's integration tests: a server process, images made
locally (an OCI layout from /bin/busybox), and small HTTP calls.

Not a conftest: this directory is not a package, so test modules import it by name.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
BUSYBOX = Path("/bin/busybox")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Server:
    """``berth registry serve`` in a subprocess on a free port; ``stop()`` ends it."""

    def __init__(self, root: Path, config: str | None = None, read_only: bool = False,
                 tls: tuple[Path, Path] | None = None) -> None:
        self.root = root
        self.log = root.parent / f"{root.name}.log"
        args = [sys.executable, "-m", "berth.cli.main", "registry", "serve",
                "--addr", "127.0.0.1:0", "--root", str(root)]
        if config is not None:
            cfg = root.parent / f"{root.name}.toml"
            cfg.write_text(config)
            args += ["--config", str(cfg)]
        if read_only:
            args.append("--read-only")
        if tls:
            args += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
        self.logf = open(self.log, "wb")
        self.proc = subprocess.Popen(args, stdout=self.logf, stderr=subprocess.STDOUT,
                                     cwd=REPO_ROOT, env={**os.environ,
                                                         "PYTHONPATH": str(REPO_ROOT)})
        self.port = self._wait_port()
        self.host = f"127.0.0.1:{self.port}"

    def _wait_port(self) -> int:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = re.search(rb"listening on https?://127\.0\.0\.1:(\d+)", self.log.read_bytes())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not start: {self.log.read_text()}")

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


@dataclass
class Resp:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)

    def codes(self) -> list[str]:
        return [e["code"] for e in json.loads(self.body)["errors"]]


def call(host: str, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> Resp:
    conn = http.client.HTTPConnection(host, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        conn.close()


def layer_tar(files: dict[str, bytes], mode: int = 0o755) -> tuple[bytes, bytes]:
    """(gzipped tar, uncompressed tar) holding files (name -> content)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({str(Path(n).parent) for n in files if str(Path(n).parent) != "."})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    plain = raw.getvalue()
    return gzip.compress(plain, mtime=0), plain


@dataclass
class Image:
    """An image as blobs: ``blobs`` maps digest -> bytes; ``manifest`` is the manifest bytes."""

    manifest: bytes
    config: bytes
    layers: list[bytes]

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def blobs(self) -> dict[str, bytes]:
        return {sha256(b): b for b in [self.config, *self.layers]}


def make_image(layers: list[dict[str, bytes]], cmd: list[str] | None = None,
               media_type: str = OCI_MANIFEST) -> Image:
    gz_layers, diff_ids = [], []
    for files in layers:
        gz, plain = layer_tar(files)
        gz_layers.append(gz)
        diff_ids.append(sha256(plain))
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": cmd or ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "berth test"} for _ in layers],
    }, sort_keys=True).encode()
    docker = media_type != OCI_MANIFEST
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": media_type,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json" if docker
                   else OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip" if docker
                    else OCI_LAYER, "digest": sha256(g), "size": len(g)} for g in gz_layers],
    }, sort_keys=True).encode()
    return Image(manifest, config, gz_layers)


def busybox_image(extra: bytes = b"") -> Image:
    """A one- or two-layer image: /bin/busybox (shared), plus /etc/extra when given."""
    layers = [{"bin/busybox": BUSYBOX.read_bytes()}]
    if extra:
        layers.append({"etc/extra": extra})
    return make_image(layers)


def write_oci_layout(image: Image, directory: Path, tag: str = "latest") -> Path:
    """An OCI image layout (skopeo's ``oci:DIR:TAG``)."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for digest, data in [*image.blobs.items(), (image.digest, image.manifest)]:
        (blobs / digest.split(":")[1]).write_bytes(data)
    (directory / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (directory / "index.json").write_text(json.dumps({
        "schemaVersion": 2, "manifests": [{
            "mediaType": OCI_MANIFEST, "digest": image.digest, "size": len(image.manifest),
            "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    return directory


def push_image(host: str, repo: str, image: Image, tag: str | None = "latest",
               headers: dict[str, str] | None = None) -> Resp:
    """Push with monolithic uploads; return the manifest PUT's answer."""
    for digest, data in image.blobs.items():
        r = call(host, "POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", data, headers)
        assert r.status == 201, (r.status, r.body)
    media = json.loads(image.manifest)["mediaType"]
    return call(host, "PUT", f"/v2/{repo}/manifests/{tag or image.digest}", image.manifest,
                {"Content-Type": media, **(headers or {})})


def skopeo(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=timeout)


class InProcServer:
    """The registry app on 127.0.0.1:<free port>, its event loop in a thread of this process
    (fast to start; for the HTTP-level tests). ``config`` is a TOML text."""

    def __init__(self, root: Path, config: str = "", read_only: bool = False) -> None:
        import asyncio
        import threading

        import msgspec
        from aiohttp import web

        from berth.registry.server.app import make_app  # noqa: F401 (imported here: lazy)
        from berth.registry.server.config import Config

        cfg = msgspec.toml.decode(config.encode(), type=Config) if config else Config()
        cfg.root = str(root)
        cfg.read_only = read_only
        self.app = make_app(cfg)
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def start() -> None:
            from berth.registry.server.app import REGISTRY, access_logger_class

            self.runner = web.AppRunner(
                self.app, handle_signals=False,
                access_log_class=access_logger_class(self.app[REGISTRY], quiet=True))
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.port = self.runner.addresses[0][1]
            ready.set()

        def main() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(start())
            self.loop.run_forever()

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()
        if not ready.wait(10):
            raise RuntimeError("in-process registry did not start")
        self.host = f"127.0.0.1:{self.port}"

    @property
    def registry(self):  # type: ignore[no-untyped-def]
        from berth.registry.server.app import REGISTRY

        return self.app[REGISTRY]

    def stop(self) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
