"""What changes a living container or watches it without ending it: pause and unpause (the
freezer), update (resources to the cgroup, the restart policy), wait, attach and resize, and
the process list and the size of its writable layer.
"""

from __future__ import annotations

import asyncio
import os

import msgspec

from berth.engine import hostspec, hugepages, shims
from berth.engine.container_create import check_host_config
from berth.engine.container_defaults import NO_CGROUPS
from berth.engine.container_start import SpecBuilder
from berth.engine.container_table import ContainerTable
from berth.engine.model import Container, Status
from berth.engine.volume_files import du
from berth.errors import Conflict, InvalidArgument, RuntimeFailure
from berth.runtime.shim.protocol import ExitStatus

UPDATABLE = ("CpuShares", "Memory", "NanoCpus", "BlkioWeight", "CpuPeriod", "CpuQuota", "CpusetCpus",
             "CpusetMems", "MemoryReservation", "MemorySwap", "PidsLimit", "CpuRealtimePeriod",
             "CpuRealtimeRuntime")

Stream = shims.Stream


class Operations:
    def __init__(self, table: ContainerTable, specs: SpecBuilder):
        self.t = table
        self.specs = specs

    # -- pause ------------------------------------------------------------------------------

    async def pause(self, ref: str) -> None:
        c = self.t.get(ref)
        async with self.t.lock(c.id):
            if c.state.status == Status.PAUSED:
                raise Conflict(f"Container {c.id} is already paused")
            if c.state.status != Status.RUNNING:
                raise Conflict(f"Container {c.id} is not running")
            self._need_cgroups("pause", c)
            await asyncio.get_running_loop().run_in_executor(None, self.t.cgroup(c).freeze)
            c.state.status = Status.PAUSED
            self.t.save(c)
        self.t.on_event("pause", c, {})

    async def unpause(self, ref: str) -> None:
        c = self.t.get(ref)
        async with self.t.lock(c.id):
            if c.state.status != Status.PAUSED:
                raise Conflict(f"Container {c.id} is not paused")
            await asyncio.get_running_loop().run_in_executor(None, self.t.cgroup(c).thaw)
            c.state.status = Status.RUNNING
            self.t.save(c)
        self.t.on_event("unpause", c, {})

    # -- update -----------------------------------------------------------------------------

    async def update(self, ref: str, changes: dict[str, object],
                     hugepage_limits: dict[str, int] | None = None) -> list[str]:
        """Resources and the restart policy of a container, and (the CRI's) hugepage limits,
        page size -> bytes, replacing those of the same sizes; applied to its cgroup if running."""
        c = self.t.get(ref)
        async with self.t.lock(c.id):
            hc = msgspec.structs.replace(c.host_config)
            for k in UPDATABLE:
                if k in changes and changes[k] is not None:
                    setattr(hc, k, changes[k])
            if hc.Memory and "MemorySwap" not in changes and c.host_config.MemorySwap > 0:
                hc.MemorySwap = max(hc.MemorySwap, hc.Memory * 2)
            rp = changes.get("RestartPolicy")
            if isinstance(rp, dict) and rp.get("Name") is not None:
                hc.RestartPolicy = msgspec.structs.replace(
                    hc.RestartPolicy, Name=rp.get("Name") or "no", MaximumRetryCount=int(rp.get("MaximumRetryCount") or 0))
                if hc.AutoRemove and hc.RestartPolicy.Name not in ("", "no"):
                    raise InvalidArgument("Restart policy cannot be updated because AutoRemove is enabled for the container")
            if c.running and hc.Memory and 0 < hc.MemorySwap < hc.Memory:
                raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
            check_host_config(hc)
            pages = {**c.hugepages, **hugepage_limits} if hugepage_limits else c.hugepages
            if c.running:
                await self._apply_resources(c, msgspec.structs.replace(c, host_config=hc), hugepage_limits or {})
            c.host_config, c.hugepages = hc, pages
            self.t.save(c)
        self.t.on_event("update", c, {})
        return []

    async def _apply_resources(self, c: Container, updated: Container, pages: dict[str, int]) -> None:
        spec = self.specs.spec(updated, self.t.images.get_by_id(c.image_id))
        hostspec.resources(spec, updated.host_config)
        hugepages.apply(spec, pages)
        resources = spec.linux.resources if spec.linux is not None else None
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.t.cgroup(c).update, resources)
        except (OSError, ValueError) as e:
            raise InvalidArgument(f"Cannot update container {c.id}: {e}") from None

    # -- wait -------------------------------------------------------------------------------

    def wait_future(self, ref: str, condition: str) -> asyncio.Future[ExitStatus]:
        """Registers the wait now (before the caller answers with headers); resolves later."""
        c = self.t.get(ref)
        loop = asyncio.get_running_loop()
        if condition in ("", "not-running"):
            if not c.running and not c.state.starting:
                f: asyncio.Future[ExitStatus] = loop.create_future()
                f.set_result(ExitStatus(exit_code=c.state.exit_code))
                return f
            return self.t.exit_future(c.id)
        if condition == "next-exit":
            return self.t.exit_future(c.id)
        if condition == "removed":
            f = loop.create_future()
            self.t.remove_waiters.setdefault(c.id, []).append(f)
            return f
        raise InvalidArgument(f"invalid condition: {condition!r}")

    # -- attach -----------------------------------------------------------------------------

    async def attach_stream(self, ref: str, stdin: bool, stdout: bool, stderr: bool) -> Stream:
        return await self.attach_soon(ref, stdin, stdout, stderr)

    def attach_soon(self, ref: str, stdin: bool, stdout: bool, stderr: bool) -> asyncio.Future[Stream]:
        """A subscription to the container's output (and a way to its stdin).

        If the container is not running, this waits for its next start and subscribes before
        the init is released, so not a byte of output is missed (``docker run`` attaches first).

        The subscription is made before this returns: a client told it is attached only after
        this call cannot race its own start (an early start would release the init first).
        """
        c = self.t.get(ref)
        sock = self.t.exec_root.shim_socket(c.id)
        if c.running and not c.state.starting:
            return asyncio.ensure_future(shims.attach(sock, stdin, stdout, stderr))
        pending = shims.PendingAttach(sock, stdin, stdout, stderr)
        self.t.pending_attach.setdefault(c.id, []).append(pending)
        return pending.fut

    async def resize(self, ref: str, h: int, w: int) -> None:
        """The container's terminal size (the kernel then sends SIGWINCH inside)."""
        c = self.t.get(ref)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if not c.config.Tty:
            return
        try:
            await shims.call(self.t.exec_root.shim_socket(c.id), shims.Resize(h=h, w=w))
        except shims.ShimGone:
            pass

    async def reopen_cri_log(self, ref: str) -> None:
        """A new CRI log file at its path (the kubelet renamed the old one): the shim reopens it."""
        c = self.t.get(ref)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if not c.cri_log:
            raise InvalidArgument(f"container {c.id} has no CRI log")
        try:
            reply = await shims.call(self.t.exec_root.shim_socket(c.id), shims.ReopenLog())
        except shims.ShimGone:
            raise Conflict(f"Container {c.id} is not running") from None
        if reply.error:
            raise RuntimeFailure(f"reopen the log of {c.id}: {reply.error}")

    # -- top / size -------------------------------------------------------------------------

    def _need_cgroups(self, what: str, c: Container) -> None:
        """Freezing needs the container's cgroup, which a rootless engine without delegation
        does not make."""
        if not self.t.defaults.cgroups:
            raise InvalidArgument(f"cannot {what} container {c.id}: {NO_CGROUPS}")

    def pids(self, c: Container) -> list[int]:
        if not self.t.defaults.cgroups:
            return _pid_namespace_members(c.state.pid)
        try:
            return self.t.cgroup(c).pids()
        except OSError:
            return [c.state.pid] if c.state.pid else []

    def size_rw(self, c: Container) -> int:
        return du(self.t.data.container(c.id).upper)


def _pid_namespace_members(init: int) -> list[int]:
    """Without a cgroup: the processes in the pid namespace of the container's init."""
    if not init:
        return []
    try:
        ns = os.readlink(f"/proc/{init}/ns/pid")
    except OSError:
        return []
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.readlink(f"/proc/{p}/ns/pid") == ns:
                    out.append(int(p))
            except OSError:
                pass
    return sorted(out)

