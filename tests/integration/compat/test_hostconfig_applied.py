"""HostConfig settings that `docker run` users rely on must reach the container, not only the
stored config: namespace modes (``--pid``, ``--ipc``, ``--uts``), ``--sysctl``, ``--ulimit``
and ``--oom-score-adj``. Each was accepted and shown by inspect but silently not applied.
"""

from __future__ import annotations

import os
import socket
import uuid

import pytest

pytestmark = pytest.mark.root


def _ns(kind: str) -> str:
    return os.readlink(f"/proc/self/ns/{kind}")


def _run(docker, *args: str) -> str:
    r = docker("run", "--rm", *args)
    assert r.returncode == 0, r
    return r.stdout.strip()


@pytest.fixture
def donor(docker):
    name = f"donor-{uuid.uuid4().hex[:8]}"
    r = docker("run", "-d", "--name", name, "--ipc", "shareable", "busybox", "sleep", "300")
    assert r.returncode == 0, r
    yield name
    docker("rm", "-f", name)


def test_pid_host_sees_host_pid_namespace(docker):
    """Docker 20.10+, API 1.41: `--pid host` keeps the host's PID namespace (HostConfig.PidMode)."""
    assert _run(docker, "--pid", "host", "busybox", "readlink", "/proc/self/ns/pid") == _ns("pid")


def test_pid_container_joins_that_container(docker, donor):
    """Docker 20.10+, API 1.41: `--pid container:X` joins X's PID namespace: X's `sleep` is visible."""
    out = _run(docker, "--pid", f"container:{donor}", "busybox", "ps", "-o", "args")
    assert "sleep 300" in out


def test_ipc_host_shares_host_ipc_namespace(docker):
    """Docker 20.10+, API 1.41: `--ipc host` keeps the host's IPC namespace (HostConfig.IpcMode)."""
    assert _run(docker, "--ipc", "host", "busybox", "readlink", "/proc/self/ns/ipc") == _ns("ipc")


def test_ipc_container_joins_shareable_donor(docker, donor):
    """Docker 20.10+, API 1.41: `--ipc container:X` (X shareable) is in X's IPC namespace."""
    r = docker("exec", donor, "readlink", "/proc/self/ns/ipc")
    assert r.returncode == 0, r
    assert _run(docker, "--ipc", f"container:{donor}", "busybox", "readlink", "/proc/self/ns/ipc") == r.stdout.strip()


SHM_MOUNTS = "awk '$5 == \"/dev/shm\"' /proc/self/mountinfo | wc -l"


def test_own_dev_shm_mount_is_the_only_one(docker, tmp_path):
    """`-v /x:/dev/shm`: the user's mount is the container's /dev/shm, with no default tmpfs
    hidden under it (one mount at /dev/shm in mountinfo, as dockerd)."""
    out = _run(docker, "-v", f"{tmp_path}:/dev/shm", "busybox", "sh", "-c", f"echo seg > /dev/shm/f && {SHM_MOUNTS}")
    assert out == "1"
    assert (tmp_path / "f").read_text() == "seg\n"
    assert _run(docker, "busybox", "sh", "-c", SHM_MOUNTS) == "1"


def test_uts_host_has_host_hostname(docker):
    """Docker 20.10+, API 1.41: `--uts host` keeps the host's UTS namespace, so its hostname."""
    assert _run(docker, "--uts", "host", "busybox", "hostname") == socket.gethostname()


def test_sysctl_is_set_in_container(docker):
    """Docker 20.10+, API 1.41: `--sysctl` (HostConfig.Sysctls) is written in the container's
    namespaces, over Docker's own defaults."""
    out = _run(docker, "--sysctl", "net.ipv4.ip_unprivileged_port_start=53", "busybox",
               "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start")
    assert out == "53"


def test_sysctl_of_no_namespace_is_refused(berthd, busybox):
    """Docker 20.10+, API 1.41: a sysctl that is not namespaced fails the start with runc's
    reason (the CLI refuses it earlier; the API does not)."""
    import json
    body = json.dumps({"Image": busybox, "Cmd": ["true"], "HostConfig": {"Sysctls": {"vm.swappiness": "1"}}})
    status, out = berthd.request("POST", "/v1.41/containers/create", body.encode(),
                                 {"Content-Type": "application/json"})
    assert status == 201, out
    cid = json.loads(out)["Id"]
    try:
        status, out = berthd.request("POST", f"/v1.41/containers/{cid}/start")
        assert status == 400, out
        assert 'sysctl "vm.swappiness" is not in a separate kernel namespace' in json.loads(out)["message"]
    finally:
        berthd.request("DELETE", f"/containers/{cid}?force=1")


