"""Build OCI image layouts (directories) in Python for tests and benchmarks, so skopeo can
copy them into a registry: layers from (name, kind, data) entries, one or more platforms."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import time
from pathlib import Path


def layer_tar(entries: list[tuple]) -> bytes:
    """entries: ("f", name, data[, mode]) | ("d", name) | ("l", name, target) | ("h", name, target)
    | ("c", name, major, minor) | ("x", name, data, {xattr: value}) | raw TarInfo objects."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for e in entries:
            if isinstance(e, tarfile.TarInfo):
                t.addfile(e, io.BytesIO(b"\0" * e.size) if e.isfile() else None)
                continue
            kind, name = e[0], e[1]
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_700_000_000
            if kind in ("f", "x"):
                data = e[2].encode() if isinstance(e[2], str) else e[2]
                ti.size = len(data)
                ti.mode = e[3] if kind == "f" and len(e) > 3 else 0o644
                if kind == "x":
                    ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in e[3].items()}
                t.addfile(ti, io.BytesIO(data))
            elif kind == "d":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                t.addfile(ti)
            elif kind == "l":
                ti.type, ti.linkname = tarfile.SYMTYPE, e[2]
                t.addfile(ti)
            elif kind == "h":
                ti.type, ti.linkname = tarfile.LNKTYPE, e[2]
                t.addfile(ti)
            elif kind == "c":
                ti.type, ti.devmajor, ti.devminor, ti.mode = tarfile.CHRTYPE, e[2], e[3], 0o666
                t.addfile(ti)
    return buf.getvalue()


def _sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


class Layout:
    def __init__(self, root: Path):
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        self.index: list[dict] = []

    def blob(self, data: bytes) -> str:
        d = _sha(data)
        (self.root / "blobs" / "sha256" / d[7:]).write_bytes(data)
        return d

    def image(self, layers: list[bytes], arch: str = "amd64", cmd: list[str] | None = None,
              compress: str = "gzip") -> dict:
        """Add an image (layers are uncompressed tars); returns its manifest descriptor."""
        descs, diffs = [], []
        for raw in layers:
            diffs.append(_sha(raw))
            if compress == "gzip":
                data = gzip.compress(raw, compresslevel=1, mtime=0)
                mt = "application/vnd.oci.image.layer.v1.tar+gzip"
            elif compress == "zstd":
                import zstandard
                data = zstandard.ZstdCompressor().compress(raw)
                mt = "application/vnd.oci.image.layer.v1.tar+zstd"
            else:
                data, mt = raw, "application/vnd.oci.image.layer.v1.tar"
            descs.append({"mediaType": mt, "digest": self.blob(data), "size": len(data)})
        config = json.dumps({
            "architecture": arch, "os": "linux", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": {"Cmd": cmd or ["sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diffs},
            "history": [{"created_by": f"layer {i}"} for i in range(len(diffs))]}).encode()
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": self.blob(config), "size": len(config)},
                               "layers": descs}).encode()
        return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": self.blob(manifest),
                "size": len(manifest), "platform": {"architecture": arch, "os": "linux"}}

    def tag(self, desc: dict, tag: str) -> None:
        self.index.append({**desc, "annotations": {"org.opencontainers.image.ref.name": tag}})
        self._write()

    def tag_list(self, descs: list[dict], tag: str) -> None:
        idx = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                          "manifests": descs}).encode()
        self.index.append({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": self.blob(idx),
                           "size": len(idx), "annotations": {"org.opencontainers.image.ref.name": tag}})
        self._write()

    def _write(self) -> None:
        (self.root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": self.index}))
