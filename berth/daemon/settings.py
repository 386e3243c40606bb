"""The configuration (``daemon.config``'s args) applied to what ``daemon.main`` wires: the
containers' defaults, the registry options, the default bridge and address pools, what /info
shows; and SIGHUP, which reloads the reloadable keys into the same objects.
"""

from __future__ import annotations

import argparse
import logging
import os
from ipaddress import IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING, Any

from berth.daemon import config
from berth.daemon.config_values import ConfigError

if TYPE_CHECKING:
    from berth.api.app import App, DaemonInfo
    from berth.engine.container_defaults import ContainerDefaults
    from berth.engine.container_userns import UsernsSettings
    from berth.state.db import Database
    from berth.state.paths import DataRoot
    from berth.state.trash import Trash
    from berth.engine.networks import Networks
    from berth.engine.runtimes import Runtimes
    from berth.registry.client.options import Options

log = logging.getLogger("berthd")

LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR,
              "fatal": logging.CRITICAL}


def log_level(args: argparse.Namespace) -> int:
    return logging.DEBUG if args.debug else LOG_LEVELS[args.log_level]


def container_defaults(args: argparse.Namespace) -> ContainerDefaults:
    from berth.engine.container_defaults import ContainerDefaults
    return ContainerDefaults(
        log_driver=args.log_driver, log_opts=dict(args.log_opts), ulimits=dict(args.default_ulimits),
        shm_size=args.default_shm_size, ipc_mode=args.default_ipc_mode, cgroupns_mode=args.default_cgroupns_mode, dns=list(args.dns),
        dns_search=list(args.dns_search), dns_options=list(args.dns_opts), init=args.init,
        init_path=args.init_path, no_new_privileges=args.no_new_privileges, seccomp_profile=args.seccomp_profile,
        journal_socket=os.environ.get("BERTH_JOURNAL_SOCKET") or "/run/systemd/journal/socket",
        runtimes=runtimes(args), cgroup_parent=args.cgroup_parent,
        cgroups=not args.rootless or cgroups_delegated(), controllers=delegated_controllers(args),
        blkio_weight=_blkio_weight())


def _blkio_weight() -> bool:
    from berth.runtime.cgroups import blkio_weight
    return blkio_weight()


def delegated_controllers(args: argparse.Namespace) -> frozenset[str] | None:
    """A rootless engine's delegated cgroup v2 tree's controllers (None: rootful, or no tree)."""
    if not args.rootless or not cgroups_delegated():
        return None
    from berth.runtime.cgroups import controllers
    return controllers()


def _single_id() -> bool:
    from berth.state import rootless
    return rootless.nested() and rootless.max_gid() == 0


def cgroups_delegated() -> bool:
    from berth.runtime.cgroups import delegated
    return delegated()


def runtimes(args: argparse.Namespace) -> Runtimes:
    """runtimes and default-runtime; a Docker host's ``default-runtime: runc`` without a runc
    binary falls back to berth's own runtime (with a warning)."""
    from berth.engine.runtimes import Runtimes, with_found_runc
    from berth.state.paths import ExecRoot
    rts = Runtimes(configured=with_found_runc(args.runtimes), default=args.default_runtime,
                   exec_root=ExecRoot(Path(args.exec_root)))
    if rts.default not in rts.names():
        log.warning("default runtime %s is not installed: containers run with berth's own runtime", rts.default)
        rts.default = "berth"
    return rts


REMAP_DEFAULT = "dockremap"  # dockerd's name for ``userns-remap: default``


def userns_settings(args: argparse.Namespace, db: Database) -> UsernsSettings:
    """userns-default and userns-remap, with berth's pool of subordinate ids: the ``berth``
    lines of /etc/subuid and /etc/subgid (or of $BERTH_SUBUID_FILE and $BERTH_SUBGID_FILE,
    which tests point at files of their own), created at first use. Raises ConfigError when
    the kernel has no user namespaces."""
    import os
    from pathlib import Path

    from berth.engine.container_userns import UsernsSettings
    from berth.runtime.userns import IdMaps
    from berth.state.subids import SubidFiles, SubidPool, remap_ranges
    files = SubidFiles(Path(os.environ.get("BERTH_SUBUID_FILE") or "/etc/subuid"),
                       Path(os.environ.get("BERTH_SUBGID_FILE") or "/etc/subgid"))
    out = UsernsSettings(default=args.userns_default, pool=SubidPool(db, files))
    if (args.userns_default or args.userns_remap) and not os.path.exists("/proc/self/ns/user"):
        raise ConfigError("user namespaces are enabled in the configuration (userns-default, userns-remap) "
                          "but this kernel has none (CONFIG_USER_NS)")
    if args.userns_remap:
        user, _, group = args.userns_remap.partition(":")
        if user == "default":
            user = group = REMAP_DEFAULT
        group = group or user
        uids, gids = remap_ranges(files, user, group)
        out.remap = f"{user}:{group}"
        out.remap_maps = IdMaps(uid=_concat(uids), gid=_concat(gids))
        out.uses.append("name=userns")
    elif args.userns_default:
        out.uses.append(f"name=userns,default={args.userns_default}")
    return out


