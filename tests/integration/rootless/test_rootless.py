"""Rootless berthd (issue 15): an ordinary user's berthd in a user namespace of its own, driven
by the real docker CLI. A throwaway user with subordinate ranges runs it; nothing of the engine
runs as host root; root in a container is the user's first subordinate id on the host, other
ids the ones above it, and the user itself an id above the range (the owner of its socket).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.rootless.netclient import clients_seen, http_get
from tests.integration.rootless.user import RootlessDaemon, RootlessUser, need_tools, registry_round_trip, rootfs_tar

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rootfs_tar(tmp_path_factory.mktemp("rootfs"))


@pytest.fixture(scope="module")
def user() -> Iterator[RootlessUser]:
    need_tools()
    u = RootlessUser.make()
    try:
        yield u
    finally:
        u.remove()


@pytest.fixture(scope="module")
def rl(user: RootlessUser, tar: Path) -> Iterator[RootlessDaemon]:
    # the host's usual net.ipv4.ip_unprivileged_port_start, whatever this host's is now
    d = RootlessDaemon(user, ["--debug"], env={"BERTH_ROOTLESS_PORT_START": "1024"})
    try:
        d.start()
        d.import_busybox(tar)
        yield d
    finally:
        d.stop()


def _status_ids(pid: int) -> tuple[int, int]:
    """(real uid, real gid) of a host process, from /proc/<pid>/status."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0])


