"""Volumes and each container's mount points (binds, volumes, tmpfs).

A *volume* is a record plus a directory, ``<data-root>/volumes/<name>/_data``; the ``local``
driver's options (``type``, ``device``, ``o``, as ``mount -t type -o o device``) make it a
mount instead, done inside each container's mount namespace when it starts (so the host never
holds a mount berth could leak). A *mount point* is one entry of a container's ``Mounts``:
resolved once at create (``-v``, ``--mount``, ``--tmpfs``, ``--volumes-from``, the image's
VOLUMEs), turned into OCI mounts at each start::

    points = volumes.prepare(cid, host_config, volumes_cfg, image_volumes)   # create
    mounts = volumes.spec_mounts(cid, image_lowers)     # start (copies image content up once)
    volumes.forget(cid, remove_anonymous=True)          # rm -v
"""

from __future__ import annotations

import builtins
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from berth.errors import Conflict, InvalidArgument, NotFound, RuntimeFailure
from berth.oci import spec as oci
from berth.state.db import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    data BLOB NOT NULL              -- msgspec JSON of engine.volumes.Volume
);
CREATE TABLE IF NOT EXISTS container_mounts (
    container_id TEXT PRIMARY KEY,
    data BLOB NOT NULL              -- msgspec JSON of list[engine.volumes.MountPoint]
);
"""

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_PROPAGATION = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
LOCAL_OPTIONS = ("type", "device", "o", "size")


class NoSuchVolume(NotFound):
    pass


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Volume(msgspec.Struct):
    name: str
    created: str
    driver: str = "local"
    labels: dict[str, str] = {}
    options: dict[str, str] = {}
    anonymous: bool = False


class MountPoint(msgspec.Struct):
    type: str                  # bind | volume | tmpfs
    destination: str
    source: str = ""           # host path (bind) or volume name
    rw: bool = True
    mode: str = ""             # as given after the second colon of -v (e.g. "ro,Z")
    propagation: str = ""
    nocopy: bool = False
    tmpfs_options: list[str] = []
    subpath: str = ""


class VolumeUsage(msgspec.Struct):
    volume: Volume
    size: int          # bytes under its _data
    ref_count: int     # containers that mount it


_enc = msgspec.json.Encoder()
_dec_vol = msgspec.json.Decoder(Volume)
_dec_points = msgspec.json.Decoder(list[MountPoint])


class Volumes:
    def __init__(self, db: Database, root: Path,
                 emit: Callable[[str, str, str, dict[str, str]], object] | None = None):
        self.db = db
        self.root = root                       # <data-root>/volumes
        self.emit = emit or (lambda *a: None)
        db.conn.executescript(SCHEMA)
        root.mkdir(parents=True, exist_ok=True)
        self.vols: dict[str, Volume] = {}
        self.points: dict[str, list[MountPoint]] = {}
        for _, v in db.rows("volumes", "name", _dec_vol.decode):
            self.vols[v.name] = v
        for cid, points in db.rows("container_mounts", "container_id", _dec_points.decode):
            self.points[cid] = points

    # -- volumes ----------------------------------------------------------------------------

    def data_dir(self, name: str) -> Path:
        return self.root / name / "_data"

    def get(self, name: str) -> Volume:
        v = self.vols.get(name)
        if v is None:
            raise NoSuchVolume(f"get {name}: no such volume")
        return v

    def list(self) -> list[Volume]:
        return sorted(self.vols.values(), key=lambda v: v.name)

    def create(self, name: str = "", driver: str = "local", labels: dict[str, str] | None = None,
               options: dict[str, str] | None = None, anonymous: bool = False) -> Volume:
        driver = driver or "local"
        if driver != "local":
            raise NotFound(f'error looking up volume plugin {driver}: plugin "{driver}" not found')
        if not name:
            name = secrets.token_hex(32)
        elif not _NAME.match(name):
            raise InvalidArgument(f'create {name}: "{name}" includes invalid characters for a local volume name, '
                                  'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
                                  'directory, use absolute path')
        for k in options or {}:
            if k not in LOCAL_OPTIONS:
                raise InvalidArgument(f"create {name}: invalid option key: {k!r}")
        existing = self.vols.get(name)
        if existing is not None:
            return existing
        labels = dict(labels or {})
        if anonymous:
            labels["com.docker.volume.anonymous"] = ""
        v = Volume(name=name, created=_now(), driver=driver, labels=labels,
                   options=dict(options or {}), anonymous=anonymous)
        self.data_dir(name).mkdir(parents=True, exist_ok=True)
        with self.db.tx() as tx:
            tx.execute("INSERT OR REPLACE INTO volumes VALUES (?,?)", (v.name, _enc.encode(v)))
        self.vols[name] = v
        self.emit("volume", "create", name, {"driver": driver})
        return v

    def disk_usage(self) -> builtins.list[VolumeUsage]:
        """``/system/df``'s Volumes: each volume with its bytes and users (sync: it walks)."""
        return [VolumeUsage(v, _tree_size(self.data_dir(v.name)), len(self.users(v.name))) for v in self.list()]

    def users(self, name: str) -> builtins.list[str]:
        return [cid for cid, pts in self.points.items()
                if any(p.type == "volume" and p.source == name for p in pts)]

    def remove(self, name: str, force: bool = False) -> None:
        v = self.vols.get(name)
        if v is None:
            if force:
                return
            raise NoSuchVolume(f"get {name}: no such volume")
        users = self.users(name)
        if users:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        with self.db.tx() as tx:
            tx.execute("DELETE FROM volumes WHERE name=?", (name,))
        self.vols.pop(name, None)
        shutil.rmtree(self.root / name, ignore_errors=True)
        self.emit("volume", "destroy", name, {"driver": v.driver})

    def prune(self, match: Callable[[Volume], bool]) -> tuple[builtins.list[str], int]:
        deleted, space = [], 0
        for v in list(self.vols.values()):
            if self.users(v.name) or not match(v):
                continue
            space += _du(self.root / v.name)
            self.remove(v.name)
            deleted.append(v.name)
        return deleted, space

    def size(self, name: str) -> int:
        return _du(self.root / name)

    # -- containers -------------------------------------------------------------------------

    def prepare(self, cid: str, hc: Any, config_volumes: dict[str, Any] | None,
                container_points: Callable[[str], tuple[str, builtins.list[MountPoint]]],
                ) -> builtins.list[MountPoint]:
        """Resolve a new container's mount points (Docker's order: --volumes-from, -v, --mount,
        then --tmpfs and the image's and config's VOLUMEs for paths not yet covered).

        ``container_points(ref)`` -> (container id, its mount points), for --volumes-from.
        Raises InvalidArgument, NotFound.
        """
        points: dict[str, MountPoint] = {}

        def add(p: MountPoint, replace: bool = False) -> None:
            p.destination = _clean_dest(p.destination)
            if p.destination in points and not replace:
                raise InvalidArgument(f"Duplicate mount point: {p.destination}")
            points[p.destination] = p

        for item in hc.VolumesFrom or []:
            ref, _, mode = item.partition(":")
            if mode not in ("", "ro", "rw"):
                raise InvalidArgument(f"invalid mode for volumes-from: {mode}")
            _, theirs = container_points(ref)
            for p in theirs:
                if p.type == "tmpfs":
                    continue
                q = msgspec.structs.replace(p)
                if mode:
                    q.rw = mode == "rw"
                add(q, replace=True)
        for item in hc.Binds or []:
            add(parse_bind(item), replace=True)
        for m in getattr(hc, "Mounts", None) or []:
            add(parse_mount(m))
        for dest, opts in (getattr(hc, "Tmpfs", None) or {}).items():
            add(MountPoint(type="tmpfs", destination=dest, tmpfs_options=_tmpfs_opts(opts)))
        for dest in config_volumes or {}:
            if _clean_dest(dest) not in points:
                add(MountPoint(type="volume", destination=dest))
        created: list[str] = []
        try:
            for p in points.values():
                if p.type == "volume":
                    if not p.source:
                        p.source = self.create(anonymous=True).name
                        created.append(p.source)
                    elif p.source not in self.vols:
                        self.create(p.source)
                elif p.type == "bind":
                    if not os.path.exists(p.source):
                        if p.mode == "mount":  # --mount type=bind: the source must exist (1.42: or
                            # BindOptions.CreateMountpoint asks for it, as -v always did)
                            raise InvalidArgument(f"invalid mount config for type \"bind\": bind source path does not exist: {p.source}")
                        os.makedirs(p.source, 0o755, exist_ok=True)
                    if p.mode in ("mount", "mount-create"):
                        p.mode = ""
        except BaseException:
            for name in created:
                self.remove(name, force=True)
            raise
        out = list(points.values())
        self._save(cid, out)
        return out

    def _save(self, cid: str, pts: builtins.list[MountPoint]) -> None:
        with self.db.tx() as tx:
            tx.execute("INSERT OR REPLACE INTO container_mounts VALUES (?,?)", (cid, _enc.encode(pts)))
        self.points[cid] = pts

    def of(self, cid: str) -> builtins.list[MountPoint]:
        return self.points.get(cid, [])

    def spec_mounts(self, cid: str, lowers: builtins.list[Path], upper: Path) -> builtins.list[oci.Mount]:
        """OCI mounts for a start, in order (parents before children). Copies the image's
        content into a volume used for the first time."""
        out = []
        for p in sorted(self.of(cid), key=lambda p: p.destination.count("/")):
            if p.type == "tmpfs":
                out.append(oci.Mount(destination=p.destination, type="tmpfs", source="tmpfs",
                                     options=list(p.tmpfs_options)))
                continue
            opts = ["rbind", p.propagation or "rprivate"]
            if not p.rw:
                opts.append("ro")
            if p.type == "bind":
                out.append(oci.Mount(destination=p.destination, type="bind", source=p.source, options=opts))
                continue
            v = self.vols.get(p.source) or self.create(p.source)
            if v.options.get("type") or v.options.get("device"):
                out.append(self._driver_mount(v, p))
                continue
            data = self.data_dir(v.name)
            data.mkdir(parents=True, exist_ok=True)
            if not p.nocopy and not any(data.iterdir()):
                copy_up([upper, *lowers], p.destination, data)
            src = str(data)
            if p.subpath:  # API 1.45; resolved here, so a symlink in the volume cannot lead out of it
                real = os.path.realpath(data / p.subpath)
                if os.path.commonpath([real, os.path.realpath(data)]) != os.path.realpath(data) \
                        or not os.path.exists(real):
                    raise RuntimeFailure(f"cannot access path {data / p.subpath}: subpath not found "
                                          f"within volume {v.name}")
                src = real
            out.append(oci.Mount(destination=p.destination, type="bind", source=src, options=opts))
        return out

    def _driver_mount(self, v: Volume, p: MountPoint) -> oci.Mount:
        kind = v.options.get("type") or "none"
        o = [x for x in (v.options.get("o") or "").split(",") if x]
        if v.options.get("size"):
            o.append(f"size={v.options['size']}")
        if not p.rw:
            o.append("ro")
        if kind == "none" or "bind" in o or "rbind" in o:
            o = [x for x in o if x not in ("bind", "rbind")]
            return oci.Mount(destination=p.destination, type="bind", source=v.options.get("device", ""),
                             options=["rbind", "rprivate", *o])
        return oci.Mount(destination=p.destination, type=kind, source=v.options.get("device") or kind, options=o)

    def forget(self, cid: str, remove_anonymous: bool) -> None:
        pts = self.points.pop(cid, [])
        with self.db.tx() as tx:
            tx.execute("DELETE FROM container_mounts WHERE container_id=?", (cid,))
        if remove_anonymous:
            for p in pts:
                v = self.vols.get(p.source) if p.type == "volume" else None
                if v is not None and v.anonymous and not self.users(v.name):
                    self.remove(v.name, force=True)


