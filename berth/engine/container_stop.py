"""Ending a container: kill (a signal), stop (the stop signal, the grace period, then SIGKILL),
remove (with ``-f`` a kill first), and the stop of every container at berthd's shutdown.

Signals go under the container's lock, so that the "die" the monitor records comes after the
"kill" event. Stop, kill and remove are manual: the restart policy leaves the container alone.
"""

from __future__ import annotations

import asyncio
import logging
import signal as signal_mod

from berth.engine import pod_shm, shims
from berth.engine.container_monitor import Monitor
from berth.engine.container_table import ContainerTable, NoSuchContainer
from berth.engine.model import Container, Status
from berth.errors import BerthError, Conflict, InvalidArgument, NotModified, RuntimeFailure
from berth.runtime.shim.protocol import ExitStatus

log = logging.getLogger("berth.engine")
DEFAULT_STOP_TIMEOUT = 10  # seconds: dockerd's, for a container created without --stop-timeout
_SHUTDOWN_GRACE = 5        # dockerd's: berthd's exit waits for a container's stop timeout + this


def stop_timeout(c: Container) -> int:
    return c.config.StopTimeout if c.config.StopTimeout is not None else DEFAULT_STOP_TIMEOUT


def parse_signal(s: str | int | None, default: int = signal_mod.SIGKILL) -> int:
    """A signal by number, or by name with or without SIG (Docker's ParseSignal)."""
    if s is None or s == "":
        return default
    if isinstance(s, int) or str(s).isdigit():
        n = int(s)
        if n <= 0 or n > 64:
            raise InvalidArgument(f"Invalid signal: {s}")
        return n
    name = str(s).upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name.startswith("SIGRTMIN+") or name.startswith("SIGRTMAX-"):
        base = signal_mod.SIGRTMIN if "MIN" in name else signal_mod.SIGRTMAX
        off = int(name.split("+" if "MIN" in name else "-")[1])
        return base + off if "MIN" in name else base - off
    try:
        return int(signal_mod.Signals[name])
    except KeyError:
        raise InvalidArgument(f"Invalid signal: {s}") from None