def userns_layers(userns: UsernsSettings, data: DataRoot, trash: Trash) -> list[list[str]]:
    """How a user namespace container sees the image's layers: idmapped mounts, or where the
    kernel cannot idmap overlay lower dirs (or BERTH_FORCE_USERNS_COPY=1, for tests) a chown'd
    copy per id range. The probe forks, so it runs in a helper process. -> /info's DriverStatus."""
    import subprocess
    import sys

    from berth.engine.userns_copies import LayerCopies
    if not userns.enabled:
        return []
    forced = os.environ.get("BERTH_FORCE_USERNS_COPY") == "1"
    if forced or subprocess.run([sys.executable, "-m", "berth.runtime.userns", "probe",
                                 str(data.root / "image")], capture_output=True).returncode != 0:
        userns.copies = LayerCopies(data, trash)
        why = "forced by BERTH_FORCE_USERNS_COPY" if forced else "no idmapped overlay in this kernel"
        return [["User namespace layers", f"chown'd copy per id range ({why})"]]
    return [["User namespace layers", "idmapped mounts"]]


def _concat(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int, int], ...]:
    """Ranges mapped one after another from container id 0 (dockerd's userns-remap)."""
    out, at = [], 0
    for start, count in ranges:
        out.append((at, start, count))
        at += count
    return tuple(out)


def registry_options(args: argparse.Namespace) -> Options:
    from berth.registry.client.options import Options
    return Options(insecure=list(args.insecure_registries), mirrors=list(args.registry_mirrors),
                   max_downloads=args.max_concurrent_downloads, max_uploads=args.max_concurrent_uploads)


def warnings(args: argparse.Namespace) -> list[str]:
    """/info's Warnings: what the configuration asks that berth does not do (yet)."""
    out = []
    if args.ipv6 and not args.fixed_cidr_v6:
        out.append("WARNING: ipv6 is true but fixed-cidr-v6 is not set: the default bridge has no IPv6")
    if args.rootless and _single_id():
        from berth.daemon.rootless import SINGLE_ID
        out.append(f"WARNING: rootless: {SINGLE_ID}")
    if args.rootless and not cgroups_delegated():
        from berth.engine.container_defaults import NO_CGROUPS
        out.append(f"WARNING: {NO_CGROUPS}")
    return out


def daemon_info(args: argparse.Namespace) -> DaemonInfo:
    from berth.api.app import DaemonInfo
    return DaemonInfo(debug=args.debug, labels=list(args.labels), logging_driver=args.log_driver,
                      init_binary=args.init_path, no_new_privileges=args.no_new_privileges,
                      warnings=warnings(args), rootless=args.rootless,
                      cgroups=not args.rootless or cgroups_delegated(), controllers=delegated_controllers(args),
                      rootless_net=_net_driver(),
                      fuse_storage=_fuse())


def _fuse() -> bool:
    from berth.state import rootless
    return rootless.fuse_storage()


def _net_driver() -> str:
    from berth.state import rootless
    return rootless.net_driver()


def pools(args: argparse.Namespace) -> list[tuple[IPv4Network, int]]:
    return [(IPv4Network(p["base"]), int(p["size"])) for p in args.default_address_pools]


def configure_networks(args: argparse.Namespace, networks: Networks) -> None:
    """default-address-pools (refused when a pool is all taken by the host's routes), and the
    default bridge's bip, fixed-cidr, mtu, ip-masq, icc. Raises ConfigError."""
    from berth.engine.network_bridges import configure_default
    if args.rootless:
        from berth.daemon.rootless_net import PORT_START_ENV
        networks.live.port_start = int(os.environ.get(PORT_START_ENV) or 1024)
    networks.pools = pools(args)
    if networks.pools:
        from berth.network import ipam, netlink
        own = {n.bridge for n in networks.nets.values() if n.bridge}
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(1) as pool:   # pyroute2 runs its own loop: not on berthd's
            host = pool.submit(netlink.host_networks, own).result()
        bad = ipam.unusable_pools(networks.pools, host)
        if bad:
            raise ConfigError("invalid value for \"default-address-pools\": " + ", ".join(
                f"pool {base} overlaps with the host route {route}" for base, route in bad))
    configure_default(networks, args.bip, args.fixed_cidr, args.mtu, args.ip_masq, args.icc,
                      args.ipv6, args.fixed_cidr_v6)
    b = networks.bridges
    b.iptables, b.ip6tables, b.ip_forward = args.iptables, args.ip6tables, args.ip_forward


def reload(args: argparse.Namespace, app: App) -> dict[str, Any]:
    """SIGHUP: read the file again and apply the reloadable keys that changed; a broken file
    is logged and the configuration in force stays. -> what changed."""
    try:
        changed = config.reload(args)
    except ConfigError as e:
        log.error("reloading the configuration from %s failed, keeping the current one: %s", args.config_file, e)
        return {}
    opts = app.distribution.opts
    defaults = app.containers.defaults
    for key, value in changed.items():
        if key == "debug":
            app.config.debug = value
            logging.getLogger().setLevel(log_level(args))
        elif key == "labels":
            app.config.labels = list(value)
        elif key == "live-restore":
            app.live_restore = value
        elif key == "max-concurrent-downloads":
            opts.max_downloads = value
        elif key == "max-concurrent-uploads":
            opts.max_uploads = value
        elif key == "registry-mirrors":
            opts.mirrors = list(value)
        elif key == "insecure-registries":
            opts.insecure = list(value)
        elif key == "default-ulimits":
            defaults.ulimits = dict(value)
        elif key == "runtimes":
            from berth.engine.runtimes import with_found_runc
            defaults.runtimes.configured = with_found_runc(value)
        log.info("reloaded %s: %s", key, value)
    app.config.warnings = warnings(args)
    if not changed:
        log.info("reloaded the configuration from %s: nothing changed", args.config_file)
    return changed
