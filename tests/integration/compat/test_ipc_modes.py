"""Docker's IPC modes and the /dev/shm each gives (moby 28: setupIPCDirs, IpcMounts, WithIPC):
``private`` (the default) its own tmpfs; ``shareable`` a tmpfs of ShmSize the daemon mounts at
the container's directory and binds in (unmounted when it exits or goes, and by berthd's
recovery after a ``kill -9``); ``container:X`` X's IPC namespace and X's /dev/shm; ``host`` the
host's /dev/shm; ``none`` no /dev/shm mount at all; and dockerd's errors for a donor that cannot
be joined."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon, running

pytestmark = pytest.mark.root
DOCKER = "/usr/local/bin/docker"
SHM_MOUNTS = "awk '$5 == \"/dev/shm\"' /proc/self/mountinfo | wc -l"
HINT = "non-shareable IPC (hint: use IpcMode:shareable for the donor container)"


def _name(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:8]}"


def _shm_mounts(data_root: Path) -> list[str]:
    """berthd's (the host's) mount points named shm below a data root."""
    root = str(data_root) + "/"
    points = (line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines())
    return [p for p in points if p.startswith(root) and p.endswith("/shm")]


def _donor(docker, *args: str) -> tuple[str, str]:
    name = _name("donor")
    r = docker("run", "-d", "--name", name, "--ipc", "shareable", *args, "busybox", "sleep", "300")
    assert r.returncode == 0, r.stderr
    return name, r.stdout.strip()


def test_joiner_sees_the_donors_dev_shm(docker):
    """Docker 17.06+, API 1.32: `--ipc container:X` (X shareable) binds X's /dev/shm: a file
    written there in X is read in the joiner, and the joiner's writes are seen in X."""
    name, _ = _donor(docker)
    try:
        assert docker("exec", name, "sh", "-c", "echo from-donor > /dev/shm/seg").returncode == 0
        r = docker("run", "--rm", "--ipc", f"container:{name}", "busybox", "sh", "-c",
                   f"cat /dev/shm/seg && echo from-joiner > /dev/shm/back && {SHM_MOUNTS}")
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["from-donor", "1"]
        assert docker("exec", name, "cat", "/dev/shm/back").stdout == "from-joiner\n"
    finally:
        docker("rm", "-f", name)


def test_a_paused_donor_can_be_joined(docker):
    """Docker 28, API 1.50: a paused container is running (IsRunning): it can be joined, and
    its /dev/shm is bound."""
    name, _ = _donor(docker)
    try:
        assert docker("exec", name, "sh", "-c", "echo paused > /dev/shm/seg").returncode == 0
        assert docker("pause", name).returncode == 0
        r = docker("run", "--rm", "--ipc", f"container:{name}", "busybox", "cat", "/dev/shm/seg")
        assert (r.returncode, r.stdout) == (0, "paused\n"), r.stderr
    finally:
        docker("rm", "-f", name)


def test_shareable_tmpfs_is_mounted_at_its_dir_and_goes(docker, berthd):
    """Docker 17.06+, API 1.32: `--ipc shareable --shm-size 8m`: an 8 MiB tmpfs the daemon
    mounts at <data-root>/containers/<id>/shm; unmounted when the container stops, mounted
    again at its start, gone with `docker rm -f`."""
    name, cid = _donor(docker, "--shm-size", "8m")
    point = f"{berthd.data_root}/containers/{cid}/shm"
    try:
        assert point in _shm_mounts(berthd.data_root)
        assert os.statvfs(point).f_blocks * os.statvfs(point).f_frsize == 8 << 20
        r = docker("exec", name, "sh", "-c", "df -k /dev/shm | tail -1")
        assert r.stdout.split()[1] == "8192", r.stdout
        assert docker("stop", "-t", "0", name).returncode == 0
        assert point not in _shm_mounts(berthd.data_root)
        assert docker("start", name).returncode == 0
        assert point in _shm_mounts(berthd.data_root)
    finally:
        docker("rm", "-f", name)
    assert point not in _shm_mounts(berthd.data_root)


def test_inspect_shows_ipc_mode_and_shm_size(docker):
    """Docker 28, API 1.50: HostConfig.IpcMode is the daemon's default `private` when not
    given, else as given; ShmSize 64 MiB by default."""
    a, b = _name("ipc"), _name("ipc")
    try:
        assert docker("create", "--name", a, "busybox", "true").returncode == 0
        assert docker("create", "--name", b, "--ipc", "shareable", "--shm-size", "8m", "busybox", "true").returncode == 0
        r = docker("inspect", "-f", "{{json .HostConfig}}", a, b)
        hcs = [json.loads(line) for line in r.stdout.splitlines()]
        assert [(h["IpcMode"], h["ShmSize"]) for h in hcs] == [("private", 64 << 20), ("shareable", 8 << 20)]
    finally:
        docker("rm", "-f", a, b)


