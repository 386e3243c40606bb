"""Starting a container: its /etc files, the OCI spec (``build_spec`` with the attachments'
``SandboxArgs``, then ``hostspec``), the shim spawned through the fork server, the network
plugged in while the init waits, the attach clients subscribed, and the init released.

A start records ``starting`` before it asks for a shim, so that berthd, if it dies meanwhile,
finds the shim again at recovery and aborts it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Protocol

from berth.engine import (container_userns, hostspec, hugepages, links, logdrivers, logremote, pod_shm, shims,
                          validate)
from berth.engine.container_table import START_ERROR_PREFIX, ContainerTable, NetnsPlug, SandboxArgs, now
from berth.engine.model import Container, Status
from berth.errors import BerthError, Conflict, Internal, InvalidArgument, NotModified, RuntimeFailure
from berth.image.store import Image
from berth.oci.spec import Mount, Spec
from berth.runtime import external, users
from berth.runtime.external import OCIRuntime
from berth.runtime.shim.protocol import ExitStatus, SpawnRequest
from berth.state.atomic import write_atomic

log = logging.getLogger("berth.engine")

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOSTS = (b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
         b"ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
INIT_PATH = "/sbin/docker-init"
INIT_BINARIES = ("/usr/bin/tini-static", "/usr/bin/docker-init", "/usr/libexec/docker/docker-init")


class _Monitor(Protocol):
    def watch(self, c: Container) -> None: ...

    def cancel_restart(self, c: Container) -> bool: ...

    async def auto_remove(self, c: Container, status: ExitStatus) -> None: ...


class _Remover(Protocol):
    async def remove_locked(self, c: Container, force: bool, volumes: bool = False) -> None: ...


class SpecBuilder:
    """A container's OCI spec, as dockerd would write it."""

    def __init__(self, table: ContainerTable, build_spec: Callable[..., Spec]):
        self.t = table
        self.build_spec = build_spec

    def spec(self, c: Container, image: Image, sandbox: SandboxArgs | None = None) -> Spec:
        hc = c.host_config
        d = self.t.data.container(c.id)
        env = links.env(self.t, c) + list(c.config.Env or [])
        if not any(e.startswith("PATH=") for e in env):
            env.insert(0, DEFAULT_PATH)
        env.append(f"HOSTNAME={c.config.Hostname}")
        if c.config.Tty and not any(e.startswith("TERM=") for e in env):
            env.append("TERM=xterm")
        memory_swap = hc.MemorySwap
        if hc.Memory > 0 and memory_swap == 0:
            memory_swap = 2 * hc.Memory
        secopts = validate.security_options(hc.SecurityOpt or [])
        dflt = self.t.defaults
        lowers, overlay = self.t.overlay(c, image)
        if container_userns.maps_for(c.id, hc, self.t.userns) is not None:
            overlay = container_userns.overlay_options(lowers, self.t.data)
        return self.build_spec(
            args=[c.path, *c.args], env=env, cwd=c.config.WorkingDir or "/", user=c.config.User,
            hostname=c.config.Hostname, rootfs=str(d.rootfs), tty=c.config.Tty,
            hostname_file=str(d.hostname), hosts_file=str(d.hosts), resolv_file=str(d.resolv_conf),
            cgroups_path=c.cgroups_path if dflt.cgroups else "", memory=hc.Memory, memory_swap=memory_swap,
            nano_cpus=hc.NanoCpus, cpu_shares=hc.CpuShares, cpu_quota=hc.CpuQuota, cpu_period=hc.CpuPeriod,
            pids_limit=hc.PidsLimit, privileged=hc.Privileged, cap_add=hc.CapAdd or [],
            cap_drop=hc.CapDrop or [], readonly_rootfs=hc.ReadonlyRootfs,
            no_new_privileges=dflt.no_new_privileges_for(hc.SecurityOpt or [], secopts.no_new_privileges),
            seccomp=dflt.seccomp_for(hc.SecurityOpt or [], secopts.seccomp),
            shm_size=hc.ShmSize or 64 * 1024 * 1024, overlay=overlay,
            annotations=dict(hc.Annotations or {}), cgroupns=hc.CgroupnsMode == "private",
            group_add=list(hc.GroupAdd or []), masked_paths=hc.MaskedPaths, readonly_paths=hc.ReadonlyPaths,
            netns=sandbox.netns if sandbox is not None else "",
            extra_mounts=sandbox.extra_mounts if sandbox is not None else None)


