"""Tars of images and layers (sync; run in a thread).

- ``diff_tar``: an overlay upper dir -> a layer tar (``commit``): a 0/0 char device becomes
  a ``.wh.<name>`` whiteout, a dir with ``trusted.overlay.opaque=y`` gets ``.wh..wh..opq``.
- ``write_save`` / ``read_save``: the ``docker save`` format as Docker 25+ writes it (an OCI
  image layout: ``oci-layout``, ``index.json``, ``blobs/sha256/``, plus the legacy
  ``manifest.json`` and ``repositories``); reading also takes Docker 20.10's layout
  (``<id>/layer.tar``) and plain OCI layouts (``index.json`` only).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

from berth.errors import InvalidArgument
from berth.oci import manifest as mf
from berth.state import rootless

WH = ".wh."
OPQ = ".wh..wh..opq"


def _xattrs(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for n in names:
        if n.startswith(("trusted.overlay.", "user.overlay.")):
            continue
        try:
            v = os.getxattr(path, n, follow_symlinks=False)
        except OSError:
            continue
        out[f"SCHILY.xattr.{n}"] = v.decode("utf-8", "surrogateescape")
    return out


def diff_tar(upper: Path, out: BinaryIO, ids: Callable[[int, int], tuple[int, int]] | None = None) -> None:
    """Write the changes recorded in an overlay upper dir as a layer tar. ``ids``: a user
    namespace container's host uid and gid -> its own (the tar carries the container's ids)."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        inodes: dict[tuple[int, int], str] = {}

        def add(path: str, arc: str) -> None:
            st = os.lstat(path)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                d, _, base = arc.rpartition("/")
                ti = tarfile.TarInfo(f"{d}/{WH}{base}" if d else f"{WH}{base}")
                ti.mtime = int(st.st_mtime)
                tar.addfile(ti)
                return
            ti = tarfile.TarInfo(arc + ("/" if stat.S_ISDIR(st.st_mode) else ""))
            ti.mode = stat.S_IMODE(st.st_mode)
            ti.uid, ti.gid = ids(st.st_uid, st.st_gid) if ids is not None else (st.st_uid, st.st_gid)
            ti.uname = ti.gname = ""
            ti.mtime = int(st.st_mtime)
            ti.pax_headers = _xattrs(path)
            key = (st.st_dev, st.st_ino)
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and key in inodes:
                ti.type = tarfile.LNKTYPE
                ti.linkname = inodes[key]
                tar.addfile(ti)
                return
            if stat.S_ISDIR(st.st_mode):
                ti.type = tarfile.DIRTYPE
                tar.addfile(ti)
                try:
                    if os.getxattr(path, rootless.overlay_prefix() + "opaque", follow_symlinks=False) == b"y":
                        o = tarfile.TarInfo(f"{arc}/{OPQ}")
                        o.mtime = ti.mtime
                        tar.addfile(o)
                except OSError:
                    pass
            elif stat.S_ISREG(st.st_mode):
                ti.size = st.st_size
                if st.st_nlink > 1:
                    inodes[key] = arc
                with open(path, "rb") as f:
                    tar.addfile(ti, f)
            elif stat.S_ISLNK(st.st_mode):
                ti.type = tarfile.SYMTYPE
                ti.linkname = os.readlink(path)
                tar.addfile(ti)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                ti.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                tar.addfile(ti)
            elif stat.S_ISFIFO(st.st_mode):
                ti.type = tarfile.FIFOTYPE
                tar.addfile(ti)

        def walk(d: str, arc: str) -> None:
            for name in sorted(os.listdir(d)):
                p = os.path.join(d, name)
                a = f"{arc}/{name}" if arc else name
                add(p, a)
                if os.path.isdir(p) and not os.path.islink(p):
                    walk(p, a)
        walk(str(upper), "")


# -- docker save ----------------------------------------------------------------------------------


@dataclass
class SaveImage:
    config: bytes
    image_id: str
    diff_ids: list[str]
    tags: list[str]                                # full references, repo:tag
    open_layer: Callable[[str], tuple[BinaryIO, int]]  # diff ID -> (uncompressed tar, size)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = 0o644
    tar.addfile(ti, io.BytesIO(data))


def _dir(tar: tarfile.TarFile, name: str) -> None:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    ti.mode = 0o755
    tar.addfile(ti)


