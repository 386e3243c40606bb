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
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from berth.engine import propagation
from berth.engine.mount_specs import VOLUME_NAME, MountPoint, bad_volume_name, clean_dest, parse_bind, parse_mount, tmpfs_opts
from berth.engine.volume_files import Ids, copy_up, du, tree_size
from berth.runtime.userns import OVERFLOW_ID, IdMaps
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
    data BLOB NOT NULL              -- msgspec JSON of list[engine.mount_specs.MountPoint]
);
"""

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
        if not name:
            name = secrets.token_hex(32)
        if driver != "local":  # the volume service's "create <name>: " before the driver's words
            raise NotFound(f'create {name}: error looking up volume plugin {driver}: plugin "{driver}" not found')
        elif not VOLUME_NAME.match(name):
            raise bad_volume_name(name)
        for k in options or {}:
            if k not in LOCAL_OPTIONS:
                raise InvalidArgument(f'create {name}: invalid option: "{k}"')
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
        return [VolumeUsage(v, tree_size(self.data_dir(v.name)), len(self.users(v.name))) for v in self.list()]

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
            space += du(self.root / v.name)
            self.remove(v.name)
            deleted.append(v.name)
        return deleted, space

    def size(self, name: str) -> int:
        return du(self.root / name)

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
            p.destination = clean_dest(p.destination)
            if p.destination in points and not replace:
                raise InvalidArgument(f"Duplicate mount point: {p.destination}")
            points[p.destination] = p

        for item in hc.VolumesFrom or []:
            ref, _, mode = item.partition(":")
            if mode not in ("", "ro", "rw"):
                raise InvalidArgument(f"invalid mode for volumes-from: {mode}")
            try:
                _, theirs = container_points(ref)
            except NotFound as e:  # dockerd's registerMountPoints: a 400, not a missing image's 404
                raise InvalidArgument(str(e)) from None
            for p in theirs:
                if p.type == "tmpfs":
                    continue
                q = msgspec.structs.replace(p)
                if mode:
                    q.rw = mode == "rw"
                add(q, replace=True)
        for item in hc.Binds or []:
            add(self._in_data_root(parse_bind(item)), replace=True)
        for m in getattr(hc, "Mounts", None) or []:
            add(self._in_data_root(parse_mount(m)))
        for dest, opts in (getattr(hc, "Tmpfs", None) or {}).items():
            add(MountPoint(type="tmpfs", destination=dest, tmpfs_options=tmpfs_opts(opts)))
        for dest in config_volumes or {}:
            if clean_dest(dest) not in points:
                add(MountPoint(type="volume", destination=dest))
        created: list[str] = []
        try:
            for p in points.values():
                if p.type == "volume":
                    o, p.create_opts = p.create_opts or {}, None  # --mount's driver, options, labels
                    driver, opts, labels = o.get("driver") or "local", o.get("options"), o.get("labels")
                    if not p.source:
                        p.source = self.create("", driver, labels, opts, anonymous=True).name
                        created.append(p.source)
                    elif p.source not in self.vols:
                        self.create(p.source, driver, labels, opts)
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

    def _in_data_root(self, p: MountPoint) -> MountPoint:
        """A new bind's propagation: dockerd's rule for sources in (or holding) its root, else
        as asked (rprivate when not)."""
        if p.type == "bind":
            given = p.propagation
            p.propagation = propagation.daemon_root_propagation(p.source, given, str(self.root.parent)) or "rprivate"
            p.auto_propagation = not given and p.propagation == "rslave"
        return p

    def ensure_propagation(self, cid: str) -> None:
        """At a start: each bind's source can carry its propagation (dockerd's check, 500)."""
        for p in self.of(cid):
            if p.type == "bind":
                propagation.ensure_bind(p.source, p.propagation, str(self.root.parent), p.auto_propagation)

    def _save(self, cid: str, pts: builtins.list[MountPoint]) -> None:
        with self.db.tx() as tx:
            tx.execute("INSERT OR REPLACE INTO container_mounts VALUES (?,?)", (cid, _enc.encode(pts)))
        self.points[cid] = pts

    def of(self, cid: str) -> builtins.list[MountPoint]:
        return self.points.get(cid, [])

    def spec_mounts(self, cid: str, lowers: builtins.list[Path], upper: Path,
                    maps: IdMaps | None = None) -> builtins.list[oci.Mount]:
        """OCI mounts for a start, in order (parents before children). Copies the image's
        content into a volume used for the first time (``maps``: the container's user
        namespace, whose ids the copy gets)."""
        out = []
        for p in sorted(self.of(cid), key=lambda p: p.destination.count("/")):
            if p.type == "tmpfs":
                out.append(oci.Mount(destination=p.destination, type="tmpfs", source="tmpfs",
                                     options=list(p.tmpfs_options)))
                continue
            opts = ["rbind", p.propagation or "rprivate"]
            if not p.rw:
                opts.append("ro")
            if p.idmap:
                opts.append("idmap")
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
                copy_up([upper, *lowers], p.destination, data, _copy_ids(maps, p.idmap, len(lowers)))
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


def _copy_ids(maps: IdMaps | None, idmapped: bool, n_lowers: int) -> builtins.list[Ids]:
    """How a first use's copy sets owners, per layer (the writable one first): in a user
    namespace the image's layers hold the container's ids and the writable layer the host's.
    A volume seen through the map (``idmap``) keeps the container's on disk; any other, the
    host's, so the container sees its own ids either way."""
    if maps is None:
        return []

    def host(uid: int, gid: int) -> tuple[int, int]:
        hu, hg = maps.host_uid(uid), maps.host_gid(gid)
        return (hu if hu >= 0 else OVERFLOW_ID), (hg if hg >= 0 else OVERFLOW_ID)

    def same(uid: int, gid: int) -> tuple[int, int]:
        return uid, gid

    if idmapped:
        return [maps.container_ids, *[same] * n_lowers]
    return [same, *[host] * n_lowers]