class Starter:
    def __init__(self, table: ContainerTable, specs: SpecBuilder, forkserver: shims.ForkServer,
                 encode_spec: Callable[[Spec], bytes], monitor: _Monitor, remover: _Remover):
        self.t = table
        self.specs = specs
        self.forkserver = forkserver
        self.encode_spec = encode_spec
        self.monitor = monitor
        self.remover = remover

    async def start(self, ref: str, by_policy: bool = False, plug: NetnsPlug | None = None) -> None:
        c = self.t.get(ref)
        async with self.t.lock(c.id):
            c = self.t.get(c.id)
            if c.state.status in (Status.RUNNING, Status.PAUSED):
                raise NotModified("container already started")
            if c.state.status == Status.REMOVING:
                raise Conflict("container is marked for removal and cannot be started")
            if by_policy:
                if c.state.status != Status.RESTARTING:
                    return  # stopped or restarted by hand meanwhile
            else:
                self.monitor.cancel_restart(c)  # a restart policy's start stays "restarting" until running
            c.manually_stopped = False
            try:
                await self._start_locked(c, plug)
            except BaseException as e:
                await self._failed(c, e)
                raise

    async def _failed(self, c: Container, e: BaseException) -> None:
        c.state.error = str(e)
        if not c.state.exit_code:  # dockerd's exitUnknown, unless the failure set one (126, 127)
            c.state.exit_code = 128
        c.state.starting = False
        pod_shm.ipc_release(self.t.data, c)  # a shareable's /dev/shm mounted before the failure
        self.t.save_soon(c)  # never raises: on a full disk the namespace below still goes
        self.t.fail_pending_attach(c.id)
        if self.t.attachments is not None:
            await self.t.attachments.stopped(c)
        if c.host_config.AutoRemove and isinstance(e, Exception):  # dockerd: any start error
            # (a full disk too: `docker run --rm` waits for the removal; it hung)
            await self.monitor.auto_remove(c, ExitStatus(exit_code=c.state.exit_code))

    async def _start_locked(self, c: Container, plug: NetnsPlug | None = None) -> None:
        if not await self.t.released(c.id):  # the last run's shim removes its cgroup after the exit
            log.warning("start %s: the last shim did not let go of the container", c.id[:12])
        for req in c.host_config.DeviceRequests or []:  # berth has no device drivers (GPUs)
            raise InvalidArgument(no_device_driver(req))
        t0 = time.perf_counter()
        image = self.t.images.get_by_id(c.image_id)
        d = self.t.data.container(c.id)
        self._write_etc_files(c)
        c.state.cgroups_path = self.t.defaults.cgroups_path_for(c.host_config, c.id)
        sandbox = await self.t.attachments.begin_start(c, plug) if self.t.attachments is not None else None
        try:
            spec = self.specs.spec(c, image, sandbox)
        except ValueError as e:
            raise InvalidArgument(str(e)) from None
        pod_shm.ipc_apply(spec, self.t.data, c, self.t.get)
        try:
            hostspec.apply(spec, c.host_config, self._ns_donor, self.t.defaults.ulimits_for(c.host_config),
                           domainname=c.config.Domainname)
        except hostspec.Refused as e:
            raise RuntimeFailure(START_ERROR_PREFIX + str(e) + ": unknown") from None
        hugepages.apply(spec, c.hugepages)
        if self.t.defaults.init_for(c.host_config):
            _with_init(spec, self.t.defaults.init_path)
        maps = container_userns.maps_for(c.id, c.host_config, self.t.userns)
        if maps is not None:
            lowers, _ = self.t.overlay(c, image)
            if self.t.userns.copies is None:  # idmapped: nothing to copy, no thread
                tree = container_userns.image_tree(maps, lowers, self.t.userns, self.t.data)
            else:
                tree = await asyncio.to_thread(container_userns.image_tree, maps, lowers, self.t.userns,
                                               self.t.data)
            container_userns.apply(spec, maps, d, self.t.data, tree)
        rt = self.t.defaults.runtimes.oci(c.host_config.Runtime)
        if rt is not None:
            spec = _for_external(spec)
        elif c.bare:
            bare(spec)
        log.debug("start %s: files, network prepare and spec %.1f ms", c.id[:12], (time.perf_counter() - t0) * 1000)
        try:
            await self._spawn_and_start(c, spec, rt)
        except BaseException:
            if rt is not None:
                await self.t.defaults.runtimes.cleanup(c.host_config.Runtime, c.id, str(d.rootfs))
            raise

    async def _spawn_and_start(self, c: Container, spec: Spec, rt: OCIRuntime | None) -> None:
        d = self.t.data.container(c.id)
        write_atomic(d.spec, self.encode_spec(spec), sync=False)
        try:
            d.exit.unlink()
        except FileNotFoundError:
            pass
        c.state.starting = True
        c.state.error = ""
        self.t.save(c)
        req = self._spawn_request(c)
        if rt is not None:
            req.runtime_path, req.runtime_root, req.runtime_args = rt.path, rt.root, list(rt.args)
        carried = self.t.carry_attach(c.id)
        if carried is not None:
            req.attach = carried.request
        try:
            t = time.perf_counter()
            spawned = await self.forkserver.spawn(req, self._early(c))
            log.debug("start %s: shim spawn %.1f ms", c.id[:12], (time.perf_counter() - t) * 1000)
            try:
                await self._start_spawned(c, spawned, self.t.exec_root.shim_socket(c.id))
                if carried is not None:
                    carried.deliver(spawned.stream())
            finally:
                spawned.close()
        finally:
            if carried is not None:
                carried.cancel()  # not started: the client's attach ends (as fail_pending_attach)

    def _early(self, c: Container) -> shims.Early | None:
        """Whether the shim may release the init as soon as it is set up, with no round trip
        through berthd: when no attach client needs a connection of its own first (the one a
        foreground ``docker run`` makes rides on the spawn request: ``carry_attach``) and the
        network is complete before the init runs (``attachments.ready_before_start``: the
        veth plugged, no ports or embedded DNS)."""
        if self.t.pending_attach.get(c.id):
            return None
        if self.t.attachments is None:
            return _nothing_first
        attachments = self.t.attachments
        return lambda: attachments.ready_before_start(c)

    def _spawn_request(self, c: Container) -> SpawnRequest:
        d = self.t.data.container(c.id)
        lc = c.host_config.LogConfig
        kind = lc.Type or logdrivers.DEFAULT
        remote = None
        if kind in logremote.DRIVERS:
            info = logremote.Info(c.id, c.name, c.image_id, c.config.Image or "")
            remote = logremote.resolve(kind, lc.Config or {}, info, self.t.defaults.journal_socket)
        rot = logdrivers.rotation(kind, lc.Config or {}) if remote is None else logdrivers.Rotation(-1, 1, False)
        return SpawnRequest(id=c.id, bundle=str(d.root), socket=str(self.t.exec_root.shim_socket(c.id)),
                            exit_file=str(d.exit), exit_sync=not c.host_config.AutoRemove, log=str(d.log) if kind in logdrivers.FILE_DRIVERS else "",
                            remote_log=remote,
                            log_max_size=rot.max_size, log_max_file=rot.max_file, log_compress=rot.compress,
                            cri_log=c.cri_log,
                            stdin=c.config.OpenStdin, stdin_once=c.config.StdinOnce, tty=c.config.Tty,
                            seccomp_cache=str(self.t.data.seccomp_cache),
                            console_size=list(c.host_config.ConsoleSize) if c.host_config.ConsoleSize else None)

    async def _start_spawned(self, c: Container, spawned: shims.Spawned, sock: Path) -> None:
        reply = spawned.reply
        if reply.error is not None:
            raise _start_error(reply.error)
        c.state.pid = reply.pid
        c.state.shim_pid = reply.shim_pid
        c.state.shim_start = shims.proc_start_time(c.state.shim_pid)
        self.t.save(c)  # so that a restart can find (and abort) this shim if we die before "start"
        if self.t.attachments is not None:
            try:
                await self.t.attachments.after_spawn(c, c.state.pid)
            except BaseException:
                try:
                    await shims.call(sock, shims.Kill(signal=9))
                except shims.ShimGone:
                    pass
                c.state.pid = 0
                raise
        await self.t.run_pending_attach(c.id)  # then release the init (if the early Start did not)
        t = time.perf_counter()
        err = (await spawned.start()).error
        log.debug("start %s: shim Start %.1f ms", c.id[:12], (time.perf_counter() - t) * 1000)
        if err is not None:
            c.state.pid = 0
            c.state.exit_code = 127 if "not found" in err or "no such file" in err else 126
            raise RuntimeFailure(START_ERROR_PREFIX + err + ": unknown")
        c.state.status = Status.RUNNING
        c.state.starting = False
        c.state.started_at = now()  # FinishedAt keeps the last exit's, as dockerd's SetRunning does
        c.state.exit_code = 0
        c.state.oom_killed = False
        self.t.save_soon(c)  # it runs now, whether or not the disk takes the record: watch it
        self.monitor.watch(c)
        self.t.on_event("start", c, {})
        self.t.started(c.id)

    def _ns_donor(self, ref: str) -> tuple[str, int, str]:
        """A container whose namespaces another joins (--pid/--ipc container:X)."""
        other = self.t.get(ref)
        pid = other.state.pid if other.state.status in (Status.RUNNING, Status.PAUSED) else 0  # IsRunning
        return other.id, pid, other.host_config.IpcMode

    def _write_etc_files(self, c: Container) -> None:
        """/etc/hostname; /etc/hosts and /etc/resolv.conf too when no attachments write them
        (``networks.begin_start`` does, for every network mode, and the hostname too for a
        container that joins another's network namespace)."""
        d = self.t.data.container(c.id)
        if self.t.attachments is not None and c.host_config.NetworkMode.startswith("container:"):
            return  # all three are the joined container's (``networks.begin_start``)
        # dockerd writes the hostname alone; the domain is the kernel's (kernel.domainname)
        write_atomic(d.hostname, f"{c.config.Hostname}\n".encode(), sync=False)
        if self.t.attachments is None:
            write_atomic(d.hosts, HOSTS, sync=False)
            write_atomic(d.resolv_conf, _resolv_conf(), sync=False)


