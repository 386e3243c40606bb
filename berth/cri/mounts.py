"""A pod container's mounts and devices (ContainerConfig.mounts and .devices) as engine
HostConfig fields, with the propagation rules the kubelet and containerd apply:

- PROPAGATION_PRIVATE: ``rprivate``;
- PROPAGATION_HOST_TO_CONTAINER: ``rslave`` (the host's mounts below the source appear in the
  container), the source on a shared or slave mount;
- PROPAGATION_BIDIRECTIONAL: ``rshared`` (and the container's root too: its mounts below the
  target reach the host), only for a privileged container, the source on a shared mount.

A device is the host node made at ``container_path`` and allowed in the devices cgroup with its
``permissions`` (``rwm`` when empty).

    binds(config.mounts, privileged)  -> ["/src:/dst:rw,rslave", ...]
    devices(config.devices)           -> [{"PathOnHost": ..., "PathInContainer": ..., "CgroupPermissions": ...}]
"""

from __future__ import annotations

from typing import Any

from cri_api.v1 import api_pb2 as pb

from berth.engine import propagation as engine_propagation
from berth.errors import InvalidArgument

_MODES = {pb.MountPropagation.PROPAGATION_PRIVATE: "rprivate",
          pb.MountPropagation.PROPAGATION_HOST_TO_CONTAINER: "rslave",
          pb.MountPropagation.PROPAGATION_BIDIRECTIONAL: "rshared"}


def binds(mounts: Any, privileged: bool) -> list[str]:
    """``src:dst:rw|ro,<propagation>`` for each mount (Docker's ``-v`` form)."""
    return [_bind(m, privileged) for m in mounts]


def _bind(m: Any, privileged: bool) -> str:
    if not (m.host_path and m.container_path):
        raise InvalidArgument("a mount needs a host_path and a container_path")
    mode = _MODES.get(m.propagation, "rprivate")
    if mode == "rshared" and not privileged:
        raise InvalidArgument(f"mount {m.container_path}: Bidirectional mount propagation is available only "
                              "to privileged containers")
    engine_propagation.ensure(m.host_path, mode)
    return f"{m.host_path}:{m.container_path}:{'ro' if m.readonly else 'rw'},{mode}"


def devices(devs: Any) -> list[dict[str, str]]:
    out = []
    for d in devs:
        if not d.host_path:
            raise InvalidArgument("a device needs a host_path")
        perms = d.permissions or "rwm"
        if set(perms) - set("rwm"):
            raise InvalidArgument(f"device {d.host_path}: invalid permissions {d.permissions!r} (a combination "
                                  "of r, w and m)")
        out.append({"PathOnHost": d.host_path, "PathInContainer": d.container_path or d.host_path,
                    "CgroupPermissions": perms})
    return out
