"""Spec -> plan (pure): mount options, namespaces, capabilities, devices, host parsing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from berth.linux.mount import MountFlags as MF
from berth.linux.rlimit import Resource
from berth.linux.sched import CloneFlags
from berth.oci import spec as oci
from berth.runtime.caps import ALL_CAPS, CAP_NUMBER, normalize, to_mask, tweak, DEFAULT_CAPS
from berth.runtime.defaults import build_spec
from berth.runtime.host import parse_cgroup_mounts
from berth.runtime.plan import HostInfo, MountKind, PlanError, build_plan, parse_mount_options
from berth.runtime.rootfs import secure_join

FULL = (1 << 41) - 1
NO_SYS_RESOURCE = FULL & ~(1 << CAP_NUMBER["CAP_SYS_RESOURCE"])
HOST = HostInfo(cap_last_cap=40, bounding=NO_SYS_RESOURCE, permitted=NO_SYS_RESOURCE,
                cgroups=(), cgroup2_root=False, has_kcore=True)


def _spec(**kw: object) -> oci.Spec:
    base: dict[str, object] = dict(
        args=["sh"], env=["PATH=/bin"], cwd="/", user="", hostname="h", rootfs="/r", tty=False,
        hostname_file="/c/hostname", hosts_file="/c/hosts", resolv_file="/c/resolv.conf",
        cgroups_path="/berth/x", seccomp="unconfined")
    return build_spec(**(base | kw))  # type: ignore[arg-type]


def test_mount_options() -> None:
    flags, prop, data = parse_mount_options(["nosuid", "strictatime", "mode=755", "size=65536k"])
    assert flags == MF.NOSUID | MF.STRICTATIME and prop == 0 and data == "mode=755,size=65536k"
    flags, prop, data = parse_mount_options(["rbind", "ro", "rprivate"])
    assert flags == MF.BIND | MF.REC | MF.RDONLY and prop == MF.PRIVATE | MF.REC and data is None
    assert parse_mount_options(["ro", "rw"])[0] == 0


def test_default_plan() -> None:
    plan = build_plan(_spec(), HOST, is_dir=lambda p: False)
    assert plan.prefork_unshare == CloneFlags.NEWPID
    assert plan.unshare == CloneFlags.NEWNS | CloneFlags.NEWNET | CloneFlags.NEWUTS | CloneFlags.NEWIPC
    assert plan.loopback and plan.hostname == "h"
    assert [m.kind for m in plan.mounts].count(MountKind.BIND) == 3
    assert plan.mounts[4].kind is MountKind.CGROUP and plan.mounts[4].flags & MF.RDONLY
    assert not plan.mounts[-1].source_is_dir
    assert [d.path for d in plan.devices] == [f"/dev/{n}" for n in ("null", "zero", "full", "random", "urandom", "tty")]
    assert ("pts/ptmx", "/dev/ptmx") in plan.symlinks and ("/proc/kcore", "/dev/core") in plan.symlinks
    assert ("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0") in plan.sysctls
    assert plan.caps is not None and plan.caps.effective == 0xA80425FB == plan.caps.bounding
    assert plan.root_propagation == MF.SLAVE | MF.REC
    assert plan.seccomp_bpf is None and not plan.seccomp_early
    assert plan.umask == 0o022 and plan.oom_score_adj == 0


def test_privileged_never_asks_for_a_cap_the_host_lacks() -> None:
    plan = build_plan(_spec(privileged=True), HOST, is_dir=lambda p: False)
    assert plan.caps is not None
    assert plan.caps.bounding == plan.caps.effective == plan.caps.permitted == NO_SYS_RESOURCE
    assert plan.masked == () and plan.readonly == ()


def test_seccomp_ordering_follows_runc() -> None:
    assert build_plan(_spec(), HOST, seccomp_bpf=b"x" * 8, is_dir=os.path.isdir).seccomp_early
    assert not build_plan(_spec(no_new_privileges=True), HOST, seccomp_bpf=b"x" * 8,
                          is_dir=os.path.isdir).seccomp_early


def test_rlimits_and_user() -> None:
    plan = build_plan(_spec(ulimits=[("nofile", 10, 20)], user="alice"), HOST, is_dir=os.path.isdir)
    assert plan.rlimits == ((int(Resource.NOFILE), 10, 20),)
    assert plan.resolve_user == "alice" and plan.caps is not None and plan.caps.drop_if_not_root


def test_namespace_paths_and_errors() -> None:
    spec = _spec()
    assert spec.linux is not None and spec.linux.namespaces is not None
    spec.linux.namespaces[1] = oci.Namespace(type="network", path="/run/netns/x")
    spec.linux.namespaces[3] = oci.Namespace(type="pid", path="/proc/7/ns/pid")
    plan = build_plan(spec, HOST, is_dir=os.path.isdir)
    assert plan.join == (("/run/netns/x", int(CloneFlags.NEWNET)),)
    assert plan.prefork_join == (("/proc/7/ns/pid", int(CloneFlags.NEWPID)),)
    assert not plan.loopback and plan.prefork_unshare == 0
    spec.linux.namespaces.append(oci.Namespace(type="user"))
    with pytest.raises(PlanError, match="uidMappings"):
        build_plan(spec, HOST, is_dir=os.path.isdir)
    spec.linux.namespaces[-1] = oci.Namespace(type="user", path="/proc/7/ns/user")
    with pytest.raises(PlanError, match="existing user namespace"):
        build_plan(spec, HOST, is_dir=os.path.isdir)
    with pytest.raises(PlanError, match="args"):
        build_plan(oci.Spec(process=oci.Process(), root=oci.Root(path="/r")), HOST)


def test_overlay_options_must_fit_a_page() -> None:
    plan = build_plan(_spec(overlay="lowerdir=/a,upperdir=/u,workdir=/w"), HOST, is_dir=os.path.isdir)
    assert plan.overlay == "lowerdir=/a,upperdir=/u,workdir=/w"
    with pytest.raises(PlanError, match="over a page"):
        build_plan(_spec(overlay="lowerdir=" + ":".join(["/l/abcdefgh"] * 400)), HOST, is_dir=os.path.isdir)


def test_caps_rules() -> None:
    assert normalize(["net_admin", "CAP_CHOWN", "all", "chown"]) == ["CAP_NET_ADMIN", "CAP_CHOWN", "ALL"]
    assert tweak(DEFAULT_CAPS, ["ALL"], ["CHOWN"], False) == [c for c in ALL_CAPS if c != "CAP_CHOWN"]
    assert tweak(DEFAULT_CAPS, ["CHOWN"], [], False) == list(DEFAULT_CAPS)
    assert to_mask(DEFAULT_CAPS) == 0xA80425FB
    assert to_mask(["CAP_NET_ADMIN", *DEFAULT_CAPS]) == 0xA80435FB


MOUNTINFO = """\
25 1 254:0 / / rw,relatime - ext4 /dev/vda rw
30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/cpuset,cpuacct rw,relatime - cgroup cgroup rw,cpuset,cpuacct
33 30 0:29 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
34 30 0:30 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
35 25 0:27 /x /mnt/again rw,relatime - cgroup cgroup rw,cpu
"""
PROC_CGROUP = "4:name=systemd:/\n3:cpuset,cpuacct:/a\n1:cpu:/b\n0::/\n"


def test_parse_cgroup_mounts() -> None:
    hier, v2_root = parse_cgroup_mounts(MOUNTINFO, PROC_CGROUP)
    assert not v2_root
    assert [(h.mountpoint, h.key) for h in hier] == [
        ("/sys/fs/cgroup/cpu", "cpu"), ("/sys/fs/cgroup/cpuset,cpuacct", "cpuset,cpuacct"),
        ("/sys/fs/cgroup/systemd", "name=systemd"), ("/sys/fs/cgroup/unified", "")]
    hier, v2_root = parse_cgroup_mounts("30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "0::/x\n")
    assert v2_root and hier[0].key == ""


def test_secure_join_stays_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "up").symlink_to("../../../../outside")
    (root / "etc" / "abs").symlink_to("/etc/real")
    (root / "loop").symlink_to("loop")
    r = str(root)
    assert secure_join(r, "/etc/up/x") == f"{r}/outside/x"
    assert secure_join(r, "/etc/abs") == f"{r}/etc/real"
    assert secure_join(r, "/../../etc//./hosts") == f"{r}/etc/hosts"
    with pytest.raises(OSError):
        secure_join(r, "/loop/x")


def test_user_namespace_plan() -> None:
    """In a user namespace the init unshares pid itself (then forks PID 1), and every bind's
    source is a tree the parent opens: the image's directory first, idmapped."""
    spec = _spec(overlay="lowerdir=lower/l/A,upperdir=upper,workdir=work")
    assert spec.linux is not None and spec.linux.namespaces is not None
    spec.linux.namespaces.append(oci.Namespace(type="user"))
    spec.linux.uidMappings = [oci.IDMapping(containerID=0, hostID=100000, size=65536)]
    spec.linux.gidMappings = [oci.IDMapping(containerID=0, hostID=200000, size=65536)]
    spec.annotations = {**(spec.annotations or {}), "berth.rootfs.idmap": "/var/lib/berth/image\nlower"}
    spec.mounts.append(oci.Mount(destination="/data", type="bind", source="/srv", options=["rbind", "idmap"]))
    spec.mounts.append(oci.Mount(destination="/plain", type="bind", source="/opt", options=["rbind", "ro"]))
    plan = build_plan(spec, HOST, is_dir=os.path.isdir)
    assert plan.userns is not None and plan.userns.host_uid(5) == 100005 and plan.userns.host_gid(0) == 200000
    assert plan.userns.host_uid(65536) == -1
    assert plan.prefork_unshare == 0 and plan.unshare & CloneFlags.NEWPID
    assert plan.idmap_lower == "lower"
    trees = plan.userns_trees
    assert trees[0] == ("/var/lib/berth/image", True) and trees[-2:] == (("/srv", True), ("/opt", False))
    assert ("/c/hosts", False) in trees and len(trees) == 1 + [m.kind for m in plan.mounts].count(MountKind.BIND)
    data = next(m for m in plan.mounts if m.dest == "/data")
    assert data.idmap and data.data is None
    spec.linux.namespaces.pop()
    with pytest.raises(PlanError, match="idmap mount option needs a user namespace"):
        build_plan(spec, HOST, is_dir=os.path.isdir)
