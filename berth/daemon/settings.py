"""The configuration (``daemon.config``'s args) applied to what ``daemon.main`` wires: the
containers' defaults, the registry options, the default bridge and address pools, what /info
shows; and SIGHUP, which reloads the reloadable keys into the same objects.
"""

from __future__ import annotations

import argparse
import logging
from ipaddress import IPv4Network
from typing import TYPE_CHECKING, Any

from berth.daemon import config
from berth.daemon.config_values import ConfigError

if TYPE_CHECKING:
    from berth.api.app import App, DaemonInfo
    from berth.engine.container_defaults import ContainerDefaults
    from berth.engine.networks import Networks
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
        shm_size=args.default_shm_size, cgroupns_mode=args.default_cgroupns_mode, dns=list(args.dns),
        dns_search=list(args.dns_search), dns_options=list(args.dns_opts), init=args.init,
        init_path=args.init_path, no_new_privileges=args.no_new_privileges, seccomp_profile=args.seccomp_profile)


def registry_options(args: argparse.Namespace) -> Options:
    from berth.registry.client.options import Options
    return Options(insecure=list(args.insecure_registries), mirrors=list(args.registry_mirrors),
                   max_downloads=args.max_concurrent_downloads, max_uploads=args.max_concurrent_uploads)


def warnings(args: argparse.Namespace) -> list[str]:
    """/info's Warnings: what the configuration asks that berth does not do (yet)."""
    out = []
    if args.ipv6 and not args.fixed_cidr_v6:
        out.append("WARNING: ipv6 is true but fixed-cidr-v6 is not set: the default bridge has no IPv6")
    if args.runtimes:
        out.append("WARNING: runtimes are configured, but berth runs containers with its own runtime only")
    if args.cgroup_parent:
        out.append("WARNING: cgroup-parent is configured, but berth puts containers under /berth")
    return out


def daemon_info(args: argparse.Namespace) -> DaemonInfo:
    from berth.api.app import DaemonInfo
    return DaemonInfo(debug=args.debug, labels=list(args.labels), runtimes=dict(args.runtimes),
                      default_runtime=args.default_runtime, logging_driver=args.log_driver,
                      init_binary=args.init_path, no_new_privileges=args.no_new_privileges,
                      warnings=warnings(args))


def pools(args: argparse.Namespace) -> list[tuple[IPv4Network, int]]:
    return [(IPv4Network(p["base"]), int(p["size"])) for p in args.default_address_pools]


def configure_networks(args: argparse.Namespace, networks: Networks) -> None:
    """default-address-pools (refused when a pool is all taken by the host's routes), and the
    default bridge's bip, fixed-cidr, mtu, ip-masq, icc. Raises ConfigError."""
    from berth.engine.network_bridges import configure_default
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
            app.config.runtimes = dict(value)
        log.info("reloaded %s: %s", key, value)
    app.config.warnings = warnings(args)
    if not changed:
        log.info("reloaded the configuration from %s: nothing changed", args.config_file)
    return changed
