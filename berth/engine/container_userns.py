"""User namespaces for containers (issue 17): the mode a create records, the range it gets,
and what a start adds to the spec and the container's directory.

    at create  ``HostConfig.UsernsMode``: ``host``, ``auto[:size=N]`` (a range of its own from
               berth's subordinate ids, state/subids.py), or ``""``: the daemon's
               ``userns-remap`` (one shared range, inspect shows ``""`` as dockerd) or else its
               ``userns-default`` (recorded as the container's mode)
    at start   the spec's user namespace and maps; the overlay's lower dirs through an idmapped
               mount of image/ (layers stay as unpacked, never chowned); the writable layer, the
               /etc files and fresh named volumes owned by the container's root
    at remove  the range is freed

Volumes and binds keep their owners (a bind of a root-owned file stays unreadable for the
container's root); a bind or volume with the ``idmap`` option is seen through the mapping.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from berth.errors import InvalidArgument, NotFound, Unsupported
from berth.oci.spec import IDMapping, Namespace, Spec
from berth.runtime.defaults import ANNOTATION_IDMAP, ANNOTATION_OVERLAY
from berth.engine.userns_copies import LayerCopies
from berth.runtime.userns import IdMaps
from berth.schema.containers import HostConfig
from berth.state.paths import ContainerDir, DataRoot
from berth.state.subids import IdRange, SubidPool, parse_size

LOWER = "lower"  # the idmapped image/ is attached at <container dir>/lower


@dataclass
class UsernsSettings:
    """daemon.json's ``userns-default`` and ``userns-remap``, and berth's pool (set by daemon/)."""

    default: str = ""                                  # "" or "auto[:size=N]"
    remap: str = ""                                    # "" or "user:group" (``default`` resolved)
    remap_maps: IdMaps | None = None
    pool: SubidPool | None = None
    uses: list[str] = field(default_factory=list)      # what /info shows in SecurityOptions
    copies: LayerCopies | None = None                  # the layers' fallback: no idmapped overlay

    @property
    def enabled(self) -> bool:
        return bool(self.default or self.remap)


def check_mode(mode: str) -> None:
    """Docker's ``invalid USER mode`` for anything but "", host and auto[:size=N]."""
    if mode in ("", "host"):
        return
    if mode.partition(":")[0] != "auto":
        raise InvalidArgument(f"invalid USER mode: {mode}")
    parse_size(mode)


def default_applies(hc: HostConfig, settings: UsernsSettings) -> bool:
    """Whether a container created with ``hc`` and no UsernsMode gets a user namespace
    (the daemon's userns-remap, or its userns-default where no host namespace is asked)."""
    if hc.UsernsMode or not settings.enabled:
        return hc.UsernsMode.startswith("auto")
    return bool(settings.remap) or "host" not in (hc.NetworkMode, hc.PidMode, hc.IpcMode)


def _donor(hc: HostConfig) -> str:
    """The container whose pid, ipc or network namespace this one joins ("" if none)."""
    for mode in (hc.PidMode, hc.IpcMode, hc.NetworkMode):
        if mode.startswith("container:"):
            return mode.split(":", 1)[1]
    return ""


def at_create(cid: str, hc: HostConfig, settings: UsernsSettings, resolve: Callable[[str], str],
              own_runtime: bool = True) -> None:
    """Record the container's mode in ``hc`` and allocate its range: one of its own, or, when
    it joins another container's namespaces, that container's (it joins its user namespace
    too, as dockerd makes it: "to share a PID namespace, they must also share a user
    namespace"). ``resolve``: a container reference -> its ID; ``own_runtime``: berth's
    runtime runs it (runc and crun get no idmapped layers: the daemon's default gives way).
    Raises InvalidArgument (a bad mode; auto with the host's pid, ipc or network namespace, or
    with another runtime), RangesExhausted."""
    mode = hc.UsernsMode
    check_mode(mode)
    explicit = bool(mode)
    if not mode:
        if settings.remap:
            if not own_runtime:
                raise InvalidArgument(f"userns-remap needs berth's own runtime, not {hc.Runtime} "
                                      "(use --userns=host)")
            return
        mode = settings.default
    if not mode.startswith("auto"):
        _no_idmap(hc)
        return
    if not own_runtime:
        if explicit:
            raise InvalidArgument(f"--userns={mode} needs berth's own runtime, not {hc.Runtime}")
        hc.UsernsMode = "host"
        _no_idmap(hc)
        return
    host_ns = [f"--{what}=host" for what, m in (("network", hc.NetworkMode), ("pid", hc.PidMode),
                                                ("ipc", hc.IpcMode)) if m == "host"]
    if host_ns:
        if explicit:
            raise InvalidArgument(f"--userns={mode} cannot be used with {' and '.join(host_ns)}: the host's "
                                  "namespaces are not the container's user namespace's (use --userns=host)")
        hc.UsernsMode = "host"  # the daemon's default gives way, as with Docker's --userns=host
        _no_idmap(hc)
        return
    if settings.pool is None:
        raise Unsupported("user namespaces are not available: berthd has no subordinate id pool")
    donor = _donor(hc)
    try:
        donor_id = resolve(donor) if donor else ""
    except NotFound:  # the start says so, as dockerd's does
        donor, donor_id = "", ""
    if donor and settings.pool.share(cid, donor_id) is None:
        if explicit:
            raise InvalidArgument(f"--userns={mode} cannot join the namespaces of container {donor}, which "
                                  "runs in the host's user namespace (use --userns=host)")
        hc.UsernsMode = "host"
        return
    if not donor:
        settings.pool.allocate(cid, parse_size(mode))
    hc.UsernsMode = mode


