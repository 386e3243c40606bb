"""Creating a container: the HostConfig checks dockerd makes before it records anything, the
merge of the request's config with the image's, names (given, generated, renamed), and the
record with its directories."""

from __future__ import annotations

import os
import secrets

import msgspec

from berth.engine import container_userns, links, logdrivers, names, validate
from berth.runtime.external import OWN as OWN_RUNTIME
from berth.engine.container_table import ContainerTable, now
from berth.engine.model import Container
from berth.errors import Conflict, Internal, InvalidArgument
from berth.image.store import Image
from berth.runtime.cgroups import detect
from berth.schema.containers import ContainerConfig, CreateRequest, HostConfig, config_of, strslice

__all__ = ["CreateRequest", "Creator", "check_host_config", "merge_config"]

MIN_MEMORY = 6 * 1024 * 1024


class Creator:
    def __init__(self, table: ContainerTable):
        self.t = table

    def create(self, req: CreateRequest, name: str | None) -> tuple[Container, list[str]]:
        hc = req.HostConfig or HostConfig()
        check_host_config(hc)
        warnings = self.t.defaults.discard_blkio_weight(hc)
        validate.check_create(req, hc)
        warnings += self.t.defaults.at_create(hc)
        if hc.NetworkMode == "host" and hc.PortBindings:  # dockerd's verifyContainerSettings
            warnings.append("Published ports are discarded when using host network mode")
        if hc.OomKillDisable and not hc.Memory:  # verifyPlatformContainerResources
            warnings.append("OOM killer is disabled for the container, but no memory limit is set, this can "
                            "result in the system running out of resources.")
        hc.LogConfig.Type, hc.LogConfig.Config = logdrivers.normalize(hc.LogConfig.Type, hc.LogConfig.Config)
        if name:
            if not names.valid(name):
                raise InvalidArgument(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
            name = name.removeprefix("/")
            self._check_name_free(name)
        else:
            name = self._generate_name()
        if not req.Image:
            raise InvalidArgument("config cannot be empty in order to create a container")
        _check_storage_opt(hc.StorageOpt)
        image = self.t.images.resolve(req.Image)
        config = merge_config(config_of(req), image)
        cmd = (strslice(config.Entrypoint) or []) + (strslice(config.Cmd) or [])
        if not cmd:
            raise InvalidArgument("No command specified")
        cid = secrets.token_hex(32)
        while cid in self.t.by_id:
            cid = secrets.token_hex(32)
        if not config.Hostname:
            config.Hostname = cid[:12]
        _defaults(hc)
        container_userns.at_create(cid, hc, self.t.userns, lambda ref: self.t.get(ref).id,
                                   own_runtime=self.t.defaults.runtimes.check(hc.Runtime) == OWN_RUNTIME)
        try:  # from here a failure frees the user namespace range just allocated
            if hc.Links:
                hc.Links = links.normalize(self.t, name, hc.Links, hc.NetworkMode)
            c = Container(id=cid, name=name, created=now(), path=cmd[0], args=cmd[1:], config=config,
                          host_config=hc, image_id=image.id)
            if self.t.attachments is not None:
                self.t.attachments.prepare(c, req.NetworkingConfig, bool(req.Hostname))
            self._record(c)
        except BaseException:
            container_userns.release(cid, self.t.userns)
            raise
        self.t.on_event("create", c, {})
        return c, warnings

    def _record(self, c: Container) -> None:
        """The container's directories and record; on a failure (out of space or descriptors)
        neither, nor what ``prepare`` recorded (its sandbox, its anonymous volumes)."""
        d = self.t.data.container(c.id)
        try:
            d.root.mkdir(parents=True)
            for p in (d.rootfs, d.upper, d.work):
                p.mkdir()
            self.t.save(c)
        except BaseException:
            self.t.trash.discard(d.root)
            if self.t.attachments is not None:
                self.t.attachments.removed(c, True)
            raise

    def _check_name_free(self, name: str) -> None:
        for other in self.t.by_id.values():
            if other.name == name:
                raise Conflict(f'Conflict. The container name "/{name}" is already in use by container '
                               f'"{other.id}". You have to remove (or rename) that container to be able to reuse that name.')

    def _generate_name(self) -> str:
        taken = {c.name for c in self.t.by_id.values()}
        for i in range(10):
            n = names.generate(i)
            if n not in taken:
                return n
        return secrets.token_hex(6)

    def rename(self, ref: str, new: str) -> None:
        c = self.t.get(ref)
        if not new:
            raise InvalidArgument("Neither old nor new names may be empty")
        if not names.valid(new):
            raise InvalidArgument(f"Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        new = new.removeprefix("/")
        if new == c.name:
            raise InvalidArgument("Renaming a container with the same name as its current name")
        try:
            self._check_name_free(new)
        except Conflict as e:  # dockerd's ContainerRename wraps its reserveName's error
            raise Conflict(f"Error when allocating new name: {e}") from None
        old = c.name
        c.name = new
        for linked in links.renamed(self.t.by_id.values(), old, new):
            if linked is not c:
                self.t.save(linked)
        self.t.save(c)
        self.t.on_event("rename", c, {"oldName": f"/{old}"})


def _defaults(hc: HostConfig) -> None:
    """dockerd's defaults for what the request left empty."""
    if hc.ShmSize == 0:
        hc.ShmSize = 64 * 1024 * 1024
    if not hc.IpcMode:
        hc.IpcMode = "private"  # dockerd 28's default-ipc-mode
    if hc.NetworkMode in ("", "default"):
        hc.NetworkMode = "default"
    hc.CgroupnsMode = _cgroupns_mode(hc.CgroupnsMode)


def check_host_config(hc: HostConfig) -> None:
    """The resource limits and the restart policy, as dockerd checks them (also on update)."""
    _check_resources(hc)
    rp = hc.RestartPolicy
    if rp.Name not in ("", "no", "always", "unless-stopped", "on-failure"):
        raise InvalidArgument(f"invalid restart policy: unknown policy '{rp.Name}'; use one of 'no', 'always', "
                              "'on-failure', or 'unless-stopped'")
    if hc.AutoRemove and rp.Name not in ("", "no"):
        raise InvalidArgument("can't create 'AutoRemove' container with restart policy")
    if hc.PidsLimit is not None and hc.PidsLimit <= 0:
        hc.PidsLimit = None if hc.PidsLimit == 0 else hc.PidsLimit
    if hc.MemorySwappiness == -1:  # the CLI's "unset" (dockerd's fixMemorySwappiness): inspect shows null
        hc.MemorySwappiness = None


def _check_resources(hc: HostConfig) -> None:
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


def merge_config(cfg: ContainerConfig, image: Image) -> ContainerConfig:
    """The request's config over the image's (dockerd's merge)."""
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
    # dockerd: an empty request map takes the image's (null when the image has none: the CLI's
    # `"Volumes": {}` is inspected as null), a non-empty one gains the image's entries
    cfg.Volumes = {**cfg.Volumes, **(ic.Volumes or {})} if cfg.Volumes else ic.Volumes or None
    if cfg.ExposedPorts is None:
        cfg.ExposedPorts = ic.ExposedPorts
    elif ic.ExposedPorts:
        cfg.ExposedPorts = {**ic.ExposedPorts, **cfg.ExposedPorts}
    return cfg


def _cgroupns_mode(mode: str) -> str:
    """Docker's default: a private cgroup namespace on cgroup v2 hosts, the host's on v1."""
    if mode in ("host", "private"):
        return mode
    if mode:
        raise InvalidArgument(f"invalid cgroup namespace mode: {mode}")
    try:
        return "private" if detect().version == 2 else "host"
    except Exception:
        return "host"


def _check_storage_opt(opts: dict[str, str] | None) -> None:
    """overlay2's CreateReadWrite: berth sets no disk quotas, as overlay2 where the data root is
    not xfs with pquota (a 500); a key other than size is unknown to it."""
    if not opts:
        return
    if any(key.lower() == "size" for key in opts):
        raise Internal("--storage-opt is supported only for overlay over xfs with 'pquota' mount option")
    raise Internal(f"Unknown option {next(iter(opts))}")
