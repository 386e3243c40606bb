"""Fixtures for image tests: real registries on 127.0.0.1 (Debian's docker-registry), skopeo,
and the berth CLI against the session berthd."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.integration.daemon import ROOT, Daemon
from tests.integration.images.oci_layout import Layout
from tests.integration.images.registry_proc import BINARY, RegistryProc


def _need(binary: str) -> None:
    if not (os.path.exists(binary) or shutil.which(binary)):
        pytest.fail(f"{binary} is not installed (.ci/run installs it)")


@pytest.fixture(scope="session")
def registry() -> Iterator[RegistryProc]:
    _need(BINARY)
    r = RegistryProc().start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture(scope="session")
def auth_registry() -> Iterator[RegistryProc]:
    _need(BINARY)
    _need("htpasswd")
    r = RegistryProc(htpasswd=("tester", "s3cret")).start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def berth(berthd: Daemon, busybox: str, tmp_path: Path):
    """Run the berth CLI: berth("pull", ref) -> CompletedProcess (DOCKER_CONFIG in tmp_path)."""
    def run(*args: str, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        env = dict(berthd.env, DOCKER_CONFIG=str(tmp_path / "dockercfg"))
        return subprocess.run([sys.executable, "-m", "berth.cli.main", *args], env=env, input=input,
                              capture_output=True, timeout=timeout, cwd=ROOT)
    return run


@pytest.fixture
def skopeo_push(tmp_path: Path):
    """skopeo_push(layout, tag, dest_ref, all=False, fmt=None): copy an OCI layout tag into a registry."""
    _need("skopeo")

    def run(layout: Layout, tag: str, dest: str, all: bool = False, fmt: str | None = None,
            creds: str | None = None) -> None:
        cmd = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
        if all:
            cmd.append("--all")
        if fmt:
            cmd += ["--format", fmt]
        if creds:
            cmd += ["--dest-creds", creds]
        cmd += [f"oci:{layout.root}:{tag}", f"docker://{dest}"]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
    return run


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path / "layout")


def layer_count(d: Daemon) -> int:
    return len(list((d.data_root / "image" / "layers").iterdir()))


def staging_empty(d: Daemon) -> bool:
    root = d.data_root / "image"
    return not any((root / "tmp").iterdir()) and not any((root / "ingest").iterdir())