def _clean_dest(dest: str) -> str:
    if not dest.startswith("/"):
        raise InvalidArgument(f"invalid mount config: mount path must be absolute: {dest}")
    return os.path.normpath(dest) if dest != "/" else dest


def parse_bind(item: str) -> MountPoint:
    """``-v``/HostConfig.Binds: ``src:dest[:mode]`` (src: an absolute host path or a volume name)."""
    parts = item.split(":")
    if len(parts) == 1:
        return MountPoint(type="volume", destination=parts[0])
    if len(parts) > 3:
        raise InvalidArgument(f"invalid volume specification: '{item}'")
    src, dest = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else ""
    rw, prop, nocopy = True, "", False
    for m in filter(None, mode.split(",")):
        if m in ("ro", "rw"):
            rw = m == "rw"
        elif m in _PROPAGATION:
            prop = m
        elif m in ("z", "Z"):
            pass  # SELinux relabelling: nothing to do without SELinux
        elif m == "nocopy":
            nocopy = True
        else:
            raise InvalidArgument(f"invalid mode: {mode}")
    if not dest.startswith("/"):
        raise InvalidArgument(f"invalid volume specification: '{item}': invalid mount config for type "
                              f"\"{'bind' if src.startswith('/') else 'volume'}\": invalid mount path: '{dest}' mount path must be absolute")
    if src.startswith("/"):
        return MountPoint(type="bind", source=os.path.normpath(src), destination=dest, rw=rw, mode=mode,
                          propagation=prop or "rprivate")
    if not _NAME.match(src):
        raise InvalidArgument(f"invalid volume specification: '{item}'")
    return MountPoint(type="volume", source=src, destination=dest, rw=rw, mode=mode, nocopy=nocopy)