def bare(spec: Spec) -> None:
    """A pod's pause on berth's runtime (runc wants /proc): its rootfs and no other mount (no /proc, /dev, /sys, cgroup or /etc
    files), so no masked or read-only paths either and no device nodes (the cgroup's device
    rules stay). It only holds namespaces: nothing runs in its mount namespace but ``pause()``,
    and the pod's containers join its network, IPC, UTS and PID namespaces, never its mounts.
    containerd gives its pause no masked or read-only paths either
    (``WithoutDefaultSecuritySettings``). The init writes its sysctls (the pod's, and the
    unprivileged ports and ping range: the pod's network namespace's) and oom_score_adj
    before it enters the rootfs, through berthd's /proc."""
    spec.mounts = []
    if spec.linux is not None:
        spec.linux.maskedPaths, spec.linux.readonlyPaths, spec.linux.devices = [], [], []


async def _nothing_first() -> bool:
    return True


def _for_external(spec: Spec) -> Spec:
    """The spec runc or crun can run: the rootfs mounted here, users resolved (``external``)."""
    try:
        return external.prepare(spec)
    except RuntimeFailure as e:
        raise _start_error(str(e)) from None
    except OSError as e:
        raise RuntimeFailure(f"{START_ERROR_PREFIX}mount rootfs: {e}: unknown") from None