def _host_pid(rl: RootlessDaemon, name: str) -> int:
    """The host pid of a container's init: the one process of the user's whose cmdline is it
    (waited for: ``docker run -d`` may return just before the init's exec)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for p in rl.user.pids():
            try:
                if Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", name.encode()]:
                    return p
            except FileNotFoundError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"no host process sleep {name}")


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                ppid = int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(p))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def test_run_exec_logs_as_an_ordinary_user(rl: RootlessDaemon) -> None:
    r = rl.docker("run", "--rm", "busybox", "sh", "-c", "id; echo out; echo err >&2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["uid=0(root) gid=0(root) groups=0(root)", "out"]
    assert r.stderr == "err\n"
    r = rl.docker("run", "-d", "--name", "lr", "busybox", "sh", "-c", "echo started; exec sleep 3001")
    assert r.returncode == 0, r.stderr
    try:
        time.sleep(0.3)
        assert rl.docker("logs", "lr").stdout == "started\n"
        r = rl.docker("exec", "lr", "sh", "-c", "id -u; cat /proc/self/uid_map")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.split()
        assert lines[0] == "0"
        # the container's namespace is the engine's: 0.. the subordinate range, then the user
        sub = rl.user.subuid_start()
        assert lines[1:] == ["0", str(sub), "65536", "65536", str(rl.user.uid), "1"]
        # root inside is the user's first subordinate id outside, not the user, not host root
        pid = _host_pid(rl, "3001")
        assert _status_ids(pid) == (sub, rl.user.subgid_start())
        ps = subprocess.run(["ps", "-o", "uid=", "-p", str(pid)], capture_output=True, text=True)
        assert ps.stdout.strip() == str(sub)
    finally:
        rl.docker("rm", "-f", "lr")


def test_other_ids_are_the_users_subordinate_ids(rl: RootlessDaemon) -> None:
    r = rl.docker("run", "-d", "--name", "ls", "--user", "1000:1000", "busybox", "sleep", "3002")
    assert r.returncode == 0, r.stderr
    try:
        assert rl.docker("exec", "ls", "id", "-u").stdout == "1000\n"
        sub, subg = rl.user.subuid_start(), rl.user.subgid_start()
        assert _status_ids(_host_pid(rl, "3002")) == (sub + 1000, subg + 1000)
    finally:
        rl.docker("rm", "-f", "ls")


def test_no_process_of_the_engine_runs_as_host_root(rl: RootlessDaemon) -> None:
    r = rl.docker("run", "-d", "--name", "lp", "busybox", "sleep", "3003")
    assert r.returncode == 0, r.stderr
    try:
        assert rl.proc is not None
        _host_pid(rl, "3003")  # the init has exec'd
        cmds = {}
        for p in _descendants(rl.proc.pid):
            try:
                cmds[p] = Path(f"/proc/{p}/cmdline").read_bytes()
            except FileNotFoundError:
                pass
        assert any(b"berth.runtime.forkserver" in c for c in cmds.values())
        assert any(c.startswith(b"sleep\x003003") for c in cmds.values())
        owners = {p: os.stat(f"/proc/{p}").st_uid for p in cmds}
        assert all(uid != 0 for uid in owners.values()), {p: (owners[p], cmds[p][:60]) for p in owners}
    finally:
        rl.docker("rm", "-f", "lp")


def test_storage_is_overlay_with_userxattr_and_whiteouts_work(rl: RootlessDaemon) -> None:
    info = json.loads(rl.docker("info", "--format", "{{json .}}").stdout)
    assert info["Driver"] == "overlay2" and ["userxattr", "true"] in info["DriverStatus"]
    assert "name=rootless,network=pasta" in info["SecurityOptions"]  # the tool that connects its network
    assert info["DockerRootDir"] == str(rl.user.home / ".local/share/berth")
    # a deleted lower file and a replaced lower dir (a whiteout, an opaque dir) in the upper
    # layer, read back through a commit as a new image's layer
    r = rl.docker("run", "--name", "lw", "busybox", "sh", "-c",
                  "rm /bin/ls && rm -rf /home && mkdir /home && touch /home/new && grep -o userxattr /proc/mounts")
    assert r.returncode == 0 and r.stdout == "userxattr\n", r.stderr
    try:
        assert rl.docker("commit", "lw", "lw:1").returncode == 0
        r = rl.docker("run", "--rm", "lw:1", "sh", "-c", "ls /home; test -e /bin/ls || echo gone")
        assert r.stdout == "new\ngone\n", r.stderr
        upper = rl.user.home / ".local/share/berth/containers"
        owners = {p.stat().st_uid for p in upper.rglob("upper")}
        assert owners == {rl.user.subuid_start()}  # the engine's root made it, chowned by nobody
        # the data root itself is the user's (made before the namespaces), as is ~/.local
        assert (upper.parent.stat().st_uid, upper.parent.parent.stat().st_uid) == (rl.user.uid, rl.user.uid)
    finally:
        rl.docker("rm", "-f", "lw")
        rl.docker("rmi", "lw:1")


def test_a_named_volume_file_is_owned_by_a_mapped_id(rl: RootlessDaemon) -> None:
    r = rl.docker("run", "--rm", "-v", "rlvol:/data", "busybox", "sh", "-c",
                  "echo hi > /data/root-file && echo hi > /data/other && chown 1000:1000 /data/other")
    assert r.returncode == 0, r.stderr
    data = rl.user.home / ".local/share/berth/volumes/rlvol/_data"
    sub, subg = rl.user.subuid_start(), rl.user.subgid_start()
    assert ((data / "root-file").stat().st_uid, (data / "root-file").stat().st_gid) == (sub, subg)
    assert ((data / "other").stat().st_uid, (data / "other").stat().st_gid) == (sub + 1000, subg + 1000)
    assert rl.docker("volume", "rm", "rlvol").returncode == 0


def test_limits_are_refused_without_cgroup_delegation(rl: RootlessDaemon) -> None:
    """This host is cgroup v1: no delegation, so Docker rootless's warning, and every limit refused."""
    info = json.loads(rl.docker("info", "--format", "{{json .}}").stdout)
    if info["CgroupVersion"] != "1":
        pytest.skip("the no-delegation case is checked on a cgroup v1 host")
    msg = ("Running in rootless-mode without cgroups. To enable cgroups in rootless-mode, you need to "
           "boot the system in cgroup v2 mode.")
    assert info["CgroupDriver"] == "none" and f"WARNING: {msg}" in info["Warnings"]
    for flag, value in (("--memory", "64m"), ("--pids-limit", "10"), ("--cpus", "0.5")):
        r = rl.docker("run", "--rm", flag, value, "busybox", "true")
        assert r.returncode == 125 and f"{flag}: {msg}" in r.stderr, r.stderr
    assert rl.docker("run", "--rm", "busybox", "true").returncode == 0  # and everything else works