class Stopper:
    def __init__(self, table: ContainerTable, monitor: Monitor):
        self.t = table
        self.monitor = monitor

    # -- kill -------------------------------------------------------------------------------

    async def kill(self, ref: str, sig: str | int | None) -> None:
        """Deliver a signal. SIGKILL returns only once the exit is recorded (as dockerd's Kill):
        clients remove the container right after, and inspect must already say exited."""
        c = self.t.get(ref)
        signo = parse_signal(sig, signal_mod.SIGKILL)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if signo in (signal_mod.SIGKILL, signal_mod.SIGTERM, signal_mod.SIGINT) and not self.t.shutting_down:
            c.manually_stopped = True
        if self.monitor.cancel_restart(c):
            return
        waiter = await self._send(c, signo)
        if signo == signal_mod.SIGKILL and waiter is not None:
            await self._await_exit(waiter, 10)

    async def _send(self, c: Container, signo: int) -> asyncio.Future[ExitStatus] | None:
        """Signal the container and emit "kill", under its lock so that the "die" recorded by
        the monitor comes after; returns a future for its exit, None if it had exited already."""
        async with self.t.lock(c.id):
            if not c.running or c.id not in self.t.by_id:
                return None
            waiter = self.t.exit_future(c.id)
            await self._signal(c, signo)
            self.t.on_event("kill", c, {"signal": str(signo)})
            return waiter

    @staticmethod
    async def _await_exit(waiter: asyncio.Future[ExitStatus], timeout: float) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except asyncio.TimeoutError:
            # dockerd's words; a 500, as there (BerthError maps to no client-error status)
            raise BerthError("Tried to kill container, but did not receive an exit event") from None

    async def _signal(self, c: Container, signo: int) -> None:
        try:
            reply = await shims.call(self.t.exec_root.shim_socket(c.id), shims.Kill(signal=signo))
        except shims.ShimGone:
            return
        if reply.error is not None:
            raise RuntimeFailure(reply.error)
        if c.state.status == Status.PAUSED:
            # a frozen process acts on the signal only once thawed (as dockerd does)
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.t.cgroup(c).thaw)
            except OSError:
                pass
            c.state.status = Status.RUNNING
            self.t.save(c)

    # -- stop -------------------------------------------------------------------------------

    async def stop(self, ref: str, timeout: int | None, sig: str | None = None) -> None:
        c = self.t.get(ref)
        if not c.running:
            raise NotModified("container already stopped")
        c.manually_stopped = True
        self.t.save(c)
        if self.monitor.cancel_restart(c):
            self.t.on_event("stop", c, {})
            return
        await self.stop_container(c, timeout, sig)

    async def stop_container(self, c: Container, timeout: int | None, sig: str | None = None) -> None:
        """dockerd's containerStop: the stop signal, the grace period, then SIGKILL; returns once
        the exit is recorded. Events: kill (the signal), [kill (9),] die, stop."""
        if timeout is None:
            timeout = stop_timeout(c)
        signo = parse_signal(sig or c.config.StopSignal, signal_mod.SIGTERM)
        waiter = await self._send(c, signo)
        if waiter is not None:
            if timeout < 0:
                await waiter
            else:
                try:
                    await asyncio.wait_for(asyncio.shield(waiter), timeout)
                except asyncio.TimeoutError:
                    await self._send(c, signal_mod.SIGKILL)
                    await self._await_exit(waiter, 10)
        self.t.on_event("stop", c, {})

    async def shutdown(self) -> None:
        """Stop every running container as ``docker stop`` does (its stop signal and timeout),
        all at once, as dockerd does at exit without live restore. These stops are not manual:
        ``always`` and ``unless-stopped`` containers start again when berthd comes back."""
        self.t.shutting_down = True
        for c in list(self.t.by_id.values()):
            self.monitor.cancel_restart(c)
        running = [c for c in self.t.by_id.values() if c.running and not c.state.starting]
        results = await asyncio.gather(*(self.stop_container(c, None) for c in running), return_exceptions=True)
        for c, r in zip(running, results):
            if isinstance(r, BaseException):
                log.warning("stopping %s at shutdown: %s", c.short_id, r)

    def shutdown_wait(self, floor: int) -> float | None:
        """How long berthd waits at exit for ``shutdown`` (dockerd's ShutdownTimeout): the
        shutdown-timeout, or any container's stop timeout + 5 s if longer, so that each is
        killed after its own timeout; None (as long as it takes) if either is negative."""
        if floor < 0:
            return None
        wait = floor
        for c in self.t.by_id.values():
            t = stop_timeout(c)
            if t < 0:
                return None
            wait = max(wait, t + _SHUTDOWN_GRACE)
        return wait

    # -- remove -----------------------------------------------------------------------------

    async def remove(self, ref: str, force: bool, volumes: bool = False) -> None:
        c = self.t.get(ref)
        async with self.t.lock(c.id):
            if c.id not in self.t.by_id:
                raise NoSuchContainer(f"No such container: {ref}")
            if c.running and not force:
                raise Conflict(f"You cannot remove a running container {c.id}. Stop the container before "
                               "attempting removal or force remove")
            await self.remove_locked(c, force, volumes)

    async def remove_locked(self, c: Container, force: bool, volumes: bool = False) -> None:
        """Remove ``c``, whose lock the caller holds (released meanwhile while it is killed)."""
        if c.id not in self.t.by_id:
            return
        c.manually_stopped = True
        self.monitor.cancel_restart(c)
        self.monitor.forget(c.id)
        if c.running or c.state.starting:
            if not await self._kill_for_remove(c):
                return
        if not c.host_config.AutoRemove:  # an auto-removal is nobody's to wait for
            # as containerd's task delete: the cgroup is gone when the removal returns (kubelet
            # removes the pod's cgroup next)
            await self.t.released(c.id)
        c.state.status = Status.REMOVING
        self.t.delete(c)
        if self.t.attachments is not None:
            self.t.attachments.removed(c, volumes or c.host_config.AutoRemove)
        await self.t.defaults.runtimes.cleanup(c.host_config.Runtime, c.id, str(self.t.data.container(c.id).rootfs))
        if c.bare:  # a CRI pod's pause: its pod's /dev/shm (``docker rm -f`` of a pause too)
            pod_shm.unmount(self.t.data, c.id)
        pod_shm.ipc_release(self.t.data, c)  # a shareable one's
        self.t.trash.discard(self.t.data.container(c.id).root)  # deleted after the waiters hear
        self.t.on_event("destroy", c, {})
        st = ExitStatus(exit_code=c.state.exit_code)
        for f in self.t.remove_waiters.pop(c.id, []) + self.t.exit_waiters.pop(c.id, []):
            if not f.done():
                f.set_result(st)
        self.t.fail_pending_attach(c.id)
        self.t.locks.pop(c.id, None)

    async def _kill_for_remove(self, c: Container) -> bool:
        """SIGKILL and wait (up to 10 s) for the exit; False if the container went meanwhile."""
        waiter = self.t.exit_future(c.id)
        await self._signal(c, signal_mod.SIGKILL)
        if c.running:
            self.t.on_event("kill", c, {"signal": str(int(signal_mod.SIGKILL))})
        self.t.lock(c.id).release()  # let the monitor record the exit
        try:
            await asyncio.wait_for(waiter, 10)
        except asyncio.TimeoutError:
            pass
        finally:
            await self.t.lock(c.id).acquire()
        return c.id in self.t.by_id
