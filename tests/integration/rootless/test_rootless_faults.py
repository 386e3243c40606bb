"""Rootless berthd's bad starts and its neighbours (issue 15): a user without subordinate ids,
newuidmap missing, no $XDG_RUNTIME_DIR, and two users' daemons side by side."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.images.registry_proc import free_port
from tests.integration.rootless.netclient import http_get
from tests.integration.rootless.user import DOCKER, RootlessDaemon, RootlessUser, need_tools, rootfs_tar

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rootfs_tar(tmp_path_factory.mktemp("rootfs"))


@pytest.fixture
def user() -> Iterator[RootlessUser]:
    need_tools()
    with RootlessUser.make() as u:
        yield u


def _run_berthd(d: RootlessDaemon, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """berthd as the user, expected to stop at once."""
    d.extra_env.update(env or {})
    return subprocess.run(d.command([sys.executable, "-m", "berth.daemon.main"]), capture_output=True,
                          text=True, timeout=60)


def test_newuidmap_missing_stops_berthd_with_the_package_to_install(user: RootlessUser) -> None:
    d = RootlessDaemon(user)
    r = _run_berthd(d, {"PATH": "/usr/sbin:/sbin"})  # newuidmap is in /usr/bin
    assert r.returncode != 0
    assert "newuidmap not found: install the uidmap package" in r.stderr, r.stderr
    assert not d.sock.exists() and not user.pids()  # nothing left behind


def test_no_runtime_dir_is_refused(user: RootlessUser) -> None:
    d = RootlessDaemon(user)
    d.user_env = lambda: {"HOME": str(user.home), "PYTHONPATH": str(Path(__file__).resolve().parents[3])}  # type: ignore[method-assign]
    r = _run_berthd(d)
    assert r.returncode != 0 and "$XDG_RUNTIME_DIR needs to be set" in r.stderr, r.stderr


def test_without_subordinate_ids_a_single_id_map_says_what_it_limits(tar: Path) -> None:
    need_tools()
    with RootlessUser.make(subids=False) as u:
        d = RootlessDaemon(u)
        try:
            d.start()
            d.import_busybox(tar)
            r = d.docker("run", "--rm", "busybox", "sh", "-c", "id -u; cat /proc/self/uid_map")
            assert r.returncode == 0, r.stderr
            assert r.stdout.split() == ["0", "0", str(u.uid), "1"]
            info = json.loads(d.docker("info", "--format", "{{json .}}").stdout)
            assert any("single-id map" in w and "--user other than root" in w for w in info["Warnings"])
            assert "no subordinate ids for" in d.log.read_text()
            r = d.docker("run", "--rm", "--user", "1000", "busybox", "true")
            assert r.returncode != 0  # the limit the warning names
        finally:
            d.stop()


def test_two_users_side_by_side_cannot_reach_each_other(tar: Path) -> None:
    need_tools()
    with RootlessUser.make() as a, RootlessUser.make() as b:
        da, db = RootlessDaemon(a), RootlessDaemon(b)
        try:
            da.start()
            db.start()
            for d in (da, db):
                d.import_busybox(tar)
            assert da.docker("run", "-d", "--name", "mine-a", "busybox", "sleep", "3101").returncode == 0
            assert db.docker("run", "-d", "--name", "mine-b", "busybox", "sleep", "3102").returncode == 0
            assert da.docker("ps", "--format", "{{.Names}}").stdout == "mine-a\n"
            assert db.docker("ps", "--format", "{{.Names}}").stdout == "mine-b\n"
            # b's processes may not connect to a's socket (nor list its directory)
            r = subprocess.run(db.command([DOCKER, "-H", da.host, "ps"]), capture_output=True, text=True, timeout=60)
            assert r.returncode != 0 and "permission denied" in r.stderr, r.stderr
            assert os.stat(a.runtime).st_mode & 0o077 == 0
            # separate engines: their own data roots, networks in namespaces of their own
            ia = json.loads(da.docker("inspect", "mine-a").stdout)[0]
            ib = json.loads(db.docker("inspect", "mine-b").stdout)[0]
            assert ia["GraphDriver"]["Data"]["UpperDir"].startswith(str(a.home))
            assert ib["GraphDriver"]["Data"]["UpperDir"].startswith(str(b.home))
        finally:
            da.stop()
            db.stop()


def _rootless_check(d: RootlessDaemon) -> subprocess.CompletedProcess[str]:
    return subprocess.run(d.command([sys.executable, "-m", "berth.cli.main", "system", "rootless-check"]),
                          capture_output=True, text=True, timeout=60)


def test_rootless_check_reports_each_need_with_its_fix(user: RootlessUser) -> None:
    d = RootlessDaemon(user)
    r = _rootless_check(d)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert f"[  ok] subordinate ids: uids {user.subuid_start()}:65536; gids " in lines[0]
    for name in ("newuidmap/newgidmap", "user namespaces", "storage", "network", "XDG_RUNTIME_DIR"):
        assert any(line.startswith(f"[  ok] {name}:") for line in lines), (name, r.stdout)
    assert any(line.startswith("[") and "cgroups:" in line for line in lines)
    d.extra_env["PATH"] = "/usr/sbin:/sbin"   # neither newuidmap nor pasta
    r = _rootless_check(d)
    assert r.returncode == 1
    assert "[FAIL] newuidmap/newgidmap: newuidmap and newgidmap not found\n       fix: sudo apt-get install uidmap\n" in r.stdout
    assert "[WARN] network: neither pasta nor slirp4netns" in r.stdout and "fix: sudo apt-get install passt" in r.stdout


def test_rootless_check_without_subordinate_ids_warns_with_the_usermod_line() -> None:
    need_tools()
    with RootlessUser.make(subids=False) as u:
        r = _rootless_check(RootlessDaemon(u))
        assert r.returncode == 0, r.stdout
        assert (f"[WARN] subordinate ids: no line for {u.name} in /etc/subuid and /etc/subgid" in r.stdout)
        assert f"fix: sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {u.name}" in r.stdout


def _inner_berthd(d: RootlessDaemon) -> int:
    """The host pid of the berthd inside the namespaces (the child of the host side)."""
    assert d.proc is not None
    children = Path(f"/proc/{d.proc.pid}/task/{d.proc.pid}/children").read_text().split()
    for p in children:
        nspid = next(line for line in Path(f"/proc/{p}/status").read_text().splitlines() if line.startswith("NSpid:"))
        if len(nspid.split()) == 3:  # in the engine's pid namespace (not pasta, nor pasta's watcher)
            return int(p)
    raise AssertionError(f"no berthd under {d.proc.pid}: {children}")


def test_killing_the_users_berthd_keeps_its_containers_and_the_next_finds_them(user: RootlessUser,
                                                                              tar: Path) -> None:
    d = RootlessDaemon(user)
    d.start()
    try:
        d.import_busybox(tar)
        r = d.docker("run", "-d", "--name", "kept", "busybox", "sh", "-c",
                     "echo before; trap 'echo after; exit 3' TERM; while :; do sleep 0.1; done")
        assert r.returncode == 0, r.stderr
        port = free_port()
        r = d.docker("run", "-d", "--name", "kweb", "-p", f"{port}:80", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc")
        assert r.returncode == 0, r.stderr
        assert http_get(f"http://127.0.0.1:{port}/hostname") == r.stdout.strip()[:12].encode() + b"\n"
        os.kill(_inner_berthd(d), 9)
        assert d.proc is not None and d.proc.wait(10) == 137   # the host side ends with berthd's status
        holder = int((user.runtime / "berth" / "rootless.pid").read_text())
        assert Path(f"/proc/{holder}").exists()                 # the namespaces are held
        d.start()                                               # a new berthd joins them
        r = d.docker("inspect", "-f", "{{.State.Status}}", "kept")
        assert r.stdout == "running\n", r.stdout + r.stderr
        assert d.docker("exec", "kept", "echo", "reached").stdout == "reached\n"
        time.sleep(2)  # pasta has followed the listeners of the namespace since
        assert http_get(f"http://127.0.0.1:{port}/hostname")   # the port is published again
        assert d.docker("rm", "-f", "kweb").returncode == 0
        assert d.docker("stop", "-t", "5", "kept").returncode == 0
        assert d.docker("logs", "kept").stdout == "before\nafter\n"
        assert d.docker("inspect", "-f", "{{.State.ExitCode}}", "kept").stdout == "3\n"
    finally:
        d.stop()
    # no berthd and no container left: the holder lets the namespaces go, pasta with them
    deadline = time.monotonic() + 10
    while user.pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not user.pids(), [Path(f"/proc/{p}/cmdline").read_bytes()[:80] for p in user.pids()]
