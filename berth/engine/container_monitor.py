"""Watching running containers: one task per container waits on its shim for the exit, records
it (``exited``: state, events, exit hooks such as health, waiters, ``--rm``), and applies the
restart policy (Docker's restart manager: no, always, unless-stopped, on-failure[:N], with a
back-off from 100 ms, doubling to a minute, reset after 10 s of running). At berthd's start the
policy is applied once more to what is not running (``should_restart_at_boot``, dockerd's
restore()).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Awaitable, Callable

from berth.engine import pod_shm, shims
from berth.engine.container_table import ContainerTable, now
from berth.engine.logs import parse_time
from berth.engine.model import Container, Status
from berth.errors import InvalidArgument
from berth.runtime.cgroups import open_cgroup
from berth.runtime.shim.protocol import ExitStatus

if TYPE_CHECKING:
    from berth.runtime.cgroups import Cgroup

log = logging.getLogger("berth.engine")

StartFn = Callable[[str, bool], Awaitable[None]]
RemoveFn = Callable[[Container, bool], Awaitable[None]]


async def _unbound(*_a: object) -> None:
    raise RuntimeError("Monitor used before bind()")


class Monitor:
    def __init__(self, table: ContainerTable):
        self.t = table
        self.monitors: dict[str, asyncio.Task[None]] = {}
        self.stopping_at_boot: set[str] = set()  # stopped by a start without live restore
        self.restarts: dict[str, asyncio.Task[None]] = {}  # restart-policy restarts waiting
        self.backoff: dict[str, float] = {}  # their next delay (Docker: 100 ms, doubling)
        self._tasks: set[asyncio.Task[None]] = set()
        self._start: StartFn = _unbound
        self._remove: RemoveFn = _unbound

    def bind(self, start: StartFn, remove: RemoveFn) -> None:
        """The steps an exit leads to: a policy restart, or the removal of a ``--rm`` container."""
        self._start = start
        self._remove = remove

    # -- exits ------------------------------------------------------------------------------

    def watch(self, c: Container) -> None:
        self.monitors[c.id] = asyncio.get_running_loop().create_task(self._watch(c.id))

    async def _watch(self, cid: str) -> None:
        sock = self.t.exec_root.shim_socket(cid)
        c = self.t.by_id.get(cid)
        cgroups_path = c.cgroups_path if c is not None and self.t.defaults.cgroups else ""
        while True:
            released: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.t.releasing[cid] = released
            status = await shims.wait_exit(sock, released)
            if status is not None:
                # the shim told of the exit: its EOF then says it let go of the cgroup (only
                # then may a cgroup still there be a leftover: the container's processes are gone)
                released.add_done_callback(lambda f: self._released(cid, f, cgroups_path))
                break
            if self.t.releasing.get(cid) is released:
                del self.t.releasing[cid]
            status = shims.read_exit_file(self.t.data.container(cid).exit)
            if status is not None:  # the exit came before the Wait (an early start): it is on record
                break
            # No word from the shim: if it vanished, its exit file says what happened, if it got
            # to write it. A shim still alive a second later only refused or dropped the Wait
            # (a full listen backlog after a restart): watch it again; never kill a live one.
            for _ in range(20):
                c = self.t.by_id.get(cid)
                if c is None:
                    return
                if not shims.alive(c.state.shim_pid, c.state.shim_start):
                    break
                await asyncio.sleep(0.05)
            else:
                log.warning("container %s: its shim is alive but did not answer the Wait; watching again", cid[:12])
                continue
            status = shims.read_exit_file(self.t.data.container(cid).exit) or await self.shim_died(cid)
            break
        self.monitors.pop(cid, None)
        await self.exited(cid, status, stopped_at_boot=cid in self.stopping_at_boot)

    def _released(self, cid: str, released: asyncio.Future[None], cgroups_path: str) -> None:
        """The shim let go of an exited container (its Wait connection's EOF): it removed the
        cgroup after telling the waiters, unless it died in between; then remove it here."""
        ours = self.t.releasing.get(cid) is released
        if ours:
            del self.t.releasing[cid]
        cg = _left_behind(cgroups_path)
        if cg is None:
            return
        log.warning("container %s: its shim left the cgroup behind: removing it", cid[:12])
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(kill_cgroup, cg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if ours:  # a removal or a new start waits for this one instead
            self.t.releasing[cid] = task
            task.add_done_callback(lambda t: self.t.releasing.pop(cid) if self.t.releasing.get(cid) is t else None)

    async def shim_died(self, cid: str) -> ExitStatus:
        """The shim died before it recorded an exit (``kill -9``): its container's init was its
        child, and nobody holds its stdio or will reap it. As containerd does for a dead shim,
        kill whatever is left in the container's cgroup and report the exit as a SIGKILL (137)."""
        log.warning("container %s: its shim died; killing what is left of it", cid[:12])
        c = self.t.by_id.get(cid)
        if c is not None:
            await asyncio.get_running_loop().run_in_executor(None, kill_cgroup, self.t.cgroup(c))
        self.t.exec_root.shim_socket(cid).unlink(missing_ok=True)
        return ExitStatus(exit_code=128 + signal.SIGKILL, finished_at=now())

    async def exited(self, cid: str, status: ExitStatus, boot: bool = False, stopped_at_boot: bool = False) -> None:
        """Record an exit. ``boot``: one that happened while berthd was away, found at its start:
        no "die" (nobody heard it, as with dockerd's restore) and the restart policy at boot.
        ``stopped_at_boot``: berthd's start stopped it (no live restore): heard, then the
        policy at boot."""
        self.stopping_at_boot.discard(cid)
        c = self.t.by_id.get(cid)
        if c is None:
            return
        async with self.t.lock(cid):
            _record_exit(c, status)
            await self.t.defaults.runtimes.cleanup(c.host_config.Runtime, cid, str(self.t.data.container(cid).rootfs))
            pod_shm.ipc_release(self.t.data, c)
            self.t.save_soon(c)  # a full disk: kept in memory, written once there is room
            if self.t.attachments is not None:
                try:
                    await self.t.attachments.stopped(c)
                except Exception as e:  # a full disk again: waiters must still hear of the exit
                    log.error("container %s: releasing its network and mounts: %s", cid[:12], e)
            if status.oom_killed:
                self.t.on_event("oom", c, {})
            if not boot:
                self.t.on_event("die", c, {"exitCode": str(status.exit_code)})
            for hook in self.t.exit_hooks:
                hook(cid)
            self.t.resolve_exit(cid, status)
            if c.host_config.AutoRemove:
                await self.auto_remove(c, status)
            elif boot or stopped_at_boot:
                if self.should_restart_at_boot(c):
                    self.restart_at_boot(c)
            elif self.should_restart(c):
                self.schedule_restart(c)

    async def auto_remove(self, c: Container, status: ExitStatus) -> None:
        """``--rm``, after an exit or a failed start. If the disk refuses (full), the waiters for the removal get the exit
        anyway (as dockerd's SetRemovalError) and the removal is retried every second."""
        try:
            await self._remove(c, True)
        except OSError as e:
            log.error("container %s: removing it (--rm), retried every second: %s", c.id[:12], e)
            for f in self.t.remove_waiters.pop(c.id, []):
                if not f.done():
                    f.set_result(status)
            task = asyncio.get_running_loop().create_task(self._remove_later(c.id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _remove_later(self, cid: str) -> None:
        while (c := self.t.by_id.get(cid)) is not None:
            await asyncio.sleep(1)
            try:
                async with self.t.lock(cid):
                    await self._remove(c, True)
            except OSError:
                continue

    # -- restart policies -------------------------------------------------------------------

    def should_restart(self, c: Container) -> bool:
        """Docker's restart manager: no, always, unless-stopped, on-failure[:N]."""
        rp = c.host_config.RestartPolicy
        if c.manually_stopped or c.id not in self.t.by_id or self.t.shutting_down:
            return False
        if rp.Name == "always" or rp.Name == "unless-stopped":
            return True
        if rp.Name == "on-failure":
            return c.state.exit_code != 0 and (rp.MaximumRetryCount <= 0 or c.restart_count < rp.MaximumRetryCount)
        return False

    def should_restart_at_boot(self, c: Container) -> bool:
        """dockerd's restore(): a fresh restart manager asked about a container that is not
        running (and was started before). The user's stop counts for ``unless-stopped`` only:
        ``always`` starts again when the daemon does, ``on-failure`` looks at the exit code."""
        rp = c.host_config.RestartPolicy
        if c.id not in self.t.by_id or self.t.shutting_down or _parse_iso(c.state.started_at) is None:
            return False
        if rp.Name == "always":
            return True
        if rp.Name == "unless-stopped":
            return not c.manually_stopped
        if rp.Name == "on-failure":
            return c.state.exit_code != 0 and (rp.MaximumRetryCount <= 0 or c.restart_count < rp.MaximumRetryCount)
        return False

    def restart_at_boot(self, c: Container) -> None:
        """Start it now, as a start of the daemon's: RestartCount back to 0 and no back-off
        (dockerd's containerStart with resetRestartManager)."""
        c.manually_stopped = False
        self._schedule(c, 0.0, count=False)

    def schedule_restart(self, c: Container) -> None:
        ran = (_parse_iso(c.state.finished_at) or 0) - (_parse_iso(c.state.started_at) or 0)
        delay = 0.1 if ran >= 10 else self.backoff.get(c.id, 0.1)
        self.backoff[c.id] = min(delay * 2, 60.0)
        self._schedule(c, delay, count=True)

    def _schedule(self, c: Container, delay: float, count: bool) -> None:
        c.state.status = Status.RESTARTING
        self.t.save(c)
        task = asyncio.get_running_loop().create_task(self._restart_later(c.id, delay, count))
        self.restarts[c.id] = task
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    async def _restart_later(self, cid: str, delay: float, count: bool) -> None:
        await asyncio.sleep(delay)
        self.restarts.pop(cid, None)
        c = self.t.by_id.get(cid)
        if c is None or c.state.status != Status.RESTARTING:
            return
        c.restart_count = c.restart_count + 1 if count else 0
        try:
            await self._start(cid, True)
        except Exception as e:  # the restart itself failed: record it; try again later
            log.warning("restart of %s failed: %s", cid[:12], e)
            c = self.t.by_id.get(cid)
            if c is not None and c.state.status != Status.RUNNING:
                c.state.status = Status.EXITED
                self.t.save(c)
                if self.should_restart(c):
                    self.schedule_restart(c)

    def cancel_restart(self, c: Container) -> bool:
        """Drop a waiting policy restart; True if the container was "restarting"."""
        task = self.restarts.pop(c.id, None)
        if task is not None:
            task.cancel()
        if c.state.status == Status.RESTARTING:
            c.state.status = Status.EXITED
            self.t.save(c)
            return True
        return False

    def forget(self, cid: str) -> None:
        self.backoff.pop(cid, None)


def _left_behind(cgroups_path: str) -> Cgroup | None:
    """The container's cgroup if it is still there (it is made in every hierarchy at once)."""
    if not cgroups_path:
        return None
    try:
        cg = open_cgroup(cgroups_path)
        first = next(iter(cg.paths().values()), None)
        return cg if first is not None and os.path.isdir(first) else None
    except Exception:
        return None


def kill_cgroup(cg: Cgroup) -> None:
    """SIGKILL every process of ``cg``, wait (5 s at most) for them to go, remove it."""
    deadline = time.monotonic() + 5
    try:
        while cg.pids() and time.monotonic() < deadline:
            cg.kill_all(signal.SIGKILL)
            time.sleep(0.02)
        cg.destroy()
    except OSError as e:
        log.error("removing %s: %s", cg.path, e)


def _record_exit(c: Container, status: ExitStatus) -> None:
    c.state.status = Status.EXITED
    c.state.pid = 0
    c.state.shim_pid = 0
    c.state.exit_code = status.exit_code
    c.state.oom_killed = status.oom_killed
    c.state.finished_at = status.finished_at or now()
    c.state.starting = False
    if status.error:
        c.state.error = status.error


def _parse_iso(t: str) -> float | None:
    try:
        return parse_time(t) if t and not t.startswith("0001-") else None
    except InvalidArgument:
        return None
