"""Which runtime runs a container: berth's own, or an external OCI runtime (runc, crun).

daemon.json's ``runtimes`` (``--add-runtime NAME=PATH``) name external runtimes, as dockerd's;
``runc`` is also known when a runc binary is on the PATH (dockerd's built-in runtime), unless
configured otherwise. berth's own runtime is ``berth``. A create records the runtime by name in
HostConfig.Runtime (the default runtime when the request names none); each start looks the
name up again, so a SIGHUP that changes a runtime's path reaches the next start, as in dockerd.

For an external runtime the engine mounts the rootfs on the host before the shim starts
(``external.prepare``); the shim unmounts it when the container exits, and ``cleanup`` does
once more at remove, for a container whose shim was killed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from dataclasses import dataclass, field
from typing import Any

from berth.errors import InvalidArgument
from berth.runtime.external import OWN, OCIRuntime
from berth.state.paths import ExecRoot

log = logging.getLogger("berth.engine")


def with_found_runc(configured: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The configured runtimes, and ``runc`` when it is on the PATH and not configured."""
    found = shutil.which("runc")
    if "runc" in configured or found is None:
        return dict(configured)
    return {"runc": {"path": found}, **configured}


@dataclass
class Runtimes:
    configured: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {path, runtimeArgs}
    default: str = OWN
    exec_root: ExecRoot | None = None

    def names(self) -> list[str]:
        return [OWN, *self.configured]

    def check(self, name: str) -> str:
        """The runtime a create records (``""``: the default). Raises InvalidArgument."""
        name = name or self.default
        if name != OWN and name not in self.configured:
            raise InvalidArgument(f"unknown or invalid runtime name: {name}")
        return name

    def oci(self, name: str) -> OCIRuntime | None:
        """The external runtime named ``name``; None for berth's own (and for a name no longer
        configured: InvalidArgument, as dockerd refuses to start such a container)."""
        if self.check(name) == OWN:
            return None
        assert self.exec_root is not None
        conf = self.configured[name]
        return OCIRuntime(path=str(conf["path"]), root=str(self.exec_root.runtime_root(name)),
                          args=[str(a) for a in conf.get("runtimeArgs") or []])

    def info(self) -> dict[str, dict[str, Any]]:
        """/info's Runtimes."""
        return {OWN: {"path": "berth"}, **{n: dict(c) for n, c in self.configured.items()}}

    async def cleanup(self, name: str, cid: str, rootfs: str) -> None:
        """When a container has exited or is removed: if its rootfs is still mounted (its
        shim was killed before it could clean up, or the start failed), kill what is left
        of it through its runtime, forget it there, and unmount the rootfs."""
        if not os.path.ismount(rootfs):
            return
        if name == OWN:   # a rootless engine's fuse-overlayfs rootfs (the kernel's is the init's own)
            from berth.runtime import fuse_overlay
            await asyncio.to_thread(fuse_overlay.release, rootfs)
            return
        conf = self.configured.get(name)
        rt = None if conf is None or self.exec_root is None else OCIRuntime(
            path=str(conf["path"]), root=str(self.exec_root.runtime_root(name)))
        from berth.runtime import external

        def work() -> None:
            try:
                if rt is not None:
                    rt.delete(cid)
            except Exception as e:
                log.warning("%s: %s delete: %s", cid[:12], name, e)
            external.release(rootfs)
        await asyncio.to_thread(work)
