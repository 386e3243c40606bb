"""User namespaces (issue 17) against a real berthd whose default is ``userns-default: auto``
and whose subordinate ids come from files of its own: container root is not host root.

The docker CLI cannot send ``--userns=auto`` (it refuses any value but host), so it gets auto
from the daemon's default; ``berth run --userns=auto`` sends it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon

pytestmark = pytest.mark.root
DOCKER = "/usr/local/bin/docker"
POOL = (300000, 1000000)


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    if os.geteuid() != 0:
        pytest.skip("needs uid 0")
    if not os.path.exists("/proc/self/ns/user"):
        pytest.skip("no user namespaces in this kernel")
    d = Daemon(args=["--userns-default", "auto"])
    d.base.mkdir(parents=True, exist_ok=True)
    for name in ("subuid", "subgid"):
        (d.base / name).write_text(f"someone:100000:65536\nberth:{POOL[0]}:{POOL[1]}\n")
    d.start()
    try:
        d.import_busybox()
        yield d
    finally:
        d.cleanup()


def _docker(d: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKER, *args], env=d.env, capture_output=True, text=True, timeout=60)


def _berth(d: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "berth.cli.main", *args], env=d.env, capture_output=True,
                          text=True, timeout=60)


def _host_ids(pid: int) -> tuple[int, int]:
    """The (uid, gid) the host sees for a process: /proc/<pid>/status."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0])


def _pid(d: Daemon, name: str) -> int:
    return int(_docker(d, "inspect", "-f", "{{.State.Pid}}", name).stdout)


def test_root_inside_is_a_range_of_its_own_outside(daemon: Daemon) -> None:
    for name in ("uns-a", "uns-b"):
        r = _docker(daemon, "run", "-d", "--name", name, "busybox", "sleep", "60")
        assert r.returncode == 0, r.stderr
    try:
        assert _docker(daemon, "exec", "uns-a", "id", "-u").stdout.strip() == "0"
        assert _docker(daemon, "inspect", "-f", "{{.HostConfig.UsernsMode}}", "uns-a").stdout.strip() == "auto"
        a, b = _host_ids(_pid(daemon, "uns-a")), _host_ids(_pid(daemon, "uns-b"))
        for uid, gid in (a, b):
            assert POOL[0] <= uid < POOL[0] + POOL[1] and POOL[0] <= gid < POOL[0] + POOL[1]
        assert abs(a[0] - b[0]) >= 65536, (a, b)  # disjoint ranges
        # an exec joins the user namespace: its root is the container's, on the host too
        ps = _docker(daemon, "top", "uns-a").stdout.splitlines()
        assert ps[1].split()[0] == str(a[0])  # docker top shows host uids
        uid_map = _docker(daemon, "exec", "uns-a", "cat", "/proc/self/uid_map").stdout.split()
        assert uid_map == ["0", str(a[0]), "65536"]
        # a file the container's root writes in its writable layer is the range's on disk
        assert _docker(daemon, "exec", "uns-a", "touch", "/made-here").returncode == 0
        cid = _docker(daemon, "inspect", "-f", "{{.Id}}", "uns-a").stdout.strip()
        st = (daemon.data_root / "containers" / cid / "upper" / "made-here").stat()
        assert (st.st_uid, st.st_gid) == a
        # and image files (never chowned on disk) are root's inside
        assert _docker(daemon, "exec", "uns-a", "stat", "-c", "%u:%g", "/bin/busybox").stdout.strip() == "0:0"
    finally:
        _docker(daemon, "rm", "-f", "uns-a", "uns-b")


def test_range_is_freed_on_removal_and_kept_across_restarts(daemon: Daemon) -> None:
    assert _docker(daemon, "run", "-d", "--name", "uns-keep", "busybox", "sleep", "60").returncode == 0
    try:
        kept = _host_ids(_pid(daemon, "uns-keep"))[0]
        first = _docker(daemon, "run", "-d", "--name", "uns-gone", "busybox", "sleep", "60")
        gone = _host_ids(_pid(daemon, "uns-gone"))[0]
        assert first.returncode == 0 and gone != kept
        _docker(daemon, "rm", "-f", "uns-gone")
        daemon.stop()
        daemon.start()
        assert _docker(daemon, "exec", "uns-keep", "id", "-u").stdout.strip() == "0"  # live restore
        again = _docker(daemon, "run", "--rm", "busybox", "cat", "/proc/self/uid_map").stdout.split()
        assert again[1] == str(gone)  # the freed range is the lowest free one; uns-keep's is not given away
    finally:
        _docker(daemon, "rm", "-f", "uns-keep", "uns-gone")


def test_volume_files_are_the_mapped_ids(daemon: Daemon) -> None:
    r = _docker(daemon, "run", "--rm", "-v", "unsvol:/data", "busybox", "sh", "-c",
                "echo hi > /data/f && cat /proc/self/uid_map")
    assert r.returncode == 0, r.stderr
    base = int(r.stdout.split()[1])
    try:
        f = daemon.data_root / "volumes" / "unsvol" / "_data" / "f"
        assert (f.stat().st_uid, f.stat().st_gid) == (base, base)
    finally:
        _docker(daemon, "volume", "rm", "unsvol")


