"""A shared /dev/shm on the engine's side (the mount itself: berth/runtime/pod_shm.py): a CRI
pod's, and a container's under Docker's IPC modes (dockerd's setupIPCDirs and IpcMounts).

With the pod's IPC namespace (IPC at POD level) the CRI mounts a tmpfs at the sandbox's
directory (``<data-root>/containers/<sandbox>/shm``) at RunPodSandbox and each container of the
pod binds it as /dev/shm; a hostIPC pod's containers bind the host's /dev/shm. It is unmounted
when the sandbox stops or is removed (``docker rm -f`` of the pause too), and at berthd's start
(``sweep``) for every sandbox that is not running any more, or whose record is gone.

    pod_shm.mount(data, sid)
    pod_shm.source(data, sandbox)          # the bind's source for the pod's containers, or None
    pod_shm.unmount(data, sid)
    pod_shm.sweep(data, keep={sid, ...})   # the others' mounts go

A container's ``HostConfig.IpcMode`` picks its /dev/shm (``ipc_apply``, at start, on the spec
whose default /dev/shm tmpfs is there: a user's mount at /dev/shm wins, as dockerd's
HasMountFor): ``private`` keeps that tmpfs; ``none`` has no /dev/shm; ``host`` binds the
host's; ``shareable`` binds a tmpfs of ShmSize mounted at ``<data-root>/containers/<id>/shm``
(unmounted when the container exits or goes, and by the recovery's sweep); ``container:X``
joins X's and binds X's /dev/shm (X running and shareable, or host, or itself joined to one).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from berth.engine.model import Container, Status
from berth.errors import Conflict, InvalidArgument, NotFound
from berth.oci.spec import Mount
from berth.runtime import pod_shm
from berth.state.paths import DataRoot

log = logging.getLogger("berth.engine")

HOST = "/dev/shm"


def mount(data: DataRoot, sid: str) -> None:
    pod_shm.mount(data.container(sid).shm)


def unmount(data: DataRoot, sid: str) -> None:
    """Unmount the pod's /dev/shm (none mounted: nothing to do). A failure is logged: the
    sandbox's stop or removal goes on."""
    _unmount(data.container(sid).shm)


def _unmount(path: Path) -> None:
    try:
        pod_shm.unmount(path)
    except OSError as e:
        log.warning("pod /dev/shm %s: %s", path, e)


def source(data: DataRoot, sandbox: Container) -> str | None:
    """What the pod's containers bind at /dev/shm: the host's for a hostIPC pod, else the
    sandbox's tmpfs while it is mounted (None otherwise: a sandbox of an older berthd, or a
    stopped one; the container then gets a /dev/shm of its own)."""
    if sandbox.host_config.IpcMode == "host":
        return HOST
    path = data.container(sandbox.id).shm
    return str(path) if os.path.ismount(path) else None


def sweep(data: DataRoot, keep: Collection[str]) -> None:
    """Unmount each pod /dev/shm below the data root (containers and trash) but those of the
    sandboxes in ``keep``."""
    for path in pod_shm.mounted(data.root, "shm"):
        owner = path.parent
        if owner.parent == data.containers and owner.name in keep:
            continue
        if owner.parent in (data.containers, data.trash):
            _unmount(path)


def _donor_shm(ref: str, data: DataRoot, get: Callable[[str], Container]) -> str | None:
    """``--ipc container:<ref>``: the /dev/shm the donor shares; it must exist, run and share
    one, else dockerd 28's words (setupIPCDirs/getIPCContainer: 400, 409 when not running).
    None for a pod's pause."""
    try:
        donor = get(ref)
    except NotFound as e:
        raise InvalidArgument(f"failed to join IPC namespace: {e}") from None
    if donor.state.status not in (Status.RUNNING, Status.PAUSED) or not donor.state.pid:  # IsRunning
        raise Conflict(f"failed to join IPC namespace: Container {ref} is not running")
    if donor.bare:  # a CRI pod's pause: the CRI binds the pod's /dev/shm itself (``source``)
        return None
    src = _shared(data, donor, get)
    if src is None:
        raise InvalidArgument(f"failed to join IPC namespace: container {ref}: non-shareable IPC "
                              "(hint: use IpcMode:shareable for the donor container)")
    return src


def ipc_apply(spec: Any, data: DataRoot, c: Container, get: Callable[[str], Container]) -> None:
    """Give ``spec`` (an oci.Spec) the /dev/shm of ``c``'s IpcMode (see the module's doc);
    ``get`` finds a container by reference. Mounts the tmpfs of a shareable container; raises
    InvalidArgument or Conflict for a donor that cannot be joined."""
    mode = c.host_config.IpcMode
    donor = _donor_shm(mode.split(":", 1)[1], data, get) if mode.startswith("container:") else None
    mounts = list(spec.mounts or [])
    at = next((i for i, m in enumerate(mounts) if m.destination == "/dev/shm" and m.source == "shm"), None)
    if at is None or c.bare:  # the user's (or the pod's) mount, or a pause with no mounts
        return
    src = donor
    if mode == "none":
        del mounts[at]
    elif mode == "host":
        src = HOST
    elif mode == "shareable":
        pod_shm.mount(data.container(c.id).shm, c.host_config.ShmSize or pod_shm.SIZE)
        src = str(data.container(c.id).shm)
    if src is not None:
        mounts[at] = Mount(destination="/dev/shm", type="bind", source=src, options=["rbind", "rprivate"])
    spec.mounts = mounts


def _shared(data: DataRoot, donor: Container, get: Callable[[str], Container], depth: int = 0) -> str | None:
    """The /dev/shm ``donor`` shares (dockerd's ShmPath), or None: not shareable."""
    mode = donor.host_config.IpcMode
    if mode == "host":
        return HOST
    if mode == "shareable":
        path = data.container(donor.id).shm
        return str(path) if os.path.ismount(path) else None
    if mode.startswith("container:") and depth < 8:
        try:
            return _shared(data, get(mode.split(":", 1)[1]), get, depth + 1)
        except NotFound:
            return None
    return None


def ipc_release(data: DataRoot, c: Container) -> None:
    """A shareable container exited or went: its /dev/shm tmpfs is unmounted (dockerd's
    UnmountIpcMount; a joiner still running keeps its bind until it exits)."""
    if not c.bare and c.host_config.IpcMode == "shareable":
        _unmount(data.container(c.id).shm)