_OPTIONS_OF = {"bind": "BindOptions", "volume": "VolumeOptions", "tmpfs": "TmpfsOptions"}


def parse_mount(m: dict[str, Any]) -> MountPoint:
    """HostConfig.Mounts (``--mount``)."""
    kind = (m.get("Type") or "").lower()
    target = m.get("Target") or m.get("Destination") or ""
    if not target:
        raise InvalidArgument("invalid mount config: Target must not be empty")
    for t, key in _OPTIONS_OF.items():  # API 1.42: options of another type are an error
        if t != kind and kind in _OPTIONS_OF and m.get(key) is not None:
            raise InvalidArgument(f"invalid mount config for type \"{kind}\": field {key} must not be specified")
    ro = bool(m.get("ReadOnly"))
    src = m.get("Source") or ""
    if kind == "bind":
        if not src:
            raise InvalidArgument("invalid mount config for type \"bind\": field Source must not be empty")
        bo = m.get("BindOptions") or {}
        prop = bo.get("Propagation") or "rprivate"
        if prop not in _PROPAGATION:
            raise InvalidArgument(f"invalid propagation mode: {prop}")
        if bo.get("ReadOnlyForceRecursive"):
            # berth's runtime makes read-only binds read-only on the top mount only, as a runtime
            # without recursive read-only support does (dockerd then keeps them non-recursive).
            if not ro:
                raise InvalidArgument("invalid mount config for type \"bind\": "
                                      "must not set ReadOnlyForceRecursive when ReadOnly is false")
            raise InvalidArgument("invalid mount config for type \"bind\": "
                                  "recursively read-only mounts are not supported by the runtime")
        return MountPoint(type="bind", source=os.path.normpath(src), destination=target, rw=not ro,
                          mode="mount-create" if bo.get("CreateMountpoint") else "mount", propagation=prop)
    if kind == "volume":
        vo = m.get("VolumeOptions") or {}
        if src and not _NAME.match(src):
            raise InvalidArgument(f"invalid mount config for type \"volume\": invalid volume name {src!r}")
        sub = vo.get("Subpath") or ""
        if sub and (os.path.isabs(sub) or ".." in sub.split("/")):
            raise InvalidArgument(f"invalid mount config for type \"volume\": subpath must be a relative "
                                  f"path within the volume: {sub}")
        return MountPoint(type="volume", source=src, destination=target, rw=not ro,
                          nocopy=bool(vo.get("NoCopy")), subpath=os.path.normpath(sub) if sub else "")
    if kind == "tmpfs":
        to = m.get("TmpfsOptions") or {}
        opts = []
        if to.get("SizeBytes"):
            opts.append(f"size={int(to['SizeBytes'])}")
        if to.get("Mode"):
            opts.append(f"mode={int(to['Mode']):o}")
        for o in to.get("Options") or []:  # API 1.46: [["noexec"], ["nr_inodes", "10"]]
            if not isinstance(o, list) or not 1 <= len(o) <= 2 or o[0] not in _TMPFS_OPTIONS:
                raise InvalidArgument(f"invalid mount config for type \"tmpfs\": invalid option: {o}")
            opts.append("=".join(str(x) for x in o))
        if src:
            raise InvalidArgument("invalid mount config for type \"tmpfs\": field Source must be empty")
        return MountPoint(type="tmpfs", destination=target, tmpfs_options=_tmpfs_opts(",".join(opts)),
                          rw=not ro)
    raise InvalidArgument(f"invalid mount config for type \"{kind}\": mount type unknown" if kind else
                          "invalid mount config: mount type must not be empty")


