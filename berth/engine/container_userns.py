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
from dataclasses import dataclass, field
from pathlib import Path

from berth.errors import InvalidArgument, Unsupported
from berth.oci.spec import IDMapping, Namespace, Spec
from berth.runtime.defaults import ANNOTATION_IDMAP, ANNOTATION_OVERLAY
from berth.runtime.userns import IdMaps
from berth.schema.containers import HostConfig
from berth.state.paths import ContainerDir, DataRoot
from berth.state.subids import SubidPool, parse_size

LOWER = "lower"  # the idmapped image/ is attached at <container dir>/lower


@dataclass
class UsernsSettings:
    """daemon.json's ``userns-default`` and ``userns-remap``, and berth's pool (set by daemon/)."""

    default: str = ""                                  # "" or "auto[:size=N]"
    remap: str = ""                                    # "" or "user:group" (``default`` resolved)
    remap_maps: IdMaps | None = None
    pool: SubidPool | None = None
    uses: list[str] = field(default_factory=list)      # what /info shows in SecurityOptions

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


def at_create(cid: str, hc: HostConfig, settings: UsernsSettings) -> None:
    """Record the container's mode in ``hc`` and allocate its range. Raises InvalidArgument
    (a bad mode; auto with the host's pid or network namespace), RangesExhausted."""
    mode = hc.UsernsMode
    check_mode(mode)
    explicit = bool(mode)
    if not mode:
        if settings.remap:
            return
        mode = settings.default
    if not mode.startswith("auto"):
        return
    host_ns = [f"--{what}=host" for what, m in (("network", hc.NetworkMode), ("pid", hc.PidMode)) if m == "host"]
    if host_ns:
        if explicit:
            raise InvalidArgument(f"--userns={mode} cannot be used with {' and '.join(host_ns)}: the host's "
                                  "namespaces are not the container's user namespace's (use --userns=host)")
        hc.UsernsMode = "host"  # the daemon's default gives way, as with Docker's --userns=host
        return
    if settings.pool is None:
        raise Unsupported("user namespaces are not available: berthd has no subordinate id pool")
    settings.pool.allocate(cid, parse_size(mode))
    hc.UsernsMode = mode


def maps_for(cid: str, hc: HostConfig, settings: UsernsSettings) -> IdMaps | None:
    """The container's maps, None when it runs in the host's user namespace."""
    if hc.UsernsMode.startswith("auto"):
        r = settings.pool.get(cid) if settings.pool is not None else None
        if r is None:
            raise InvalidArgument(f"container {cid[:12]} has no user namespace range (was it created by "
                                  "a berthd without a subordinate id pool?)")
        return IdMaps(uid=((0, r.uid, r.size),), gid=((0, r.gid, r.size),))
    if not hc.UsernsMode and settings.remap:
        return settings.remap_maps
    return None


def release(cid: str, settings: UsernsSettings) -> None:
    if settings.pool is not None:
        settings.pool.release(cid)


def overlay_options(lowers: list[Path], data: DataRoot) -> str:
    """The overlay's options relative to the container's directory (the init's cwd there):
    lower dirs under the idmapped image/ at ``lower/``."""
    image = data.root / "image"
    rel = [f"{LOWER}/{p.relative_to(image)}" for p in lowers]
    return f"lowerdir={':'.join(rel)},upperdir=upper,workdir=work"


def apply(spec: Spec, maps: IdMaps, d: ContainerDir, data: DataRoot) -> None:
    """The user namespace into ``spec`` (built with ``overlay_options``), and the container's
    directory ready for its root: the mount point of image/, the writable layer, the /etc
    files and fresh volumes owned by the container's uid and gid 0."""
    assert spec.linux is not None
    spec.linux.namespaces = [*(spec.linux.namespaces or []), Namespace(type="user")]
    spec.linux.uidMappings = [IDMapping(containerID=c, hostID=h, size=n) for c, h, n in maps.uid]
    spec.linux.gidMappings = [IDMapping(containerID=c, hostID=h, size=n) for c, h, n in maps.gid]
    notes = dict(spec.annotations or {})
    if ANNOTATION_OVERLAY in notes:
        notes[ANNOTATION_IDMAP] = f"{data.root / 'image'}\n{LOWER}"
    spec.annotations = notes
    (d.root / LOWER).mkdir(exist_ok=True)
    uid, gid = maps.host_uid(0), maps.host_gid(0)
    for p in (d.upper, d.work, d.hostname, d.hosts, d.resolv_conf):
        _chown(p, uid, gid)
    for m in spec.mounts:
        if m.type == "bind" and m.source and Path(m.source).parent.parent == data.volumes:
            _chown_fresh(Path(m.source), uid, gid)


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