def test_ipc_none_has_no_dev_shm_mount(docker):
    """Docker 17.06+, API 1.32: `--ipc none`: no /dev/shm mount at all."""
    r = docker("run", "--rm", "--ipc", "none", "busybox", "sh", "-c", SHM_MOUNTS)
    assert (r.returncode, r.stdout.strip()) == (0, "0"), r.stderr


def test_ipc_host_binds_the_hosts_dev_shm(docker):
    """Docker 17.06+, API 1.32: `--ipc host` binds the host's /dev/shm."""
    seg = Path("/dev/shm") / f"berth-ipc-{uuid.uuid4().hex[:8]}"
    seg.write_text("from-host\n")
    try:
        r = docker("run", "--rm", "--ipc", "host", "busybox", "cat", f"/dev/shm/{seg.name}")
        assert (r.returncode, r.stdout) == (0, "from-host\n"), r.stderr
    finally:
        seg.unlink()


def test_private_is_its_own(docker):
    """Docker 28, API 1.50: the default (`private`) /dev/shm is a tmpfs of the container's own:
    a shareable container's files are not in it."""
    name, _ = _donor(docker)
    try:
        assert docker("exec", name, "sh", "-c", "echo x > /dev/shm/seg").returncode == 0
        r = docker("run", "--rm", "busybox", "sh", "-c", f"ls /dev/shm; {SHM_MOUNTS}")
        assert r.stdout.split() == ["1"], r.stdout
    finally:
        docker("rm", "-f", name)


def _start_status(berthd: Daemon, body: dict) -> tuple[int, str]:
    status, out = berthd.request("POST", "/containers/create", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    assert status == 201, out
    cid = json.loads(out)["Id"]
    try:
        status, out = berthd.request("POST", f"/containers/{cid}/start")
        return status, json.loads(out)["message"] if out else ""
    finally:
        berthd.request("DELETE", f"/containers/{cid}?force=1")


def test_joining_a_private_donor_is_refused(docker, berthd):
    """Docker 28, API 1.50: joining a running non-shareable container: 400, dockerd's words;
    `docker run` exits 125 with them."""
    name = _name("private")
    assert docker("run", "-d", "--name", name, "busybox", "sleep", "300").returncode == 0
    try:
        status, msg = _start_status(berthd, {"Image": "busybox", "Cmd": ["true"],
                                             "HostConfig": {"IpcMode": f"container:{name}"}})
        assert (status, msg) == (400, f"failed to join IPC namespace: container {name}: {HINT}")
        r = docker("run", "--rm", "--ipc", f"container:{name}", "busybox", "true", timeout=30)
        assert r.returncode == 125
        assert f"failed to join IPC namespace: container {name}: {HINT}" in r.stderr
    finally:
        docker("rm", "-f", name)


def test_joining_a_stopped_donor_is_a_conflict(docker, berthd):
    """Docker 28, API 1.50: joining a shareable container that does not run: 409 `Container X
    is not running`; a missing one: 400."""
    name = _name("stopped")
    assert docker("create", "--name", name, "--ipc", "shareable", "busybox", "sleep", "300").returncode == 0
    try:
        status, msg = _start_status(berthd, {"Image": "busybox", "Cmd": ["true"],
                                             "HostConfig": {"IpcMode": f"container:{name}"}})
        assert (status, msg) == (409, f"failed to join IPC namespace: Container {name} is not running")
        status, msg = _start_status(berthd, {"Image": "busybox", "Cmd": ["true"],
                                             "HostConfig": {"IpcMode": "container:nosuch-" + name}})
        assert (status, msg) == (400, f"failed to join IPC namespace: No such container: nosuch-{name}")
    finally:
        docker("rm", "-f", name)


def test_recovery_unmounts_a_dead_shareables_dev_shm(tmp_path: Path) -> None:
    """Docker 17.06+ (daemon restore: a dead container's IPC mount is unmounted): after a
    `kill -9` of berthd, a shareable container that died meanwhile has its tmpfs unmounted at
    the next start; a living one keeps it."""
    if os.geteuid() != 0:
        pytest.skip("needs uid 0")
    with running(Daemon()) as d:
        def docker(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([DOCKER, *args], env=d.env, capture_output=True, text=True, timeout=60)

        _, live = _donor(docker)
        _, dead = _donor(docker)
        pid = int(docker("inspect", "-f", "{{.State.Pid}}", dead).stdout)
        d.kill9()
        os.kill(pid, signal.SIGKILL)   # it dies while berthd is away
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"{d.data_root}/containers/{dead}/shm" in _shm_mounts(d.data_root)
        d.start()
        assert docker("wait", dead).stdout.strip() == "137"   # the exit berthd finds again
        mounts = _shm_mounts(d.data_root)
        assert f"{d.data_root}/containers/{dead}/shm" not in mounts
        assert f"{d.data_root}/containers/{live}/shm" in mounts
        assert docker("rm", "-f", live, dead).returncode == 0
        assert not _shm_mounts(d.data_root)