# tmpfs options dockerd accepts in TmpfsOptions.Options (the rest are set by other fields).
_TMPFS_OPTIONS = {"exec", "noexec", "suid", "nosuid", "dev", "nodev", "atime", "noatime", "diratime",
                  "nodiratime", "relatime", "norelatime", "strictatime", "nr_inodes", "nr_blocks", "mpol",
                  "uid", "gid", "huge", "noswap"}


def _tmpfs_opts(opts: str) -> list[str]:
    given = [o for o in (opts or "").split(",") if o]
    out = ["nosuid", "nodev", "noexec"]
    for o in given:
        if o in ("exec", "suid", "dev"):
            out = [x for x in out if x != "no" + o]
        out.append(o)
    if not any(o.startswith("mode=") for o in out):
        out.append("mode=1777")
    return out


def copy_up(layers_top_first: list[Path], dest: str, target: Path) -> None:
    """Copy the image's content at ``dest`` into an empty volume, as Docker does on first use:
    layers bottom-up, honouring overlay whiteouts and opaque directories."""
    rel = dest.lstrip("/")
    found = False
    for layer in reversed(layers_top_first):
        src = layer / rel
        try:
            st = os.lstat(src)
        except OSError:
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True, exist_ok=True)
            found = False
            continue
        if not stat.S_ISDIR(st.st_mode):
            continue
        try:
            if os.getxattr(src, "trusted.overlay.opaque") == b"y":
                for child in list(target.iterdir()):
                    _rm(child)
        except OSError:
            pass
        _merge(src, target)
        if not found:
            os.chmod(target, stat.S_IMODE(st.st_mode))
            os.chown(target, st.st_uid, st.st_gid)
            found = True


def _rm(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def _merge(src: Path, dst: Path) -> None:
    for entry in os.scandir(src):
        s, d = Path(entry.path), dst / entry.name
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            if d.exists() or d.is_symlink():
                _rm(d)
            continue
        if entry.is_dir(follow_symlinks=False):
            if d.exists() and not d.is_dir():
                _rm(d)
            d.mkdir(exist_ok=True)
            shutil.copystat(s, d, follow_symlinks=False)
            os.chown(d, st.st_uid, st.st_gid)
            _merge(s, d)
        else:
            if d.exists() or d.is_symlink():
                _rm(d)
            if entry.is_symlink():
                os.symlink(os.readlink(s), d)
            else:
                shutil.copy2(s, d, follow_symlinks=False)
            os.lchown(d, st.st_uid, st.st_gid)


def _du(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def _tree_size(root: Path) -> int:
    """Bytes of the regular files under root, each inode once (dockerd's directory.Size)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total