def _no_idmap(hc: HostConfig) -> None:
    """A container in the host's user namespace has no map to see a mount through."""
    binds = [b for b in hc.Binds or [] if "idmap" in [*b.split(":"), ""][2].split(",")]
    mounts = [m.get("Target") for m in hc.Mounts or [] if isinstance(m, dict) and any(
        isinstance(m.get(k), dict) and m[k].get("Idmap") is True for k in ("BindOptions", "VolumeOptions"))]
    if binds or mounts:
        what = binds[0] if binds else mounts[0]
        raise InvalidArgument(f"invalid mount config: {what}: the idmap option needs a user namespace "
                              "(--userns=auto, or the daemon's userns-default or userns-remap)")


def maps_for(cid: str, hc: HostConfig, settings: UsernsSettings) -> IdMaps | None:
    """The container's maps, None when it runs in the host's user namespace."""
    if hc.UsernsMode.startswith("auto"):
        r = settings.pool.get(cid) if settings.pool is not None else None
        if r is None:
            raise InvalidArgument(f"container {cid[:12]} has no user namespace range (was it created by "
                                  "a berthd without a subordinate id pool?)")
        return _maps_of(r)
    if not hc.UsernsMode and settings.remap:
        return settings.remap_maps
    return None


def _maps_of(r: IdRange) -> IdMaps:
    return IdMaps(uid=((0, r.uid, r.size),), gid=((0, r.gid, r.size),))


def release(cid: str, settings: UsernsSettings) -> None:
    """Free the container's range, and the copies of layers made for it (an auto range is
    one container's; userns-remap's is every container's and keeps them)."""
    if settings.pool is None:
        return
    r = settings.pool.get(cid)
    settings.pool.release(cid)
    if r is not None and settings.copies is not None and not settings.pool.in_use(r):
        settings.copies.release(_maps_of(r))


def image_tree(maps: IdMaps, lowers: list[Path], settings: UsernsSettings, data: DataRoot) -> tuple[Path, bool]:
    """The tree the overlay's lower dirs are under, and whether it is to be idmapped: image/,
    or the range's chown'd copy of ``lowers`` (made here where missing: blocking)."""
    if settings.copies is None:
        return data.root / "image", True
    return settings.copies.ensure(maps, lowers), False


def overlay_options(lowers: list[Path], data: DataRoot) -> str:
    """The overlay's options relative to the container's directory (the init's cwd there):
    lower dirs under the idmapped image/ at ``lower/``."""
    image = data.root / "image"
    rel = [f"{LOWER}/{p.relative_to(image)}" for p in lowers]
    return f"lowerdir={':'.join(rel)},upperdir=upper,workdir=work"


def apply(spec: Spec, maps: IdMaps, d: ContainerDir, data: DataRoot, tree: tuple[Path, bool]) -> None:
    """The user namespace into ``spec`` (built with ``overlay_options``), and the container's
    directory ready for its root: the mount point of ``tree`` (``image_tree``), the writable
    layer, the /etc files and fresh volumes owned by the container's uid and gid 0."""
    assert spec.linux is not None
    spec.linux.namespaces = [*(spec.linux.namespaces or []), Namespace(type="user", path=_joined_userns(spec))]
    spec.linux.uidMappings = [IDMapping(containerID=c, hostID=h, size=n) for c, h, n in maps.uid]
    spec.linux.gidMappings = [IDMapping(containerID=c, hostID=h, size=n) for c, h, n in maps.gid]
    notes = dict(spec.annotations or {})
    if ANNOTATION_OVERLAY in notes:
        notes[ANNOTATION_IDMAP] = f"{tree[0]}\n{LOWER}" + ("" if tree[1] else "\ncopy")
    spec.annotations = notes
    (d.root / LOWER).mkdir(exist_ok=True)
    uid, gid = maps.host_uid(0), maps.host_gid(0)
    for p in (d.upper, d.work, d.hostname, d.hosts, d.resolv_conf):
        _chown(p, uid, gid)
    for m in spec.mounts:
        if m.type == "bind" and m.source and Path(m.source).parent.parent == data.volumes \
                and "idmap" not in (m.options or []):  # idmapped, the disk's 0 is the container's root
            _chown_fresh(Path(m.source), uid, gid)


def _joined_userns(spec: Spec) -> str | None:
    """The user namespace of the container whose namespaces ``spec`` joins (``/proc/<its
    pid>/ns/...``), when it is not the host's; None: a new one."""
    assert spec.linux is not None
    for ns in spec.linux.namespaces or ():
        parts = (ns.path or "").split("/")
        if len(parts) == 5 and parts[:2] == ["", "proc"] and parts[2].isdigit() and parts[3] == "ns":
            user = f"/proc/{parts[2]}/ns/user"
            try:
                if os.stat(user).st_ino != os.stat("/proc/self/ns/user").st_ino:
                    return user
            except FileNotFoundError:
                pass
    return None


def _chown(p: Path, uid: int, gid: int) -> None:
    try:
        os.lchown(p, uid, gid)
    except FileNotFoundError:
        pass


def _chown_fresh(p: Path, uid: int, gid: int) -> None:
    """A named volume's _data still owned by the host's root becomes the container root's (as
    dockerd's volumes under a remapped root); one already given to a range stays as it is."""
    try:
        st = p.stat()
    except FileNotFoundError:
        return
    if st.st_uid == 0 and st.st_gid == 0:
        os.chown(p, uid, gid)