def test_the_berth_cli_finds_the_users_socket(rl: RootlessDaemon) -> None:
    st = rl.sock.stat()  # the engine's root is a subordinate id: the socket is given to the user
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (rl.user.uid, rl.user.gid, 0o660)
    r = subprocess.run(rl.command([sys.executable, "-m", "berth.cli.main", "ps", "-a", "--format", "{{.ID}}"]),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    mine = rl.docker("ps", "-a", "--format", "{{.ID}}").stdout
    assert r.stdout == mine


def test_a_published_port_is_reached_from_the_host(rl: RootlessDaemon) -> None:
    from tests.integration.images.registry_proc import free_port
    port = free_port()
    r = rl.docker("run", "-d", "--name", "lweb", "-p", f"{port}:80", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc")
    assert r.returncode == 0, r.stderr
    try:
        cid = r.stdout.strip()
        assert http_get(f"http://127.0.0.1:{port}/hostname") == cid[:12].encode() + b"\n"
        assert rl.docker("port", "lweb", "80/tcp").stdout.splitlines()[0] == f"0.0.0.0:{port}"
        # a loopback-only port: reached on the host's loopback (whatever the host's
        # ip_unprivileged_port_start, ports listen in the engine's namespace for pasta)
        lo = free_port()
        r = rl.docker("run", "-d", "--name", "lweb2", "-p", f"127.0.0.1:{lo}:80", "busybox", "httpd", "-f", "-p",
                      "80", "-h", "/etc")
        assert r.returncode == 0, r.stderr
        assert http_get(f"http://127.0.0.1:{lo}/hostname") == r.stdout.strip()[:12].encode() + b"\n"
    finally:
        rl.docker("rm", "-f", "lweb", "lweb2")


def test_a_port_below_the_unprivileged_start_is_refused_naming_the_sysctl(rl: RootlessDaemon) -> None:
    start = 1024  # the module's daemon was told the usual value (the host's may be lowered)
    r = rl.docker("run", "--rm", "-p", "80:80", "busybox", "true")
    assert r.returncode == 125
    assert (f"cannot expose privileged port 80, you can add 'net.ipv4.ip_unprivileged_port_start=80' "
            f"to /etc/sysctl.conf (currently {start})") in r.stderr, r.stderr
    assert rl.docker("ps", "-aq", "--filter", "status=running").stdout == ""


def test_push_and_pull_with_a_registry_on_the_hosts_loopback(rl: RootlessDaemon) -> None:
    registry_round_trip(rl, "rootless/bb:1")


def test_user_defined_networks_and_their_dns_work_one_level_down(rl: RootlessDaemon) -> None:
    assert rl.docker("network", "create", "rlnet").returncode == 0
    try:
        assert rl.docker("run", "-d", "--name", "rla", "--network", "rlnet", "busybox", "sleep", "3004").returncode == 0
        r = rl.docker("run", "--rm", "--network", "rlnet", "busybox", "ping", "-c1", "-W5", "rla")
        assert r.returncode == 0 and "1 packets received" in r.stdout, r.stdout + r.stderr
    finally:
        rl.docker("rm", "-f", "rla")
        rl.docker("network", "rm", "rlnet")


def _status(text: str) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def test_security_stays_on_and_privileged_is_bounded_by_the_user_namespace(rl: RootlessDaemon) -> None:
    r = rl.docker("run", "--rm", "--security-opt", "no-new-privileges", "busybox", "sh", "-c",
                  "cat /proc/self/status; echo ---; mount")
    assert r.returncode == 0, r.stderr
    status, mounts = r.stdout.split("---\n")
    st = _status(status)
    assert st["CapEff"] == st["CapBnd"] == "00000000a80425fb"   # Docker's default set
    assert st["Seccomp"] == "2" and st["NoNewPrivs"] == "1"
    assert " /proc/keys " in mounts and " /sys/firmware " in mounts  # masked paths
    top = Path(tempfile.mkdtemp(prefix="brl-secret-", dir="/tmp"))
    os.chmod(top, 0o755)  # the user's engine may reach it, not read the file
    secret = top / "secret"
    secret.write_text("host root's\n")
    os.chmod(secret, 0o600)
    try:
        r = rl.docker("run", "--rm", "--privileged", "-v", f"{secret}:/s", "busybox", "sh", "-c",
                      "grep CapEff /proc/self/status; cat /s; mknod /dev/x c 1 3")
    finally:
        shutil.rmtree(top)
    assert "CapEff:\t000001ffffffffff" in r.stdout  # every capability, within the namespace only
    assert "can't open '/s': Permission denied" in r.stderr
    assert "mknod: /dev/x: Operation not permitted" in r.stderr
    assert "host root's" not in r.stdout


def test_a_classic_build_runs_its_steps_in_the_users_engine(rl: RootlessDaemon) -> None:
    ctx = Path(tempfile.mkdtemp(prefix="brl-ctx-", dir="/tmp"))
    try:
        (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo built > /built && mkdir /d && chown 1500:1500 /d "
                                        "&& rm -rf /home && mkdir /home\nUSER 1500\nCMD cat /built\n")
        r = subprocess.run(["/usr/local/bin/docker", "build", "-q", "-t", "rlbuild", str(ctx)], capture_output=True,
                           text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "DOCKER_HOST": rl.host,
                                                        "DOCKER_BUILDKIT": "0", "HOME": str(ctx)})
        assert r.returncode == 0, r.stderr
        r = rl.docker("run", "--rm", "rlbuild", "sh", "-c", "cat /built; id -u; stat -c %u /d; ls /home | wc -l")
        assert r.stdout.split() == ["built", "1500", "1500", "0"], r.stderr
    finally:
        shutil.rmtree(ctx)
        rl.docker("rmi", "rlbuild")


def test_without_cgroups_top_lists_the_containers_processes_and_pause_is_refused(rl: RootlessDaemon) -> None:
    info = json.loads(rl.docker("info", "--format", "{{json .}}").stdout)
    assert info["CgroupDriver"] == "none", "this test is about an engine without cgroups"
    r = rl.docker("run", "-d", "--name", "ltop", "busybox", "sh", "-c", "sleep 3005 & exec sleep 3006")
    assert r.returncode == 0, r.stderr
    try:
        _host_pid(rl, "3006")
        deadline = time.monotonic() + 10  # the backgrounded sleep may exec after the other (a loaded host)
        while True:
            cmds = [line.split()[-1] for line in rl.docker("top", "ltop").stdout.splitlines()[1:]]
            if sorted(cmds) == ["3005", "3006"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert sorted(cmds) == ["3005", "3006"], cmds
        r = rl.docker("pause", "ltop")
        assert r.returncode == 1 and "cannot pause container" in r.stderr and "rootless-mode without cgroups" in r.stderr
    finally:
        rl.docker("rm", "-f", "ltop")


def test_cp_in_and_out_keeps_the_containers_ids(rl: RootlessDaemon) -> None:
    r = rl.docker("run", "-d", "--name", "lcp", "busybox", "sleep", "3007")
    assert r.returncode == 0, r.stderr
    src = Path(tempfile.mkdtemp(prefix="brl-cp-", dir="/tmp"))
    try:
        (src / "in").write_text("into\n")
        assert rl.docker("cp", str(src / "in"), "lcp:/in").returncode == 0
        r = rl.docker("exec", "lcp", "sh", "-c", "stat -c %u:%g /in; cat /in; echo out > /out")
        assert r.stdout == "0:0\ninto\n", r.stderr  # a host file copied in belongs to container root
        r = rl.docker("cp", "lcp:/out", str(src / "out"))
        assert r.returncode == 0, r.stderr
        assert (src / "out").read_text() == "out\n"
    finally:
        shutil.rmtree(src)
        rl.docker("rm", "-f", "lcp")


def test_files_root_writes_in_a_users_bind_are_removed_by_the_user_through_nsenter(rl: RootlessDaemon) -> None:
    """What design-notes.md tells the user: the files belong to a subordinate id; nsenter into the
    engine's user namespace (the user owns it) removes them, no host root needed."""
    d = Path(tempfile.mkdtemp(prefix="brl-bind-", dir="/tmp"))
    try:
        os.chown(d, rl.user.uid, rl.user.gid)
        r = rl.docker("run", "--rm", "-v", f"{d}:/b", "busybox", "sh", "-c", "mkdir /b/dir && echo x > /b/dir/f")
        assert r.returncode == 0, r.stderr
        assert (d / "dir" / "f").stat().st_uid == rl.user.subuid_start()
        holder = (rl.user.runtime / "berth" / "rootless.pid").read_text().strip()
        r = subprocess.run(rl.command(["rm", "-r", str(d / "dir")]), capture_output=True, text=True)
        assert r.returncode != 0 and (d / "dir" / "f").exists()  # the user alone cannot
        r = subprocess.run(rl.command(["nsenter", "-U", "-t", holder, "rm", "-r", str(d / "dir")]),
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert not (d / "dir").exists()
    finally:
        shutil.rmtree(d)


def test_a_published_port_shows_the_clients_own_address(rl: RootlessDaemon) -> None:
    """A client elsewhere (a network namespace of the test's, behind a veth to the host) is seen
    by the container with its own address: pasta's tap path keeps it and the engine's DNAT does
    not masquerade what comes in. So is a client on the host's own addresses, the default
    route's too (the namespace's tap has 10.0.2.100, not a copy of the host's address, which
    pasta would show as its gateway). A client on the host's loopback is not kept: pasta splices
    it (socket to socket, the namespace sees 127.0.0.1), which the engine masquerades to the
    bridge's gateway, as rootful Docker's loopback clients show. (slirp4netns: test_rootless_slirp.)"""
    sent, seen = clients_seen(rl, "lsrc")
    bridge = rl.docker("network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", "bridge").stdout.strip()
    assert seen == [*sent[:3], bridge]
