"""Containers: records, names, lookup, and the lifecycle (create, start, stop, kill, wait,
remove), driven through one shim per running container.

State machine::

    created --start--> running --(init exits)--> exited --start--> running ...
       |                  |                          |
       +------remove------+---(force)---remove-------+--> (gone)

Every change is one SQLite transaction (the record is the source of truth for berthd), and
the shim's ``exit.json`` is the source of truth for an exit that happened while berthd was
away. One asyncio.Lock per container serializes mutations.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import signal as signal_mod
import time
from pathlib import Path
from typing import Any, Callable

import msgspec

from berth.engine import links, logdrivers, names, shims, validate
from berth.engine.model import ZERO_TIME, Container, State, Status, decode, encode
from berth.errors import BerthError, Conflict, InvalidArgument, NotFound, NotModified, RuntimeFailure
from berth.image.store import Image, ImageStore
from berth.runtime.shim.protocol import ExitStatus, SpawnRequest
from berth.schema.containers import ContainerConfig, CreateRequest, HostConfig, config_of, strslice
from berth.state.atomic import write_atomic
from berth.state.db import Database
from berth.state.paths import DataRoot, ExecRoot

log = logging.getLogger("berth.engine")

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOSTS = (b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
         b"ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
START_ERROR_PREFIX = ("failed to create shim task: OCI runtime create failed: runc create failed: "
                      "unable to start container process: ")
MIN_MEMORY = 6 * 1024 * 1024


class NoSuchContainer(NotFound):
    pass


def now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


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


class Containers:
    """The container engine. Built once by daemon/ with its collaborators."""

    def __init__(self, db: Database, data: DataRoot, exec_root: ExecRoot, images: ImageStore,
                 forkserver: shims.ForkServer, build_spec: Callable[..., object],
                 encode_spec: Callable[[object], bytes]):
        self.db = db
        self.data = data
        self.exec_root = exec_root
        self.images = images
        self.forkserver = forkserver
        self.build_spec = build_spec
        self.encode_spec = encode_spec
        self.by_id: dict[str, Container] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.exit_waiters: dict[str, list[asyncio.Future[ExitStatus]]] = {}
        self.remove_waiters: dict[str, list[asyncio.Future[ExitStatus]]] = {}
        self.pending_attach: dict[str, list[Callable[[], object]]] = {}
        self.monitors: dict[str, asyncio.Task[None]] = {}
        self.on_event: Callable[[str, Container, dict[str, str]], None] = lambda *a: None
        self.exit_hooks: list[Callable[[str], None]] = []  # called with the id after each exit
        self.start_hooks: list[Callable[[str], None]] = []  # ... and after each start
        self.attachments: Any = None  # engine.attachments.Attachments (networks, volumes); set by daemon/
        self.restarts: dict[str, asyncio.Task[None]] = {}  # restart-policy restarts waiting
        self.backoff: dict[str, float] = {}  # their next delay (Docker: 100 ms, doubling)
        self._tasks: set[asyncio.Task[None]] = set()
        self.shutting_down = False  # set by shutdown(): exits then are not "manual" and restart nothing
        for (data_,) in db.query("SELECT data FROM containers"):
            c = decode(data_)
            self.by_id[c.id] = c

    # -- records ----------------------------------------------------------------------------

    def _save(self, c: Container) -> None:
        with self.db.tx() as tx:
            tx.execute("INSERT OR REPLACE INTO containers VALUES (?,?,?,?)", (c.id, c.name, c.image_id, encode(c)))
        self.by_id[c.id] = c

    def lock(self, cid: str) -> asyncio.Lock:
        lk = self.locks.get(cid)
        if lk is None:
            lk = self.locks[cid] = asyncio.Lock()
        return lk

    def get(self, ref: str) -> Container:
        """By full ID, name (with or without "/"), or unique ID prefix."""
        c = self.by_id.get(ref)
        if c is not None:
            return c
        name = ref.removeprefix("/")
        for c in self.by_id.values():
            if c.name == name:
                return c
        if ref and all(ch in "0123456789abcdef" for ch in ref):
            found = [c for cid, c in self.by_id.items() if cid.startswith(ref)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
        raise NoSuchContainer(f"No such container: {ref}")

    def list(self) -> list[Container]:
        return sorted(self.by_id.values(), key=lambda c: c.created, reverse=True)

    def using_image(self, image_id: str) -> list[Container]:
        return [c for c in self.by_id.values() if c.image_id == image_id]

    # -- create -----------------------------------------------------------------------------

    def create(self, req: CreateRequest, name: str | None) -> tuple[Container, list[str]]:
        hc = req.HostConfig or HostConfig()
        warnings: list[str] = []
        self._validate_host_config(hc)
        validate.check_create(req, hc)
        hc.LogConfig.Type, hc.LogConfig.Config = logdrivers.normalize(hc.LogConfig.Type, hc.LogConfig.Config)
        if name:
            if not names.valid(name):
                raise InvalidArgument(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
            name = name.removeprefix("/")
            self._check_name_free(name)
        else:
            name = self._generate_name()
        if not req.Image:
            raise InvalidArgument("No image specified" if False else "config cannot be empty in order to create a container")
        image = self.images.resolve(req.Image)
        config = self._merge_config(config_of(req), image)
        cmd = (strslice(config.Entrypoint) or []) + (strslice(config.Cmd) or [])
        if not cmd:
            raise InvalidArgument("No command specified")
        cid = secrets.token_hex(32)
        while cid in self.by_id:
            cid = secrets.token_hex(32)
        if not config.Hostname:
            config.Hostname = cid[:12]
        if hc.ShmSize == 0:
            hc.ShmSize = 64 * 1024 * 1024
        if hc.NetworkMode in ("", "default"):
            hc.NetworkMode = "default"
        if hc.Runtime == "":
            hc.Runtime = "runc"
        hc.CgroupnsMode = _cgroupns_mode(hc.CgroupnsMode)
        if hc.Links:
            hc.Links = links.normalize(self, name, hc.Links, hc.NetworkMode)
        c = Container(id=cid, name=name, created=now(), path=cmd[0], args=cmd[1:], config=config,
                      host_config=hc, image_id=image.id)
        if self.attachments is not None:
            self.attachments.prepare(c, req.NetworkingConfig, bool(req.Hostname))
        d = self.data.container(cid)
        d.root.mkdir(parents=True)
        for p in (d.rootfs, d.upper, d.work):
            p.mkdir()
        self._save(c)
        self.on_event("create", c, {})
        return c, warnings

    def _validate_host_config(self, hc: HostConfig) -> None:
        if hc.Memory < 0 or 0 < hc.Memory < MIN_MEMORY:
            raise InvalidArgument("Minimum memory limit allowed is 6MB")
        if hc.MemorySwap > 0 and hc.Memory > 0 and hc.MemorySwap < hc.Memory:
            raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
        if hc.MemorySwap > 0 and hc.Memory == 0:
            raise InvalidArgument("You should always set the Memory limit when using Memoryswap limit, see usage")
        if hc.NanoCpus and (hc.CpuQuota or hc.CpuPeriod):
            raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set" if hc.CpuPeriod
                                  else "Conflicting options: Nano CPUs and CPU Quota cannot both be set")
        ncpu = os.cpu_count() or 1
        if hc.NanoCpus < 0 or hc.NanoCpus > ncpu * 10**9:
            raise InvalidArgument(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available")
        if hc.CpuPeriod and not 1000 <= hc.CpuPeriod <= 1000000:
            raise InvalidArgument("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
        if hc.CpuQuota and 0 < hc.CpuQuota < 1000:
            raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
        if hc.CpuShares < 0:
            raise InvalidArgument("invalid CPU shares")
        rp = hc.RestartPolicy
        if rp.Name not in ("", "no", "always", "unless-stopped", "on-failure"):
            raise InvalidArgument(f"invalid restart policy: unknown policy '{rp.Name}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'")
        if hc.AutoRemove and rp.Name not in ("", "no"):
            raise InvalidArgument("can't create 'AutoRemove' container with restart policy")
        if hc.PidsLimit is not None and hc.PidsLimit <= 0:
            hc.PidsLimit = None if hc.PidsLimit == 0 else hc.PidsLimit

    def _merge_config(self, cfg: ContainerConfig, image: Image) -> ContainerConfig:
        ic = image.config.config or ContainerConfig()
        if cfg.Entrypoint is None:
            cfg.Entrypoint = ic.Entrypoint
            if not cfg.Cmd:
                cfg.Cmd = ic.Cmd
        elif strslice(cfg.Entrypoint) == [""]:
            cfg.Entrypoint = None
        cfg.Cmd = strslice(cfg.Cmd)
        cfg.Entrypoint = strslice(cfg.Entrypoint)
        env: dict[str, str] = {}
        for e in (ic.Env or []) + (cfg.Env or []):
            k = e.split("=", 1)[0]
            env[k] = e
        cfg.Env = list(env.values())
        if not cfg.WorkingDir:
            cfg.WorkingDir = ic.WorkingDir
        if not cfg.User:
            cfg.User = ic.User
        labels = dict(ic.Labels or {})
        labels.update(cfg.Labels or {})
        cfg.Labels = labels
        if cfg.Healthcheck is None and ic.Healthcheck:
            cfg.Healthcheck = msgspec.to_builtins(ic.Healthcheck) if not isinstance(ic.Healthcheck, dict) \
                else dict(ic.Healthcheck)
        if cfg.StopSignal is None and ic.StopSignal:
            cfg.StopSignal = ic.StopSignal
        if cfg.Volumes is None and ic.Volumes:
            cfg.Volumes = ic.Volumes
        if cfg.ExposedPorts is None and ic.ExposedPorts:
            cfg.ExposedPorts = ic.ExposedPorts
        return cfg

    def _check_name_free(self, name: str) -> None:
        for other in self.by_id.values():
            if other.name == name:
                raise Conflict(f'Conflict. The container name "/{name}" is already in use by container '
                               f'"{other.id}". You have to remove (or rename) that container to be able to reuse that name.')

    def _generate_name(self) -> str:
        taken = {c.name for c in self.by_id.values()}
        for i in range(10):
            n = names.generate(i)
            if n not in taken:
                return n
        return secrets.token_hex(6)

    def rename(self, ref: str, new: str) -> None:
        c = self.get(ref)
        if not new:
            raise InvalidArgument("Neither old nor new names may be empty")
        if not names.valid(new):
            raise InvalidArgument(f"Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        new = new.removeprefix("/")
        if new == c.name:
            raise InvalidArgument("Renaming a container with the same name as its current name")
        self._check_name_free(new)
        old = c.name
        c.name = new
        self._save(c)
        self.on_event("rename", c, {"oldName": f"/{old}"})

    # -- start ------------------------------------------------------------------------------

    async def start(self, ref: str, by_policy: bool = False) -> None:
        c = self.get(ref)
        async with self.lock(c.id):
            c = self.get(c.id)
            if c.state.status in (Status.RUNNING, Status.PAUSED):
                raise NotModified("container already started")
            if c.state.status == Status.REMOVING:
                raise Conflict(f"container is marked for removal and cannot be started")
            if by_policy:
                if c.state.status != Status.RESTARTING:
                    return  # stopped or restarted by hand meanwhile
            else:
                self._cancel_restart(c)  # a restart policy's start stays "restarting" until running
            c.manually_stopped = False
            try:
                await self._start_locked(c)
            except BaseException as e:
                c.state.error = str(e)
                c.state.starting = False
                self._save(c)
                self._fail_pending_attach(c.id)
                if self.attachments is not None:
                    await self.attachments.stopped(c)
                if c.host_config.AutoRemove and isinstance(e, RuntimeFailure):
                    await self._remove_locked(c, force=True)
                raise

    async def _start_locked(self, c: Container) -> None:
        image = self.images.get_by_id(c.image_id)
        d = self.data.container(c.id)
        self._write_etc_files(c)
        extra = await self.attachments.begin_start(c) if self.attachments is not None else {}
        try:
            spec = self._spec(c, image, **extra)
        except ValueError as e:
            raise InvalidArgument(str(e)) from None
        if c.host_config.Init:
            _with_init(spec)
        write_atomic(d.spec, self.encode_spec(spec), sync=False)
        try:
            d.exit.unlink()
        except FileNotFoundError:
            pass
        c.state.starting = True
        c.state.error = ""
        self._save(c)
        sock = self.exec_root.shim_socket(c.id)
        lc = c.host_config.LogConfig
        rot = logdrivers.rotation(lc.Type or logdrivers.DEFAULT, lc.Config or {})
        req = SpawnRequest(id=c.id, bundle=str(d.root), socket=str(sock), exit_file=str(d.exit),
                           log="" if lc.Type == "none" else str(d.log), log_max_size=rot.max_size,
                           log_max_file=rot.max_file, log_compress=rot.compress,
                           stdin=c.config.OpenStdin, stdin_once=c.config.StdinOnce, tty=c.config.Tty,
                           seccomp_cache=str(self.data.seccomp_cache),
                           console_size=list(c.host_config.ConsoleSize) if c.host_config.ConsoleSize else None)
        spawned = await self.forkserver.spawn(req)
        try:
            await self._start_spawned(c, spawned.reply, sock)
        finally:
            spawned.close()

    async def _start_spawned(self, c: Container, reply: dict, sock: Path) -> None:
        if "error" in reply:
            raise RuntimeFailure(START_ERROR_PREFIX + reply["error"] + ": unknown")
        c.state.pid = reply["pid"]
        c.state.shim_pid = reply["shim_pid"]
        c.state.shim_start = shims.proc_start_time(c.state.shim_pid)
        self._save(c)  # so that a restart can find (and abort) this shim if we die before "start"
        if self.attachments is not None:
            try:
                await self.attachments.after_spawn(c, c.state.pid)
            except BaseException:
                try:
                    await shims.call(sock, {"op": "kill", "signal": 9})
                except shims.ShimGone:
                    pass
                c.state.pid = 0
                raise
        # Attach clients that were waiting for this start, then release the init.
        for cb in self.pending_attach.pop(c.id, []):
            await cb()  # type: ignore[misc]
        reply = await shims.call(sock, {"op": "start"})
        if "error" in reply:
            c.state.pid = 0
            exit_code = 127 if "not found" in reply["error"] or "no such file" in reply["error"] else 126
            c.state.exit_code = exit_code
            raise RuntimeFailure(START_ERROR_PREFIX + reply["error"] + ": unknown")
        c.state.status = Status.RUNNING
        c.state.starting = False
        c.state.started_at = now()
        c.state.finished_at = ZERO_TIME
        c.state.exit_code = 0
        c.state.oom_killed = False
        self._save(c)
        self._monitor(c)
        self.on_event("start", c, {})
        for hook in self.start_hooks:
            hook(c.id)

    def _write_etc_files(self, c: Container) -> None:
        d = self.data.container(c.id)
        hostname = c.config.Hostname
        if c.config.Domainname:
            hostname += "." + c.config.Domainname
        write_atomic(d.hostname, f"{hostname}\n".encode(), sync=False)
        write_atomic(d.hosts, HOSTS, sync=False)
        write_atomic(d.resolv_conf, _resolv_conf(), sync=False)

    def _spec(self, c: Container, image: Image, **extra: Any) -> object:
        hc = c.host_config
        d = self.data.container(c.id)
        env = links.env(self, c) + list(c.config.Env or [])
        if not any(e.startswith("PATH=") for e in env):
            env.insert(0, DEFAULT_PATH)
        env.append(f"HOSTNAME={c.config.Hostname}")
        if c.config.Tty and not any(e.startswith("TERM=") for e in env):
            env.append("TERM=xterm")
        lowers = self.images.lower_dirs(image)
        if not lowers:
            empty = self.data.root / "image" / "empty"
            empty.mkdir(exist_ok=True)
            lowers = [empty]
        overlay = f"lowerdir={':'.join(str(p) for p in lowers)},upperdir={d.upper},workdir={d.work}"
        memory_swap = hc.MemorySwap
        if hc.Memory > 0 and memory_swap == 0:
            memory_swap = 2 * hc.Memory
        secopts = validate.security_options(hc.SecurityOpt or [])
        seccomp, nnp = secopts["seccomp"], secopts["no_new_privileges"]
        return self.build_spec(
            args=[c.path, *c.args], env=env, cwd=c.config.WorkingDir or "/", user=c.config.User,
            hostname=c.config.Hostname, rootfs=str(d.rootfs), tty=c.config.Tty,
            hostname_file=str(d.hostname), hosts_file=str(d.hosts), resolv_file=str(d.resolv_conf),
            cgroups_path=f"/berth/{c.id}", memory=hc.Memory, memory_swap=memory_swap,
            nano_cpus=hc.NanoCpus, cpu_shares=hc.CpuShares, cpu_quota=hc.CpuQuota, cpu_period=hc.CpuPeriod,
            pids_limit=hc.PidsLimit, privileged=hc.Privileged, cap_add=hc.CapAdd or [],
            cap_drop=hc.CapDrop or [], readonly_rootfs=hc.ReadonlyRootfs, no_new_privileges=nnp,
            seccomp=seccomp, shm_size=hc.ShmSize or 64 * 1024 * 1024, overlay=overlay,
            annotations=dict(hc.Annotations or {}), cgroupns=hc.CgroupnsMode == "private",
            group_add=list(hc.GroupAdd or []), **extra)

    # -- exit monitoring --------------------------------------------------------------------

    def _monitor(self, c: Container) -> None:
        task = asyncio.get_running_loop().create_task(self._watch(c.id))
        self.monitors[c.id] = task

    async def _watch(self, cid: str) -> None:
        sock = self.exec_root.shim_socket(cid)
        status = await shims.wait_exit(sock)
        if status is None:
            # The shim vanished: its exit file says what happened, if it got to write it.
            for _ in range(20):
                c = self.by_id.get(cid)
                if c is None:
                    return
                if not shims.alive(c.state.shim_pid, c.state.shim_start):
                    break
                await asyncio.sleep(0.05)
            status = shims.read_exit_file(self.data.container(cid).exit) or \
                ExitStatus(exit_code=255, finished_at=now(), error="container's shim exited unexpectedly")
        self.monitors.pop(cid, None)
        await self._exited(cid, status)

    async def _exited(self, cid: str, status: ExitStatus) -> None:
        c = self.by_id.get(cid)
        if c is None:
            return
        async with self.lock(cid):
            c.state.status = Status.EXITED
            c.state.pid = 0
            c.state.shim_pid = 0
            c.state.exit_code = status.exit_code
            c.state.oom_killed = status.oom_killed
            c.state.finished_at = status.finished_at or now()
            c.state.starting = False
            if status.error:
                c.state.error = status.error
            self._save(c)
            if self.attachments is not None:
                await self.attachments.stopped(c)
            if status.oom_killed:
                self.on_event("oom", c, {})
            self.on_event("die", c, {"exitCode": str(status.exit_code)})
            for hook in self.exit_hooks:
                hook(cid)
            for f in self.exit_waiters.pop(cid, []):
                if not f.done():
                    f.set_result(status)
            if c.host_config.AutoRemove:
                await self._remove_locked(c, force=True)
            elif self._should_restart(c):
                self._schedule_restart(c)

    # -- restart policies -------------------------------------------------------------------

    def _should_restart(self, c: Container, at_boot: bool = False) -> bool:
        """Docker's restart manager: no, always, unless-stopped, on-failure[:N]."""
        rp = c.host_config.RestartPolicy
        if c.manually_stopped or c.id not in self.by_id or self.shutting_down:
            return False
        if rp.Name == "always" or rp.Name == "unless-stopped":
            return True
        if rp.Name == "on-failure":
            return c.state.exit_code != 0 and (rp.MaximumRetryCount <= 0 or c.restart_count < rp.MaximumRetryCount)
        return False

    def _schedule_restart(self, c: Container) -> None:
        ran = (parse_iso(c.state.finished_at) or 0) - (parse_iso(c.state.started_at) or 0)
        delay = 0.1 if ran >= 10 else self.backoff.get(c.id, 0.1)
        self.backoff[c.id] = min(delay * 2, 60.0)
        c.state.status = Status.RESTARTING
        self._save(c)
        task = asyncio.get_running_loop().create_task(self._restart_later(c.id, delay))
        self.restarts[c.id] = task
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    async def _restart_later(self, cid: str, delay: float) -> None:
        await asyncio.sleep(delay)
        self.restarts.pop(cid, None)
        c = self.by_id.get(cid)
        if c is None or c.state.status != Status.RESTARTING:
            return
        c.restart_count += 1
        try:
            await self.start(cid, by_policy=True)
        except Exception as e:  # the restart itself failed: record it; try again later
            log.warning("restart of %s failed: %s", cid[:12], e)
            c = self.by_id.get(cid)
            if c is not None and c.state.status != Status.RUNNING:
                c.state.status = Status.EXITED
                self._save(c)
                if self._should_restart(c):
                    self._schedule_restart(c)

    def _cancel_restart(self, c: Container) -> bool:
        task = self.restarts.pop(c.id, None)
        if task is not None:
            task.cancel()
        if c.state.status == Status.RESTARTING:
            c.state.status = Status.EXITED
            self._save(c)
            return True
        return False

    # -- stop / kill ------------------------------------------------------------------------

    async def kill(self, ref: str, sig: str | int | None) -> None:
        """Deliver a signal. SIGKILL returns only once the exit is recorded (as dockerd's Kill):
        clients remove the container right after, and inspect must already say exited."""
        c = self.get(ref)
        signo = parse_signal(sig, signal_mod.SIGKILL)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if signo in (signal_mod.SIGKILL, signal_mod.SIGTERM, signal_mod.SIGINT) and not self.shutting_down:
            c.manually_stopped = True
        if self._cancel_restart(c):
            return
        waiter = await self._send(c, signo)
        if signo == signal_mod.SIGKILL and waiter is not None:
            await self._await_exit(c, waiter, 10)

    async def _send(self, c: Container, signo: int) -> asyncio.Future[ExitStatus] | None:
        """Signal the container and emit "kill", under its lock so that the "die" recorded by
        _exited comes after; returns a future for its exit, None if it had exited already."""
        async with self.lock(c.id):
            if not c.running or c.id not in self.by_id:
                return None
            waiter = self._exit_future(c.id)
            await self._signal(c, signo)
            self.on_event("kill", c, {"signal": str(signo)})
            return waiter

    async def _await_exit(self, c: Container, waiter: asyncio.Future[ExitStatus], timeout: float) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except asyncio.TimeoutError:
            # dockerd's words; a 500, as there (BerthError maps to no client-error status)
            raise BerthError("Tried to kill container, but did not receive an exit event") from None

    async def _signal(self, c: Container, signo: int) -> None:
        try:
            reply = await shims.call(self.exec_root.shim_socket(c.id), {"op": "kill", "signal": signo})
        except shims.ShimGone:
            return
        if "error" in reply:
            raise RuntimeFailure(reply["error"])
        if c.state.status == Status.PAUSED:
            # a frozen process acts on the signal only once thawed (as dockerd does)
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.cgroup(c).thaw)
            except OSError:
                pass
            c.state.status = Status.RUNNING
            self._save(c)

    async def stop(self, ref: str, timeout: int | None, sig: str | None = None) -> None:
        c = self.get(ref)
        if not c.running:
            raise NotModified("container already stopped")
        c.manually_stopped = True
        self._save(c)
        if self._cancel_restart(c):
            self.on_event("stop", c, {})
            return
        await self._stop(c, timeout, sig)

    async def _stop(self, c: Container, timeout: int | None, sig: str | None = None) -> None:
        """dockerd's containerStop: the stop signal, the grace period, then SIGKILL; returns once
        the exit is recorded. Events: kill (the signal), [kill (9),] die, stop."""
        if timeout is None:
            timeout = c.config.StopTimeout if c.config.StopTimeout is not None else 10
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
                    await self._await_exit(c, waiter, 10)
        self.on_event("stop", c, {})

    def _exit_future(self, cid: str) -> asyncio.Future[ExitStatus]:
        f: asyncio.Future[ExitStatus] = asyncio.get_running_loop().create_future()
        self.exit_waiters.setdefault(cid, []).append(f)
        return f

    async def restart(self, ref: str, timeout: int | None, sig: str | None = None) -> None:
        c = self.get(ref)
        if c.running:
            await self.stop(c.id, timeout, sig)
        await self.start(c.id)
        c.restart_count = c.restart_count  # docker counts policy restarts only
        self.on_event("restart", c, {})

    # -- wait -------------------------------------------------------------------------------

    def wait_future(self, ref: str, condition: str) -> asyncio.Future[ExitStatus]:
        """Registers the wait now (before the caller answers with headers); resolves later."""
        c = self.get(ref)
        loop = asyncio.get_running_loop()
        if condition in ("", "not-running"):
            if not c.running and not c.state.starting:
                f: asyncio.Future[ExitStatus] = loop.create_future()
                f.set_result(ExitStatus(exit_code=c.state.exit_code))
                return f
            return self._exit_future(c.id)
        if condition == "next-exit":
            return self._exit_future(c.id)
        if condition == "removed":
            f = loop.create_future()
            self.remove_waiters.setdefault(c.id, []).append(f)
            return f
        raise InvalidArgument(f"invalid condition: {condition!r}")

    # -- attach -----------------------------------------------------------------------------

    async def attach_stream(self, ref: str, stdin: bool, stdout: bool, stderr: bool
                            ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A subscription to the container's output (and a way to its stdin).

        If the container is not running, this waits for its next start and subscribes before
        the init is released, so not a byte of output is missed (``docker run`` attaches first).
        """
        c = self.get(ref)
        if c.running and not c.state.starting:
            return await shims.attach(self.exec_root.shim_socket(c.id), stdin, stdout, stderr)
        fut: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = \
            asyncio.get_running_loop().create_future()
        sock = self.exec_root.shim_socket(c.id)

        async def subscribe() -> None:
            try:
                pair = await shims.attach(sock, stdin, stdout, stderr)
            except Exception as e:
                if not fut.done():
                    fut.set_exception(e)
                return
            if fut.done():
                pair[1].close()
            else:
                fut.set_result(pair)

        subscribe.cancel = fut.cancel  # type: ignore[attr-defined]
        self.pending_attach.setdefault(c.id, []).append(subscribe)
        return await fut

    async def resize(self, ref: str, h: int, w: int) -> None:
        """The container's terminal size (the kernel then sends SIGWINCH inside)."""
        c = self.get(ref)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if not c.config.Tty:
            return
        try:
            await shims.call(self.exec_root.shim_socket(c.id), {"op": "resize", "h": h, "w": w})
        except shims.ShimGone:
            pass

    # -- update -----------------------------------------------------------------------------

    UPDATABLE = ("CpuShares", "Memory", "NanoCpus", "BlkioWeight", "CpuPeriod", "CpuQuota", "CpusetCpus",
                 "CpusetMems", "MemoryReservation", "MemorySwap", "PidsLimit", "CpuRealtimePeriod",
                 "CpuRealtimeRuntime")

    async def update(self, ref: str, changes: dict[str, object]) -> list[str]:
        """Resources and the restart policy of a container; applied to its cgroup if running."""
        from berth.schema.containers import RestartPolicy
        c = self.get(ref)
        async with self.lock(c.id):
            hc = msgspec.structs.replace(c.host_config)
            for k in self.UPDATABLE:
                if k in changes and changes[k] is not None:
                    setattr(hc, k, changes[k])
            if hc.Memory and "MemorySwap" not in changes and c.host_config.MemorySwap > 0:
                hc.MemorySwap = max(hc.MemorySwap, hc.Memory * 2)
            rp = changes.get("RestartPolicy")
            if isinstance(rp, dict) and rp.get("Name") is not None:
                hc.RestartPolicy = RestartPolicy(Name=rp.get("Name") or "no",
                                                 MaximumRetryCount=int(rp.get("MaximumRetryCount") or 0))
                if hc.AutoRemove and hc.RestartPolicy.Name not in ("", "no"):
                    raise InvalidArgument("Restart policy cannot be updated because AutoRemove is enabled for the container")
            if c.running and hc.Memory and 0 < hc.MemorySwap < hc.Memory:
                raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
            self._validate_host_config(hc)
            if c.running:
                spec = self._spec(msgspec.structs.replace(c, host_config=hc), self.images.get_by_id(c.image_id))
                resources = spec.linux.resources  # type: ignore[attr-defined]
                try:
                    await asyncio.get_running_loop().run_in_executor(None, self.cgroup(c).update, resources)
                except (OSError, ValueError) as e:
                    raise InvalidArgument(f"Cannot update container {c.id}: {e}") from None
            c.host_config = hc
            self._save(c)
        self.on_event("update", c, {})
        return []

    # -- pause ------------------------------------------------------------------------------

    def cgroup(self, c: Container):  # type: ignore[no-untyped-def]
        from berth.runtime.cgroups import open_cgroup
        return open_cgroup(f"/berth/{c.id}")

    async def pause(self, ref: str) -> None:
        c = self.get(ref)
        async with self.lock(c.id):
            if c.state.status == Status.PAUSED:
                raise Conflict(f"Container {c.id} is already paused")
            if c.state.status != Status.RUNNING:
                raise Conflict(f"Container {c.id} is not running")
            await asyncio.get_running_loop().run_in_executor(None, self.cgroup(c).freeze)
            c.state.status = Status.PAUSED
            self._save(c)
        self.on_event("pause", c, {})

    async def unpause(self, ref: str) -> None:
        c = self.get(ref)
        async with self.lock(c.id):
            if c.state.status != Status.PAUSED:
                raise Conflict(f"Container {c.id} is not paused")
            await asyncio.get_running_loop().run_in_executor(None, self.cgroup(c).thaw)
            c.state.status = Status.RUNNING
            self._save(c)
        self.on_event("unpause", c, {})

    # -- remove -----------------------------------------------------------------------------

    async def remove(self, ref: str, force: bool, volumes: bool = False) -> None:
        c = self.get(ref)
        async with self.lock(c.id):
            if c.id not in self.by_id:
                raise NoSuchContainer(f"No such container: {ref}")
            if c.running and not force:
                raise Conflict(f"You cannot remove a running container {c.id}. Stop the container before "
                               "attempting removal or force remove")
            await self._remove_locked(c, force, volumes)

    async def _remove_locked(self, c: Container, force: bool, volumes: bool = False) -> None:
        if c.id not in self.by_id:
            return
        c.manually_stopped = True
        self._cancel_restart(c)
        self.backoff.pop(c.id, None)
        if c.running or c.state.starting:
            waiter = self._exit_future(c.id)
            await self._signal(c, signal_mod.SIGKILL)
            if c.running:
                self.on_event("kill", c, {"signal": str(int(signal_mod.SIGKILL))})
            self.lock(c.id).release()  # let _exited record the exit
            try:
                await asyncio.wait_for(waiter, 10)
            except asyncio.TimeoutError:
                pass
            finally:
                await self.lock(c.id).acquire()
            if c.id not in self.by_id:
                return
        c.state.status = Status.REMOVING
        with self.db.tx() as tx:
            tx.execute("DELETE FROM containers WHERE id=?", (c.id,))
        self.by_id.pop(c.id, None)
        if self.attachments is not None:
            self.attachments.removed(c, volumes or c.host_config.AutoRemove)
        shutil.rmtree(self.data.container(c.id).root, ignore_errors=True)
        self.on_event("destroy", c, {})
        st = ExitStatus(exit_code=c.state.exit_code)
        for f in self.remove_waiters.pop(c.id, []) + self.exit_waiters.pop(c.id, []):
            if not f.done():
                f.set_result(st)
        self._fail_pending_attach(c.id)
        self.locks.pop(c.id, None)

    def _fail_pending_attach(self, cid: str) -> None:
        for cb in self.pending_attach.pop(cid, []):
            getattr(cb, "cancel", lambda: None)()

    # -- shutdown (berthd stop without live restore) -----------------------------------------

    async def shutdown(self) -> None:
        """Stop every running container as ``docker stop`` does (its stop signal and timeout),
        all at once, as dockerd does at exit without live restore. These stops are not manual:
        ``always`` and ``unless-stopped`` containers start again when berthd comes back."""
        self.shutting_down = True
        for c in list(self.by_id.values()):
            self._cancel_restart(c)
        running = [c for c in self.by_id.values() if c.running and not c.state.starting]
        results = await asyncio.gather(*(self._stop(c, None) for c in running), return_exceptions=True)
        for c, r in zip(running, results):
            if isinstance(r, BaseException):
                log.warning("stopping %s at shutdown: %s", c.short_id, r)

    # -- recovery (berthd start) ------------------------------------------------------------

    async def recover(self) -> None:
        """Find the shims again: reattach to the living, record exits of the dead."""
        self._sweep_orphans()
        for sock in list(self.exec_root.shims.glob("*.sock")):
            if sock.stem not in self.by_id:  # a shim whose container record is gone
                await self._abort_shim(sock.stem)
        for c in list(self.by_id.values()):
            d = self.data.container(c.id)
            if c.state.starting and not c.running:
                # berthd died between spawn and start: the init never ran. Abort it and leave
                # the container created, as if the start had failed.
                await self._abort_shim(c.id)
                c.state.starting = False
                c.state.pid = c.state.shim_pid = 0
                c.state.error = "start interrupted: berthd restarted"
                self._save(c)
                continue
            if c.running or c.state.starting:
                if shims.alive(c.state.shim_pid, c.state.shim_start) and self.exec_root.shim_socket(c.id).exists():
                    self._monitor(c)
                    if not c.state.starting:
                        for hook in self.start_hooks:
                            hook(c.id)
                    continue
                status = shims.read_exit_file(d.exit)
                if status is None:
                    status = ExitStatus(exit_code=255 if c.running else c.state.exit_code, finished_at=now())
                if c.state.starting and not c.running:
                    c.state.starting = False
                    self._save(c)
                    continue
                await self._exited(c.id, status)
            elif c.host_config.AutoRemove and c.state.status == Status.EXITED:
                async with self.lock(c.id):
                    await self._remove_locked(c, force=True)
            elif c.state.status == Status.REMOVING:
                async with self.lock(c.id):
                    await self._remove_locked(c, force=True)
            elif c.state.status in (Status.EXITED, Status.RESTARTING) and c.host_config.RestartPolicy.Name in (
                    "always", "unless-stopped") and not c.manually_stopped:
                # Docker starts these again when the daemon starts (the host may have rebooted)
                c.state.status = Status.EXITED
                self._schedule_restart(c)
        if self.attachments is not None:
            await self.attachments.recover(list(self.by_id.values()))

    async def _abort_shim(self, cid: str) -> None:
        """Kill a shim's container before it ever started (the shim then exits)."""
        sock = self.exec_root.shim_socket(cid)
        try:
            await shims.call(sock, {"op": "kill", "signal": 9}, timeout=5)
        except (shims.ShimGone, ConnectionError, asyncio.TimeoutError):
            return
        for _ in range(100):  # the shim removes its socket as it leaves
            if not sock.exists():
                return
            await asyncio.sleep(0.01)

    def _sweep_orphans(self) -> None:
        """Container dirs no record knows: a create or remove cut short by a crash."""
        try:
            entries = list(self.data.containers.iterdir())
        except FileNotFoundError:
            return
        for d in entries:
            if d.name not in self.by_id:
                shutil.rmtree(d, ignore_errors=True)

    # -- top / size -------------------------------------------------------------------------

    def pids(self, c: Container) -> list[int]:
        from berth.runtime.cgroups import open_cgroup
        try:
            return open_cgroup(f"/berth/{c.id}").pids()
        except OSError:
            return [c.state.pid] if c.state.pid else []

    def size_rw(self, c: Container) -> int:
        total = 0
        for root, dirs, files in os.walk(self.data.container(c.id).upper):
            for f in files:
                try:
                    total += os.lstat(os.path.join(root, f)).st_size
                except OSError:
                    pass
        return total


def parse_iso(t: str) -> float | None:
    from berth.engine.logs import parse_time
    try:
        return parse_time(t) if t and not t.startswith("0001-") else None
    except InvalidArgument:
        return None


INIT_PATH = "/sbin/docker-init"
INIT_BINARIES = ("/usr/bin/tini-static", "/usr/bin/docker-init", "/usr/libexec/docker/docker-init")


def _with_init(spec) -> None:  # type: ignore[no-untyped-def]
    """--init: a static tini bound read-only at /sbin/docker-init as PID 1 (as Docker does);
    it reaps zombies and forwards signals to the command."""
    from berth.oci.spec import Mount
    src = next((p for p in INIT_BINARIES if os.path.exists(p)), None)
    if src is None:
        raise InvalidArgument("docker-init binary not found: install the tini package (tini-static)")
    spec.mounts.append(Mount(destination=INIT_PATH, type="bind", source=src, options=["bind", "ro"]))
    spec.process.args = [INIT_PATH, "--", *spec.process.args]


def _cgroupns_mode(mode: str) -> str:
    """Docker's default: a private cgroup namespace on cgroup v2 hosts, the host's on v1."""
    if mode in ("host", "private"):
        return mode
    if mode:
        raise InvalidArgument(f"invalid cgroup namespace mode: {mode}")
    from berth.runtime.cgroups import detect
    try:
        return "private" if detect().version == 2 else "host"
    except Exception:
        return "host"


def _resolv_conf() -> bytes:
    """The host's resolv.conf without loopback name servers (unreachable from the container)."""
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        lines = []
    out = []
    has_ns = False
    for line in lines:
        parts = line.split()
        if parts[:1] == ["nameserver"] and len(parts) > 1:
            if parts[1].startswith("127.") or parts[1] == "::1":
                continue
            has_ns = True
        out.append(line)
    if not has_ns:
        out += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    return ("\n".join(out) + "\n").encode()


_ = Path