def _start_error(message: str) -> BerthError:
    """The runtime's failure as dockerd reports it: a user or group lookup bare, with a 500
    (its createSpec fails before any runtime runs), anything else with the OCI runtime's words."""
    if users.is_lookup_failure(message):
        return Internal(message)
    return RuntimeFailure(START_ERROR_PREFIX + message + ": unknown")


def _with_init(spec: Spec, init_path: str = "") -> None:
    """--init: a static tini (daemon.json's init-path, or the first of INIT_BINARIES) bound
    read-only at /sbin/docker-init as PID 1 (as Docker does); it reaps zombies and forwards
    signals to the command."""
    src = init_path or next((p for p in INIT_BINARIES if os.path.exists(p)), None)
    if src is None:
        raise InvalidArgument("docker-init binary not found: install the tini package (tini-static)")
    assert spec.process is not None  # build_spec always sets it
    spec.mounts.append(Mount(destination=INIT_PATH, type="bind", source=src, options=["bind", "ro"]))
    spec.process.args = [INIT_PATH, "--", *spec.process.args]


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


def no_device_driver(req: Any) -> str:
    """dockerd's incompatibleDeviceRequest (a 400 at start): ``--gpus all`` asks driver "" for
    [[gpu]], printed as Go prints a [][]string."""
    req = req if isinstance(req, dict) else {}
    caps = " ".join("[" + " ".join(str(c) for c in group) + "]" for group in (req.get("Capabilities") or []))
    return f'could not select device driver "{req.get("Driver") or ""}" with capabilities: [{caps}]'