def write_save(out: BinaryIO, images: list[SaveImage], familiar: Callable[[str], str]) -> None:
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _dir(tar, "blobs")
        _dir(tar, "blobs/sha256")
        seen: set[str] = set()
        index: list[dict[str, object]] = []
        legacy: list[dict[str, object]] = []
        repos: dict[str, dict[str, str]] = {}
        for img in images:
            layers = []
            for d in img.diff_ids:
                hexd = d.removeprefix("sha256:")
                f, size = img.open_layer(d)
                with f:
                    if d not in seen:
                        ti = tarfile.TarInfo(f"blobs/sha256/{hexd}")
                        ti.size = size
                        ti.mode = 0o444
                        tar.addfile(ti, f)
                        seen.add(d)
                layers.append({"mediaType": mf.MT_OCI_LAYER, "digest": d, "size": size})
            cfg_hex = img.image_id.removeprefix("sha256:")
            if img.image_id not in seen:
                _add_bytes(tar, f"blobs/sha256/{cfg_hex}", img.config)
                seen.add(img.image_id)
            manifest = {"schemaVersion": 2, "mediaType": mf.MT_OCI_MANIFEST,
                        "config": {"mediaType": mf.MT_OCI_CONFIG, "digest": img.image_id, "size": len(img.config)},
                        "layers": layers}
            mbytes = json.dumps(manifest, separators=(",", ":")).encode()
            mdigest = "sha256:" + hashlib.sha256(mbytes).hexdigest()
            if mdigest not in seen:
                _add_bytes(tar, f"blobs/sha256/{mdigest.removeprefix('sha256:')}", mbytes)
                seen.add(mdigest)
            desc = {"mediaType": mf.MT_OCI_MANIFEST, "digest": mdigest, "size": len(mbytes)}
            if img.tags:
                for t in img.tags:
                    index.append({**desc, "annotations": {"io.containerd.image.name": t,
                                                           "org.opencontainers.image.ref.name": t.rsplit(":", 1)[1]}})
            else:
                index.append(desc)
            legacy.append({"Config": f"blobs/sha256/{cfg_hex}",
                           "RepoTags": [familiar(t) for t in img.tags] or None,
                           "Layers": [f"blobs/sha256/{d.removeprefix('sha256:')}" for d in img.diff_ids]})
            for t in img.tags:
                repo, _, tag = familiar(t).rpartition(":")
                if img.diff_ids:
                    repos.setdefault(repo, {})[tag] = img.diff_ids[-1].removeprefix("sha256:")
        _add_bytes(tar, "index.json", json.dumps({"schemaVersion": 2, "mediaType": mf.MT_OCI_INDEX,
                                                  "manifests": index}, separators=(",", ":")).encode() + b"\n")
        _add_bytes(tar, "manifest.json", json.dumps(legacy, separators=(",", ":")).encode() + b"\n")
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        if repos:
            _add_bytes(tar, "repositories", json.dumps(repos, separators=(",", ":")).encode() + b"\n")


@dataclass
class LoadImage:
    config: bytes
    layers: list[str]            # member names of layer blobs, bottom first
    tags: list[str] = field(default_factory=list)


def _member_bytes(tar: tarfile.TarFile, name: str, limit: int = 64 << 20) -> bytes:
    try:
        f = tar.extractfile(name.removeprefix("./"))
    except KeyError:
        raise InvalidArgument(f"invalid archive: {name} is missing") from None
    if f is None:
        raise InvalidArgument(f"invalid archive: {name} is not a file")
    data = f.read(limit + 1)
    if len(data) > limit:
        raise InvalidArgument(f"invalid archive: {name} is too large")
    return data


def read_save(tar: tarfile.TarFile) -> list[LoadImage]:
    names = set(tar.getnames())
    if "manifest.json" in names:
        try:
            doc = json.loads(_member_bytes(tar, "manifest.json"))
        except ValueError as e:
            raise InvalidArgument(f"invalid manifest.json: {e}") from None
        out = []
        for entry in doc if isinstance(doc, list) else []:
            if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
                raise InvalidArgument("invalid manifest.json entry")
            out.append(LoadImage(_member_bytes(tar, entry["Config"]),
                                 [str(x) for x in entry.get("Layers") or []],
                                 [str(x) for x in entry.get("RepoTags") or []]))
        return out
    if "index.json" in names:
        try:
            idx = mf.decode_index(_member_bytes(tar, "index.json"))
        except InvalidArgument:
            raise
        out = []
        for d in idx.manifests:
            body = _member_bytes(tar, f"blobs/sha256/{d.digest.removeprefix('sha256:')}")
            kind = mf.kind_of(body, d.mediaType)
            if kind in mf.INDEXES:
                sub = mf.choose(mf.decode_index(body), mf.host_platform())
                body = _member_bytes(tar, f"blobs/sha256/{sub.digest.removeprefix('sha256:')}")
            m = mf.decode_manifest(body)
            tags = []
            ann = d.annotations or {}
            name = ann.get("io.containerd.image.name") or ann.get("org.opencontainers.image.ref.name")
            if name and (":" in name or "/" in name):
                tags.append(name)
            out.append(LoadImage(_member_bytes(tar, f"blobs/sha256/{m.config.digest.removeprefix('sha256:')}"),
                                 [f"blobs/sha256/{x.digest.removeprefix('sha256:')}" for x in m.layers], tags))
        return out
    raise InvalidArgument("invalid archive: neither manifest.json nor index.json found")
