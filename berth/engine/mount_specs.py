"""A container's mount points as the client asks for them: ``-v`` (HostConfig.Binds),
``--mount`` (HostConfig.Mounts) and ``--tmpfs``, parsed and checked with dockerd's words."""

from __future__ import annotations

import os
import re
from typing import Any

import msgspec

from berth.errors import InvalidArgument

VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


def bad_volume_name(name: str) -> InvalidArgument:
    """The local driver's refusal (its create's words: Linux's mount parser checks no name)."""
    return InvalidArgument(f'create {name}: "{name}" includes invalid characters for a local volume name, '
                           'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
                           'directory, use absolute path')
_PROPAGATION = ("private", "rprivate", "shared", "rshared", "slave", "rslave")


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
    idmap: bool = False        # -v src:dest:idmap (podman's): seen through the user namespace's map
    auto_propagation: bool = False  # rslave set by berthd (a source in the data root), not asked for
    # --mount's VolumeOptions for a volume the mount creates: {"driver", "options", "labels"}
    # (used at create, not kept)
    create_opts: dict[str, Any] | None = None


def clean_dest(dest: str) -> str:
    if not dest.startswith("/"):
        raise InvalidArgument(f"invalid mount path: '{dest}' mount path must be absolute")
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
    rw, prop, nocopy, idmap = True, "", False, False
    seen: dict[str, int] = {}  # moby's linuxValidMountMode: one of each kind at most
    for m in filter(None, mode.split(",")):
        if m == "idmap":
            idmap = True
            kind = "idmap"
        elif m in ("ro", "rw"):
            rw = m == "rw"
            kind = "rw"
        elif m in _PROPAGATION:
            prop = m
            kind = "propagation"
        elif m in ("z", "Z"):
            kind = "label"  # SELinux relabelling: nothing to do without SELinux
        elif m == "nocopy":
            nocopy = True
            kind = "copy"
        elif m in ("consistent", "cached", "delegated"):
            kind = "consistency"  # Docker Desktop's; Linux ignores them
        else:
            raise InvalidArgument(f"invalid mode: {mode}")
        seen[kind] = seen.get(kind, 0) + 1
        if seen[kind] > 1:
            raise InvalidArgument(f"invalid mode: {mode}")
    if not dest.startswith("/"):
        raise InvalidArgument(f"invalid volume specification: '{item}': invalid mount config for type "
                              f"\"{'bind' if src.startswith('/') else 'volume'}\": invalid mount path: '{dest}' mount path must be absolute")
    if src.startswith("/"):
        return MountPoint(type="bind", source=os.path.normpath(src), destination=dest, rw=rw, mode=mode,
                          propagation=prop, idmap=idmap)
    if not VOLUME_NAME.match(src):
        raise InvalidArgument(f"invalid volume specification: '{item}'")
    return MountPoint(type="volume", source=src, destination=dest, rw=rw, mode=mode, nocopy=nocopy, idmap=idmap)


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
        prop = bo.get("Propagation") or ""
        if prop and prop not in _PROPAGATION:
            raise InvalidArgument(f'invalid mount config for type "bind": invalid propagation mode: {prop}')
        if bo.get("ReadOnlyForceRecursive"):
            # berth's runtime makes read-only binds read-only on the top mount only, as a runtime
            # without recursive read-only support does (dockerd then keeps them non-recursive).
            if not ro:
                raise InvalidArgument("invalid mount config for type \"bind\": "
                                      "must not set ReadOnlyForceRecursive when ReadOnly is false")
            raise InvalidArgument("invalid mount config for type \"bind\": "
                                  "recursively read-only mounts are not supported by the runtime")
        return MountPoint(type="bind", source=os.path.normpath(src), destination=target, rw=not ro,
                          mode="mount-create" if bo.get("CreateMountpoint") else "mount", propagation=prop,
                          idmap=_idmap(bo))
    if kind == "volume":
        vo = m.get("VolumeOptions") or {}
        if src and not VOLUME_NAME.match(src):
            raise bad_volume_name(src)
        sub = vo.get("Subpath") or ""
        if sub and (os.path.isabs(sub) or ".." in sub.split("/")):
            raise InvalidArgument(f"invalid mount config for type \"volume\": subpath must be a relative "
                                  f"path within the volume: {sub}")
        return MountPoint(type="volume", source=src, destination=target, rw=not ro,
                          nocopy=bool(vo.get("NoCopy")), subpath=os.path.normpath(sub) if sub else "",
                          idmap=_idmap(vo), create_opts=_create_opts(vo))
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
        return MountPoint(type="tmpfs", destination=target, tmpfs_options=tmpfs_opts(",".join(opts)),
                          rw=not ro)
    raise InvalidArgument(f"invalid mount config for type \"{kind}\": mount type unknown" if kind else
                          "invalid mount config: mount type must not be empty")


def _idmap(options: dict[str, Any]) -> bool:
    """``BindOptions.Idmap`` / ``VolumeOptions.Idmap`` (berth's, as podman's ``--mount ...,idmap``):
    the mount is seen through the container's user namespace."""
    value = options.get("Idmap", False)
    if not isinstance(value, bool):
        raise InvalidArgument(f"invalid mount config: Idmap must be a boolean, not {value!r}")
    return value


# tmpfs options dockerd accepts in TmpfsOptions.Options (the rest are set by other fields).
_TMPFS_OPTIONS = {"exec", "noexec", "suid", "nosuid", "dev", "nodev", "atime", "noatime", "diratime",
                  "nodiratime", "relatime", "norelatime", "strictatime", "nr_inodes", "nr_blocks", "mpol",
                  "uid", "gid", "huge", "noswap"}


def tmpfs_opts(opts: str) -> list[str]:
    given = [o for o in (opts or "").split(",") if o]
    out = ["nosuid", "nodev", "noexec"]
    for o in given:
        if o in ("exec", "suid", "dev"):
            out = [x for x in out if x != "no" + o]
        out.append(o)
    if not any(o.startswith("mode=") for o in out):
        out.append("mode=1777")
    return out


def _create_opts(vo: dict[str, Any]) -> dict[str, Any] | None:
    dc = vo.get("DriverConfig") or {}
    out = {"driver": dc.get("Name") or "", "options": dc.get("Options") or None, "labels": vo.get("Labels") or None}
    return out if any(out.values()) else None
