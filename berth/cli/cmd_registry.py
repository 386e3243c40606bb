"""``berth registry serve`` and ``berth registry gc``: the registry server's own commands.

They run in-process (no daemon). The server's modules (and aiohttp) are imported only here, so
other commands start as fast as before.
"""

from __future__ import annotations

import sys

from berth.cli._flags import Flag, Spec
from berth.errors import BerthError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def spec_registry_serve() -> Spec:
    return Spec("registry serve [OPTIONS]", "Serve an OCI Distribution registry", [
        Flag("addr", "", "string", "Address to listen on (HOST:PORT)", default="127.0.0.1:5000"),
        Flag("root", "", "string", "Storage root directory",
             default="/var/lib/berth-registry"),
        Flag("config", "", "string", "TOML configuration file"),
        Flag("tls-cert", "", "string", "TLS certificate file (PEM)"),
        Flag("tls-key", "", "string", "TLS private key file (PEM)"),
        Flag("read-only", "", "bool", "Refuse every write (pushes and deletes)"),
    ], max_args=0)


def _config(opts: dict[str, Any]) -> Any:
    from berth.registry.server.config import load

    config = load(opts.get("config") or None)
    for flag in opts["_changed"]:  # flags given on the command line win over the file
        if flag in ("addr", "root", "tls_cert", "tls_key", "read_only"):
            setattr(config, flag, opts[flag])
    return config


def run_registry_serve(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    try:
        config = _config(opts)
        from berth.registry.server.serve import run

        return run(config)
    except (ValueError, OSError) as exc:
        cli.err(f"berth registry serve: {exc}\n")
        return 1
    except Exception as exc:  # berth.errors.Conflict from the writers lock

        if isinstance(exc, BerthError):
            cli.err(f"berth registry serve: {exc}\n")
            return 1
        raise


def spec_registry_gc() -> Spec:
    return Spec("registry gc [OPTIONS]", "Remove blobs and manifests nothing references", [
        Flag("root", "", "string", "Storage root directory",
             default="/var/lib/berth-registry"),
        Flag("config", "", "string", "TOML configuration file"),
        Flag("dry-run", "", "bool", "Only print what would be removed"),
        Flag("delete-untagged", "", "bool", "Also remove manifests no tag reaches"),
    ], max_args=0)


def run_registry_gc(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    from berth.registry.server.gc import collect
    from berth.registry.server.storage import Storage

    try:
        config = _config(opts)
    except (ValueError, OSError) as exc:
        cli.err(f"berth registry gc: {exc}\n")
        return 1
    from pathlib import Path

    if not Path(config.root, "blobs").is_dir():
        cli.err(f"berth registry gc: {config.root} is not a registry storage root\n")
        return 1
    try:
        report = collect(Storage(Path(config.root)), dry_run=opts["dry_run"],
                         delete_untagged=opts["delete_untagged"],
                         upload_max_age=config.storage.upload_max_age)
    except (BerthError, OSError) as exc:
        cli.err(f"berth registry gc: {exc}\n")
        return 1
    verb = "would delete" if opts["dry_run"] else "deleted"
    for repo, digest in report.manifests_deleted:
        cli.out(f"{verb} manifest {repo}@{digest}\n")
    for digest in report.blobs_deleted:
        cli.out(f"{verb} blob {digest}\n")
    cli.out(f"{len(report.manifests_deleted)} manifests, {len(report.blobs_deleted)} blobs, "
            f"{report.bytes_freed} bytes {'to free' if opts['dry_run'] else 'freed'}\n")
    sys.stdout.flush()
    return 0