def test_root_inside_cannot_do_host_root_things(daemon: Daemon, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("host root only\n")
    os.chmod(secret, 0o600)
    os.chmod(tmp_path, 0o755)
    for extra in ([], ["--privileged"]):
        r = _docker(daemon, "run", "--rm", *extra, "-v", f"{secret}:/secret", "busybox", "cat", "/secret")
        assert r.returncode != 0 and "Permission denied" in r.stderr, (extra, r)
    # --privileged: every capability, but within the namespace only
    script = ("grep CapEff /proc/self/status; mknod /tmp/disk b 8 0 && echo MKNOD; "
              "echo 3 > /proc/sys/vm/drop_caches && echo DROPPED; mkdir /m && mount -t tmpfs t /m && echo MOUNTED")
    r = _docker(daemon, "run", "--rm", "--privileged", "busybox", "sh", "-c", script)
    host = _docker(daemon, "run", "--rm", "--privileged", "--userns=host", "busybox", "sh", "-c", script)
    assert r.stdout.splitlines()[0] == host.stdout.splitlines()[0], (r.stdout, host.stdout)
    assert "MKNOD" in host.stdout and "DROPPED" in host.stdout  # the probes can succeed
    assert "MKNOD" not in r.stdout and "DROPPED" not in r.stdout
    assert "MOUNTED" in r.stdout  # its own mount namespace is its user namespace's
    # the host's view of a bind with idmap: the host root's file is the container root's
    r = _berth(daemon, "run", "--rm", "-v", f"{tmp_path}:/h:idmap", "busybox", "stat", "-c", "%u", "/h/secret")
    assert r.returncode == 0 and r.stdout.strip() == "0", r


def test_berth_run_sends_auto_and_host_opts_out(daemon: Daemon) -> None:
    r = _berth(daemon, "run", "--rm", "--userns=auto:size=1000", "busybox", "cat", "/proc/self/uid_map")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[2] == "1000"
    r = _docker(daemon, "run", "--rm", "--userns=host", "busybox", "cat", "/proc/self/uid_map")
    assert r.stdout.split() == ["0", "0", "4294967295"]
    # the daemon's default gives way to the host's namespaces; an explicit auto is refused
    r = _docker(daemon, "run", "--rm", "--network=host", "busybox", "cat", "/proc/self/uid_map")
    assert r.stdout.split() == ["0", "0", "4294967295"], r
    r = _berth(daemon, "run", "--rm", "--userns=auto", "--pid=host", "busybox", "true")
    assert r.returncode == 125 and "cannot be used with --pid=host" in r.stderr, r


def test_bad_modes_and_exhausted_ranges(daemon: Daemon) -> None:
    status, body = daemon.request("POST", "/containers/create", json.dumps(
        {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"UsernsMode": "private"}}).encode(),
        {"Content-Type": "application/json"})
    assert status == 400 and json.loads(body)["message"] == "invalid USER mode: private"
    r = _berth(daemon, "run", "--rm", "--userns=auto:size=2000000", "busybox", "true")
    assert r.returncode == 125 and "no free range of 2000000 ids" in r.stderr, r
    before = _docker(daemon, "ps", "-aq").stdout.split()
    assert not before


def test_info_shows_the_default(daemon: Daemon) -> None:
    r = _docker(daemon, "info", "-f", "{{json .SecurityOptions}}")
    assert "name=userns,default=auto" in json.loads(r.stdout)


def test_commit_and_build_layers_carry_the_containers_own_ids(daemon: Daemon, tmp_path: Path) -> None:
    r = _docker(daemon, "run", "--name", "uns-commit", "busybox", "sh", "-c",
                "touch /by-root && touch /by-1000 && chown 1000:1001 /by-1000")
    assert r.returncode == 0, r.stderr
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN touch /built && chown 7:8 /built\n")
    try:
        assert _docker(daemon, "commit", "uns-commit", "uns-committed").returncode == 0
        env = {**daemon.env, "DOCKER_BUILDKIT": "0"}
        b = subprocess.run([DOCKER, "build", "-q", "-t", "uns-built", str(tmp_path)], env=env,
                           capture_output=True, text=True, timeout=120)
        assert b.returncode == 0, b.stderr
        for image, script, want in (("uns-committed", "stat -c %u:%g /by-root /by-1000", "0:0\n1000:1001"),
                                    ("uns-built", "stat -c %u:%g /built", "7:8")):
            out = _docker(daemon, "run", "--rm", "--userns=host", image, "sh", "-c", script)
            assert out.stdout.strip() == want, (image, out)
    finally:
        _docker(daemon, "rm", "-f", "uns-commit")
        _docker(daemon, "rmi", "-f", "uns-committed", "uns-built")
