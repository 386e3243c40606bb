"""The container runtime on the real kernel: a busybox rootfs, create + start, ask the container.

Run as uid 0 with --run-root. Every test checks that the host's mount table is unchanged
afterwards, and removes the cgroups it created.
"""

from __future__ import annotations

import os
import shutil
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from berth.oci.spec import Mount, Spec
from berth.runtime import ExecFailed, SetupFailed, build_spec, create, delete, oom_killed

pytestmark = pytest.mark.root

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "echo", "cat", "hostname", "id", "ls", "sleep", "true", "false", "ps", "grep",
           "touch", "stat", "ulimit", "mount", "unshare", "cut")
TEST_CGROUP_PARENT = "berth-runtime-test"


# Mounts that berthd daemons of other tests make and remove on their own schedule (the session's
# berthd removes containers in the background): not this runtime's doing.
_DAEMONS = ("/tmp/berth-", "/run/netns/", "/var/run/netns/")


def _mountinfo() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return sorted(line for line in f.read().splitlines() if not line.split()[4].startswith(_DAEMONS))


@pytest.fixture(autouse=True)
def no_host_mounts_left() -> Iterator[None]:
    before = _mountinfo()
    yield
    assert _mountinfo() == before


@pytest.fixture(scope="module", autouse=True)
def remove_test_cgroup_parents() -> Iterator[None]:
    yield
    for d in Path("/sys/fs/cgroup").glob(f"*/{TEST_CGROUP_PARENT}"):
        try:
            d.rmdir()
        except OSError:
            pass


@dataclass
class Bundle:
    dir: Path
    rootfs: Path

    def spec(self, args: list[str], **kw: Any) -> Spec:
        base: dict[str, Any] = dict(
            args=args, env=["PATH=/bin"], cwd="/", user="", hostname="c0ffee", rootfs=str(self.rootfs),
            tty=False, hostname_file=str(self.dir / "hostname"), hosts_file=str(self.dir / "hosts"),
            resolv_file=str(self.dir / "resolv.conf"), cgroups_path="", seccomp="unconfined")
        return build_spec(**(base | kw))


@pytest.fixture
def bundle(tmp_path: Path) -> Bundle:
    if not os.path.exists(BUSYBOX):
        pytest.fail("needs /bin/busybox (.ci/run installs busybox-static)")
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "etc").mkdir()
    shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in APPLETS:
        (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
        "alice:x:1000:1000:alice:/home/alice:/bin/sh\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\nalice:x:1000:\nstaff:x:50:alice\n")
    (tmp_path / "hostname").write_text("c0ffee\n")
    (tmp_path / "hosts").write_text("127.0.0.1 localhost\n")
    (tmp_path / "resolv.conf").write_text("nameserver 192.0.2.1\n")
    return Bundle(tmp_path, rootfs)