def test_net_sysctl_with_host_network_is_refused(docker):
    """Docker 20.10+, API 1.41: a net.* sysctl with `--network host` fails as runc refuses it."""
    r = docker("run", "--rm", "--network", "host", "--sysctl", "net.ipv4.ip_forward=1", "busybox", "true")
    assert r.returncode != 0
    assert 'sysctl "net.ipv4.ip_forward" not allowed in host network namespace' in r.stderr


def test_ulimit_is_applied(docker):
    """Docker 20.10+, API 1.41: `--ulimit nofile=1234:1234` (HostConfig.Ulimits) sets the rlimit."""
    assert _run(docker, "--ulimit", "nofile=1234:1234", "busybox", "sh", "-c", "ulimit -n") == "1234"


def test_oom_score_adj_is_applied(docker):
    """Docker 20.10+, API 1.41: `--oom-score-adj 500` (HostConfig.OomScoreAdj) is the process's
    oom_score_adj."""
    assert _run(docker, "--oom-score-adj", "500", "busybox", "cat", "/proc/self/oom_score_adj") == "500"


def test_run_rm_joining_missing_container_fails_and_removes(docker):
    """Docker 20.10+, API 1.41: when start fails for any reason, an AutoRemove container is
    removed, so `docker run --rm --pid container:<missing>` fails instead of waiting forever."""
    name = f"orphan-{uuid.uuid4().hex[:8]}"
    r = docker("run", "--rm", "--name", name, "--pid", "container:nosuch-" + name, "busybox", "true", timeout=30)
    assert r.returncode != 0
    assert "No such container" in r.stderr
    assert docker("inspect", "--type", "container", name).returncode != 0


def test_ipc_container_refuses_private_donor(docker):
    """Docker 20.10+, API 1.41: `--ipc container:X` needs X created with `--ipc shareable`."""
    name = f"private-{uuid.uuid4().hex[:8]}"
    assert docker("run", "-d", "--name", name, "busybox", "sleep", "300").returncode == 0
    try:
        r = docker("run", "--rm", "--ipc", f"container:{name}", "busybox", "true", timeout=30)
        assert r.returncode != 0
        assert "non-shareable IPC" in r.stderr
    finally:
        docker("rm", "-f", name)


def _cgroup_v1(controller: str, cid: str, name: str) -> str:
    from pathlib import Path
    p = Path("/sys/fs/cgroup") / controller / "berth" / cid / name
    if not p.exists():
        pytest.skip(f"no cgroup v1 {controller} hierarchy at {p.parent}")
    return p.read_text().strip()


@pytest.fixture
def running(docker):
    made: list[str] = []

    def run(*args: str) -> str:
        r = docker("run", "-d", *args, "busybox", "sleep", "300")
        assert r.returncode == 0, r
        made.append(r.stdout.strip())
        return made[-1]
    yield run
    for cid in made:
        docker("rm", "-f", cid)


def test_cpuset_cpus_is_applied(running):
    """Docker 20.10+, API 1.41: `--cpuset-cpus 0` (HostConfig.CpusetCpus) is the cgroup's cpuset."""
    assert _cgroup_v1("cpuset", running("--cpuset-cpus", "0"), "cpuset.cpus") == "0"


def test_memory_reservation_is_applied(running):
    """Docker 20.10+, API 1.41: `--memory-reservation 16m` is the memory cgroup's soft limit."""
    cid = running("--memory-reservation", "16m")
    assert _cgroup_v1("memory", cid, "memory.soft_limit_in_bytes") == str(16 * 1024 * 1024)


def test_device_is_made_in_container(docker):
    """Docker 20.10+, API 1.41: `--device /dev/null:/dev/mynull` (HostConfig.Devices) makes the
    node inside, with the host's major:minor, and it can be used."""
    out = _run(docker, "--device", "/dev/null:/dev/mynull", "busybox", "sh", "-c",
               "stat -c '%t:%T' /dev/mynull && echo x > /dev/mynull && echo ok")
    assert out.split() == ["1:3", "ok"]


def test_missing_device_is_refused(docker):
    """Docker 20.10+, API 1.41: a `--device` whose host path does not exist fails the start."""
    r = docker("run", "--rm", "--device", "/dev/nosuch-berth", "busybox", "true", timeout=30)
    assert r.returncode != 0
    assert 'error gathering device information while adding custom device "/dev/nosuch-berth"' in r.stderr


def test_privileged_sees_host_devices(docker):
    """Docker 20.10+, API 1.41: `--privileged` gives the container every host device node
    (runc's HostDevices), e.g. /dev/kmsg."""
    if not os.path.exists("/dev/kmsg"):
        pytest.skip("host has no /dev/kmsg")
    assert _run(docker, "--privileged", "busybox", "sh", "-c", "test -c /dev/kmsg && echo yes") == "yes"
