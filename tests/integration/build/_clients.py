"""Helpers of the client-driven build tests: contexts on disk, the clients' environments, and
the "nothing left behind" snapshot of a daemon."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DOCKER = "/usr/local/bin/docker"
ROOT = Path(__file__).resolve().parents[3]


def write_context(root: Path, files: dict[str, str | bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


def classic_env(berthd, tmp_path: Path, buildkit0: bool) -> dict[str, str]:
    """The docker CLI with an empty config dir (no cli-plugins, so no buildx), or BUILDKIT=0."""
    env = dict(berthd.env)
    cfg = tmp_path / "dockercfg"
    cfg.mkdir(exist_ok=True)
    env["DOCKER_CONFIG"] = str(cfg)
    env.pop("DOCKER_CLI_PLUGIN_EXTRA_DIRS", None)
    env.pop("BUILDX_BUILDER", None)
    if buildkit0:
        env["DOCKER_BUILDKIT"] = "0"
    else:
        env.pop("DOCKER_BUILDKIT", None)
    return env


def docker(env: dict[str, str], *args: str, cwd: Path | None = None, input: bytes | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKER, *args], env=env, cwd=cwd, input=input.decode() if input else None,
                          capture_output=True, text=True, timeout=timeout)


def berth(env: dict[str, str], *args: str, cwd: Path | None = None, input: bytes | None = None,
          timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "berth.cli.main", *args], env={**env, "PYTHONPATH": str(ROOT)},
                          cwd=cwd, input=input, capture_output=True, timeout=timeout)


def containers(berthd) -> set[str]:
    import json

    status, body = berthd.request("GET", "/containers/json?all=1")
    assert status == 200, body
    return {c["Id"] for c in json.loads(body)}


def mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if str(path) in line.split()[4]]


def tree(root: Path) -> set[str]:
    """Every path under the data root except content that legitimately grows (the cache db)."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            if rel.endswith(("-journal", "-wal", "-shm")) or rel.endswith(".db") or rel.endswith(".log"):
                continue
            out.add(rel)
    return out


def snapshot(berthd) -> tuple[set[str], set[str], list[str]]:
    return containers(berthd), tree(berthd.data_root), mounts_under(berthd.base)
