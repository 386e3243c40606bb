"""A CRI pod's /dev/shm on the engine's side (the mount itself: berth/runtime/pod_shm.py).

With the pod's IPC namespace (IPC at POD level) the CRI mounts a tmpfs at the sandbox's
directory (``<data-root>/containers/<sandbox>/shm``) at RunPodSandbox and each container of the
pod binds it as /dev/shm; a hostIPC pod's containers bind the host's /dev/shm. It is unmounted
when the sandbox stops or is removed (``docker rm -f`` of the pause too), and at berthd's start
(``sweep``) for every sandbox that is not running any more, or whose record is gone.

    pod_shm.mount(data, sid)
    pod_shm.source(data, sandbox)          # the bind's source for the pod's containers, or None
    pod_shm.unmount(data, sid)
    pod_shm.sweep(data, keep={sid, ...})   # the others' mounts go
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from pathlib import Path

from berth.engine.model import Container
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