def run(spec: Spec) -> tuple[int, str]:
    """create + start with a pipe for stdout/stderr; -> (exit code, output)."""
    r, w = os.pipe()
    devnull = os.open("/dev/null", os.O_RDONLY)
    try:
        init = create(spec, stdin=devnull, stdout=w, stderr=w)
    except BaseException:
        os.close(r)
        raise
    finally:
        os.close(w)
        os.close(devnull)
    try:
        init.start()
        out = b""
        while chunk := os.read(r, 65536):
            out += chunk
    finally:
        os.close(r)
        _, status = os.waitpid(init.pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode()


def sh(bundle: Bundle, script: str, **kw: Any) -> str:
    code, out = run(bundle.spec(["sh", "-c", script], **kw))
    assert code == 0, out
    return out


def _status(out: str, key: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith(key + ":"))


def test_pid1_hostname_and_no_host_processes(bundle: Bundle) -> None:
    out = sh(bundle, "echo $$; hostname; cat /etc/hostname; ls /proc").split()
    assert out[:3] == ["1", "c0ffee", "c0ffee"]
    pids = sorted(int(p) for p in out[3:] if p.isdigit())
    assert pids[0] == 1 and max(pids) < 10, pids


def test_exit_status(bundle: Bundle) -> None:
    assert run(bundle.spec(["sh", "-c", "exit 3"]))[0] == 3
    assert run(bundle.spec(["false"]))[0] == 1
    # The kernel does not deliver SIGKILL to a namespace's init from inside the namespace.
    assert run(bundle.spec(["sh", "-c", "kill -9 $$"]))[0] == 0


def test_default_capabilities_and_masks(bundle: Bundle) -> None:
    out = sh(bundle, "cat /proc/self/status; echo ---; cat /proc/keys; stat -c '%t,%T' /proc/keys;"
                     "echo x > /proc/sys/kernel/core_pattern && echo WROTE; touch /sys/x && echo SYSW; true")
    assert _status(out, "CapEff") == "00000000a80425fb"
    assert _status(out, "CapBnd") == "00000000a80425fb"
    assert _status(out, "CapInh") == "0000000000000000"
    assert _status(out, "Seccomp") == "0"
    after = out.split("---\n", 1)[1]
    assert after.startswith("1,3\n")  # /proc/keys is /dev/null: empty, char 1:3
    assert "WROTE" not in out and "SYSW" not in out


def test_devices_and_mounts(bundle: Bundle) -> None:
    out = sh(bundle, "ls /dev; echo ---; cat /proc/mounts; echo ---; cat /sys/class/net/lo/flags;"
                     "cat /proc/sys/net/ipv4/ip_unprivileged_port_start; echo hi > /dev/shm/x && cat /dev/shm/x")
    devs, mounts, rest = out.split("---\n")
    for name in ("null", "zero", "full", "random", "urandom", "tty", "ptmx", "fd", "stdin", "pts", "shm", "mqueue"):
        assert name in devs.split(), name
    targets = [line.split()[1] for line in mounts.splitlines()]
    for t in ("/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm",
              "/etc/resolv.conf", "/etc/hostname", "/etc/hosts", "/proc/sys", "/proc/keys"):
        assert t in targets, t
    sys_opts = next(line.split()[3] for line in mounts.splitlines() if line.split()[1] == "/sys")
    assert sys_opts.startswith("ro,")
    flags, port_start, shm = rest.split()
    assert int(flags, 16) & 1  # lo is up
    assert (port_start, shm) == ("0", "hi")


def test_every_cgroup_mount_is_read_only(bundle: Bundle) -> None:
    """The tmpfs at /sys/fs/cgroup and each hierarchy's bind in it are ro, nosuid, nodev and
    noexec (set on the tree by one mount_setattr, or a remount each before Linux 5.12)."""
    out = sh(bundle, "cat /proc/self/mountinfo; echo ---; mkdir /sys/fs/cgroup/pids/x 2>&1; "
                     "touch /sys/fs/cgroup/x 2>&1; true")
    info, tries = out.split("---\n")
    cgroup = [line.split() for line in info.splitlines() if line.split()[4].startswith("/sys/fs/cgroup")]
    assert len(cgroup) >= 2, info  # the tmpfs and at least one hierarchy
    for f in cgroup:
        assert {"ro", "nosuid", "nodev", "noexec"} <= set(f[5].split(",")), f
    assert tries.count("Read-only file system") == 2, tries


@pytest.mark.parametrize("user, expected", [
    ("", "uid=0(root) gid=0(root) groups=0(root)"),
    ("1000:1000", "uid=1000(alice) gid=1000(alice) groups=1000(alice)"),
    ("alice", "uid=1000(alice) gid=1000(alice) groups=50(staff),1000(alice)"),
    ("alice:staff", "uid=1000(alice) gid=50(staff) groups=50(staff)"),
    ("nobody", "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)"),
    ("1000", "uid=1000(alice) gid=1000(alice) groups=50(staff),1000(alice)"),
])
def test_users(bundle: Bundle, user: str, expected: str) -> None:
    out = sh(bundle, "id; grep CapEff /proc/self/status; echo $HOME", user=user).splitlines()
    assert out[0] == expected
    assert out[1].split()[1] == ("00000000a80425fb" if user == "" else "0000000000000000")
    assert out[2] == {"": "/root", "nobody": "/nonexistent"}.get(user, "/home/alice")


def test_unknown_user(bundle: Bundle) -> None:
    with pytest.raises(SetupFailed) as e:
        run(bundle.spec(["id"], user="nosuch"))
    assert str(e.value) == "unable to find user nosuch: no matching entries in passwd file"


def test_cap_variants(bundle: Bundle) -> None:
    out = sh(bundle, "grep CapEff /proc/self/status", cap_drop=["ALL"], cap_add=["NET_BIND_SERVICE"])
    assert out.split()[1] == "0000000000000400"
    out = sh(bundle, "grep -e CapEff -e CapBnd /proc/self/status", privileged=True)
    with open("/proc/self/status") as f:
        host_bnd = _status(f.read(), "CapBnd")
    assert _status(out, "CapEff") == host_bnd == _status(out, "CapBnd")


def test_seccomp_and_no_new_privileges(bundle: Bundle) -> None:
    pytest.importorskip("berth.runtime.seccomp")
    for nnp in (False, True):
        out = sh(bundle, "cat /proc/self/status; unshare -U true && echo UNSHARED; true",
                 seccomp="default", no_new_privileges=nnp)
        assert _status(out, "Seccomp") == "2"
        assert _status(out, "Seccomp_filters") == "1"
        assert _status(out, "NoNewPrivs") == ("1" if nnp else "0")
        assert "UNSHARED" not in out


@pytest.mark.parametrize("args, message", [
    (["nosuchcmd"], 'exec: "nosuchcmd": executable file not found in $PATH'),
    (["/nosuch"], 'exec: "/nosuch": stat /nosuch: no such file or directory'),
    (["/etc"], 'exec: "/etc": permission denied'),
])
def test_exec_errors(bundle: Bundle, args: list[str], message: str) -> None:
    with pytest.raises(ExecFailed) as e:
        run(bundle.spec(args))
    assert str(e.value) == message


def test_cwd_is_created_and_env(bundle: Bundle) -> None:
    out = sh(bundle, "pwd; echo $FOO $HOSTNAME", cwd="/work/dir", env=["PATH=/bin", "FOO=bar"])
    assert out.split() == ["/work/dir", "bar", "c0ffee"]


def test_readonly_rootfs(bundle: Bundle) -> None:
    out = sh(bundle, "touch /x && echo ROOTW; touch /etc/hosts && echo ETCW; echo ok > /dev/shm/y && echo SHMW; true",
             readonly_rootfs=True)
    assert "ROOTW" not in out and "ETCW" not in out and "SHMW" in out


def test_rlimits(bundle: Bundle) -> None:
    assert sh(bundle, "ulimit -n; ulimit -Hn", ulimits=[("nofile", 1024, 2048)]).split() == ["1024", "2048"]


def test_overlay_rootfs_writes_land_in_upper(bundle: Bundle) -> None:
    upper, work, merged = (bundle.dir / n for n in ("upper", "work", "merged"))
    for d in (upper, work, merged):
        d.mkdir()
    overlay = f"lowerdir={bundle.rootfs},upperdir={upper},workdir={work}"
    out = sh(bundle, "echo data > /newfile; rm /bin/true; cat /newfile; ls /bin/busybox",
             rootfs=str(merged), overlay=overlay)
    assert out.split() == ["data", "/bin/busybox"]
    assert (upper / "newfile").read_text() == "data\n"
    assert not (bundle.rootfs / "newfile").exists()
    assert (bundle.rootfs / "bin" / "true").is_symlink()
    assert os.listdir(merged) == []  # nothing was mounted on the host


def test_bad_mount_is_a_setup_failure(bundle: Bundle) -> None:
    spec = bundle.spec(["true"])
    spec.mounts.append(Mount(destination="/data", type="bind", source=str(bundle.dir / "missing"),
                             options=["rbind"]))
    with pytest.raises(SetupFailed, match=r"^rootfs: mount \S+/rootfs/data: no such file or directory$"):
        run(spec)


def test_abort_before_start(bundle: Bundle) -> None:
    r, w = os.pipe()
    init = create(bundle.spec(["echo", "never"]), stdin=r, stdout=w, stderr=w)
    os.close(w)
    init.abort()
    assert os.read(r, 100) == b""
    os.close(r)
    with pytest.raises(ProcessLookupError):
        os.kill(init.pid, 0)


def test_cgroup_limits_and_delete(bundle: Bundle) -> None:
    pytest.importorskip("berth.runtime.cgroups")
    cg = f"/{TEST_CGROUP_PARENT}/{uuid.uuid4().hex[:12]}"
    spec = bundle.spec(["sh", "-c", "cat /proc/self/cgroup; cat /sys/fs/cgroup/pids/pids.max"],
                       cgroups_path=cg, pids_limit=50)
    try:
        code, out = run(spec)
        assert code == 0, out
        assert f"pids:{cg}" in out and out.split()[-1] == "50"
        assert not oom_killed(spec)
    finally:
        delete(spec)
        delete(spec)  # idempotent
    assert not Path(f"/sys/fs/cgroup/pids{cg}").exists()


def test_init_is_in_every_hierarchy_of_its_cgroup_before_start(bundle: Bundle) -> None:
    """On v1 the init joins its cgroup itself (``tasks``); it must be in every hierarchy's
    directory before it is released, and so must what it runs."""
    from berth.runtime.cgroups import open_cgroup

    cg = f"/{TEST_CGROUP_PARENT}/{uuid.uuid4().hex[:12]}"
    spec = bundle.spec(["cat", "/proc/self/cgroup"], cgroups_path=cg, pids_limit=50)
    r, w = os.pipe()
    try:
        init = create(spec, stdin=0, stdout=w, stderr=w)
        os.close(w)
        dirs = set(open_cgroup(cg).paths().values())
        assert dirs
        for d in dirs:
            assert str(init.pid) in (d / "cgroup.procs").read_text().split(), d
        init.start()
        out = b""
        while chunk := os.read(r, 4096):
            out += chunk
        os.waitpid(init.pid, 0)
        paths = [ln.split(":", 2)[2] for ln in out.decode().splitlines()]
        assert paths.count(cg) == len(dirs), out  # one line per hierarchy (v1), or 0::cg (v2)
    finally:
        os.close(r)
        delete(spec)


def test_terminal(bundle: Bundle) -> None:
    master, slave = os.openpty()
    try:
        init = create(bundle.spec(["sh", "-c", "[ -t 0 ] && echo TTY; echo $TERM; stat -c '%t %F' /dev/console;"
                                   "cut -d' ' -f7 /proc/self/stat"], tty=True),
                      stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)
        slave = -1
        init.start()
        out = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the last slave fd closed
                break
            if not chunk:
                break
            out += chunk
        _, status = os.waitpid(init.pid, 0)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    lines = out.decode().split()
    assert os.waitstatus_to_exitcode(status) == 0
    assert lines[:2] == ["TTY", "xterm"]
    assert lines[2] == "88" and "character" in out.decode()  # 0x88 = 136, a pts
    assert int(lines[-1]) != 0  # a controlling terminal


def test_signal_reaches_the_container(bundle: Bundle) -> None:
    r, w = os.pipe()
    init = create(bundle.spec(["sleep", "30"]), stdin=r, stdout=w, stderr=w)
    os.close(w)
    os.close(r)
    init.start()
    os.kill(init.pid, signal.SIGKILL)
    _, status = os.waitpid(init.pid, 0)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGKILL
