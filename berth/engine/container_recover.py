"""berthd's start (live restore): find the shims again, watch the living, record the exits of
those that died while berthd was away, abort the starts it was cut off in, finish removals,
sweep the directories no record knows, and start again what the restart policies say (the host
may have rebooted): dockerd's restore(), ``Monitor.should_restart_at_boot``.
"""

from __future__ import annotations

import asyncio
import logging
import os

from berth.engine import pod_shm, shims
from berth.engine.container_monitor import Monitor, kill_cgroup
from berth.engine.container_stop import Stopper
from berth.engine.container_table import ContainerTable, now
from berth.engine.model import Container, Status
from berth.runtime.shim.protocol import ExitStatus

log = logging.getLogger("berth.engine")


class Recovery:
    def __init__(self, table: ContainerTable, monitor: Monitor, stopper: Stopper):
        self.t = table
        self.monitor = monitor
        self.stopper = stopper

    async def recover(self, live_restore: bool = True) -> None:
        """Find the shims again: reattach to the living, record exits of the dead. Without
        ``live_restore`` the living are then stopped (dockerd's restore: shutdownContainer
        for a task containerd still has, then the restart policies)."""
        pod_shm.sweep(self.t.data, keep=self.t.by_id)   # before their directories go to the trash
        self._sweep_orphans()
        for sock in list(self.t.exec_root.shims.glob("*.sock")):
            if sock.stem not in self.t.by_id:  # a shim whose container record is gone
                await self._abort_shim(sock.stem)
        for c in list(self.t.by_id.values()):
            await self._recover_one(c)
        if self.t.attachments is not None:
            await self.t.attachments.recover(list(self.t.by_id.values()))
        if not live_restore:
            await self._stop_survivors()
        pod_shm.sweep(self.t.data, keep={c.id for c in self.t.by_id.values() if c.running})  # pods', shareables'

    async def _stop_survivors(self) -> None:
        """Stop what berthd's last run left running (it crashed, or live restore was turned
        off while it was down), all at once, as ``docker stop`` does: its exit is heard (die),
        then its policy applies as at boot (RestartCount from 0)."""
        alive = [c for c in self.t.by_id.values() if c.running and c.id in self.monitor.monitors]
        for c in alive:
            self.monitor.stopping_at_boot.add(c.id)
        results = await asyncio.gather(*(self.stopper.stop_container(c, None) for c in alive), return_exceptions=True)
        for c, r in zip(alive, results):
            if isinstance(r, BaseException):
                log.warning("stopping %s at start (live restore is off): %s", c.short_id, r)

    async def _recover_one(self, c: Container) -> None:
        if c.state.starting and not c.running:
            # berthd died between spawn and start: the init never ran. Abort it and leave
            # the container created, as if the start had failed.
            await self._abort_shim(c.id)
            c.state.starting = False
            c.state.pid = c.state.shim_pid = 0
            c.state.error = "start interrupted: berthd restarted"
            self.t.save(c)
            await self._sweep_cgroup(c)
        elif c.state.status == Status.CREATED and not c.running:
            # berthd may have died with a spawn in flight before it saved ``starting``: the
            # helper made the cgroup, the shim aborts on its own, but not before this check.
            await self._sweep_cgroup(c)
        elif c.running or c.state.starting:
            await self._reattach(c)
        elif c.host_config.AutoRemove and c.state.status == Status.EXITED or c.state.status == Status.REMOVING:
            async with self.t.lock(c.id):
                await self.stopper.remove_locked(c, force=True)
        elif c.state.status in (Status.EXITED, Status.RESTARTING):
            if self.monitor.should_restart_at_boot(c):
                self.monitor.restart_at_boot(c)
            elif c.state.status == Status.RESTARTING:  # berthd died during the back-off
                c.state.status = Status.EXITED
                self.t.save(c)

    async def _reattach(self, c: Container) -> None:
        if shims.alive(c.state.shim_pid, c.state.shim_start) and self.t.exec_root.shim_socket(c.id).exists():
            self.monitor.watch(c)
            if not c.state.starting:
                self.t.started(c.id)
            return
        status = shims.read_exit_file(self.t.data.container(c.id).exit)
        if status is None and c.running:
            # its shim died unheard (a host reboot, or killed too): what is left is killed, and
            # the exit is dockerd's for a task that is gone at restore, whose status is lost
            await self.monitor.shim_died(c.id)
            status = ExitStatus(exit_code=255, finished_at=now())
        elif status is None:
            status = ExitStatus(exit_code=c.state.exit_code, finished_at=now())
        if c.state.starting and not c.running:
            c.state.starting = False
            self.t.save(c)
            return
        await self.monitor.exited(c.id, status, boot=True)

    async def _sweep_cgroup(self, c: Container) -> None:
        """Kill what is left in a never-started container's cgroup and remove it (one stat
        when there is none, the common case)."""
        cg = self.t.cgroup(c)
        first = next(iter(cg.paths().values()), None)  # a cgroup is made in every hierarchy at once
        if first is not None and os.path.isdir(first):
            await asyncio.get_running_loop().run_in_executor(None, kill_cgroup, cg)

    async def _abort_shim(self, cid: str) -> None:
        """Kill a shim's container before it ever started (the shim then exits)."""
        sock = self.t.exec_root.shim_socket(cid)
        try:
            await shims.call(sock, shims.Kill(signal=9), timeout=5)
        except (shims.ShimGone, ConnectionError, asyncio.TimeoutError):
            return
        for _ in range(100):  # the shim removes its socket as it leaves
            if not sock.exists():
                return
            await asyncio.sleep(0.01)

    def _sweep_orphans(self) -> None:
        """Container dirs no record knows: a create or remove cut short by a crash; and
        what the trash still held."""
        self.t.trash.sweep()
        try:
            entries = list(self.t.data.containers.iterdir())
        except FileNotFoundError:
            return
        for d in entries:
            if d.name not in self.t.by_id:
                q = self.t.db.quarantine
                if self.t.db.quarantined or (q / f"containers-{d.name}").exists():
                    # its record was lost (unreadable), not the container: keep its files
                    dest = q / "containers"
                    dest.mkdir(parents=True, exist_ok=True)
                    os.replace(d, dest / d.name)
                else:
                    self.t.trash.discard(d)
