"""User namespaces (issue 17) against a real berthd whose default is ``userns-default: auto``
and whose subordinate ids come from files of its own: container root is not host root.

The docker CLI cannot send ``--userns=auto`` (it refuses any value but host), so it gets auto
from the daemon's default; ``berth run --userns=auto`` sends it."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon
from tests.integration.loopwatch import PingWatch

pytestmark = pytest.mark.root
DOCKER = "/usr/local/bin/docker"
POOL = (300000, 1000000)


@pytest.fixture(scope="module", params=["idmap", "copy"])
def daemon(request: pytest.FixtureRequest) -> Iterator[Daemon]:
    """Image layers idmapped, and (``copy``) the fallback without idmapped overlay, forced."""
    if os.geteuid() != 0:
        pytest.skip("needs uid 0")
    if not os.path.exists("/proc/self/ns/user"):
        pytest.skip("no user namespaces in this kernel")
    env = {"BERTH_FORCE_USERNS_COPY": "1"} if request.param == "copy" else {}
    runc = shutil.which("runc")  # .ci/run installs it
    assert runc is not None, "runc is not installed"
    d = Daemon(args=["--userns-default", "auto", "--add-runtime", f"runc={runc}"], env=env)
    d.base.mkdir(parents=True, exist_ok=True)
    for name in ("subuid", "subgid"):
        (d.base / name).write_text(f"someone:100000:65536\nberth:{POOL[0]}:{POOL[1]}\n")
    d.start()
    try:
        d.import_busybox()
        yield d
    finally:
        d.cleanup()


def _berth(d: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "berth.cli.main", *args], env=d.env, capture_output=True,
                          text=True, timeout=60)


def _host_ids(pid: int) -> tuple[int, int]:
    """The (uid, gid) the host sees for a process: /proc/<pid>/status."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0])


def _pid(d: Daemon, name: str) -> int:
    return int(d.docker("inspect", "-f", "{{.State.Pid}}", name).stdout)


def test_root_inside_is_a_range_of_its_own_outside(daemon: Daemon) -> None:
    for name in ("uns-a", "uns-b"):
        r = daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "60")
        assert r.returncode == 0, r.stderr
    try:
        assert daemon.docker("exec", "uns-a", "id", "-u").stdout.strip() == "0"
        assert daemon.docker("inspect", "-f", "{{.HostConfig.UsernsMode}}", "uns-a").stdout.strip() == "auto"
        a, b = _host_ids(_pid(daemon, "uns-a")), _host_ids(_pid(daemon, "uns-b"))
        for uid, gid in (a, b):
            assert POOL[0] <= uid < POOL[0] + POOL[1] and POOL[0] <= gid < POOL[0] + POOL[1]
        assert abs(a[0] - b[0]) >= 65536, (a, b)  # disjoint ranges
        # an exec joins the user namespace: its root is the container's, on the host too
        ps = daemon.docker("top", "uns-a").stdout.splitlines()
        assert ps[1].split()[0] == str(a[0])  # docker top shows host uids
        uid_map = daemon.docker("exec", "uns-a", "cat", "/proc/self/uid_map").stdout.split()
        assert uid_map == ["0", str(a[0]), "65536"]
        # a file the container's root writes in its writable layer is the range's on disk
        assert daemon.docker("exec", "uns-a", "touch", "/made-here").returncode == 0
        cid = daemon.docker("inspect", "-f", "{{.Id}}", "uns-a").stdout.strip()
        st = (daemon.data_root / "containers" / cid / "upper" / "made-here").stat()
        assert (st.st_uid, st.st_gid) == a
        # and image files (never chowned on disk) are root's inside
        assert daemon.docker("exec", "uns-a", "stat", "-c", "%u:%g", "/bin/busybox").stdout.strip() == "0:0"
    finally:
        daemon.docker("rm", "-f", "uns-a", "uns-b")


def test_range_is_freed_on_removal_and_kept_across_restarts(daemon: Daemon) -> None:
    assert daemon.docker("run", "-d", "--name", "uns-keep", "busybox", "sleep", "60").returncode == 0
    try:
        kept = _host_ids(_pid(daemon, "uns-keep"))[0]
        first = daemon.docker("run", "-d", "--name", "uns-gone", "busybox", "sleep", "60")
        gone = _host_ids(_pid(daemon, "uns-gone"))[0]
        assert first.returncode == 0 and gone != kept
        daemon.docker("rm", "-f", "uns-gone")
        daemon.stop()
        daemon.start()
        assert daemon.docker("exec", "uns-keep", "id", "-u").stdout.strip() == "0"  # live restore
        again = daemon.docker("run", "--rm", "busybox", "cat", "/proc/self/uid_map").stdout.split()
        assert again[1] == str(gone)  # the freed range is the lowest free one; uns-keep's is not given away
    finally:
        daemon.docker("rm", "-f", "uns-keep", "uns-gone")


def test_volume_files_are_the_mapped_ids(daemon: Daemon) -> None:
    r = daemon.docker("run", "--rm", "-v", "unsvol:/data", "busybox", "sh", "-c",
                      "echo hi > /data/f && cat /proc/self/uid_map")
    assert r.returncode == 0, r.stderr
    base = int(r.stdout.split()[1])
    try:
        f = daemon.data_root / "volumes" / "unsvol" / "_data" / "f"
        assert (f.stat().st_uid, f.stat().st_gid) == (base, base)
    finally:
        daemon.docker("volume", "rm", "unsvol")


def test_root_inside_cannot_do_host_root_things(daemon: Daemon, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("host root only\n")
    os.chmod(secret, 0o600)
    os.chmod(tmp_path, 0o755)
    for extra in ([], ["--privileged"]):
        r = daemon.docker("run", "--rm", *extra, "-v", f"{secret}:/secret", "busybox", "cat", "/secret")
        assert r.returncode != 0 and "Permission denied" in r.stderr, (extra, r)
    # --privileged: every capability, but within the namespace only
    script = ("grep CapEff /proc/self/status; mknod /tmp/disk b 8 0 && echo MKNOD; "
              "echo 3 > /proc/sys/vm/drop_caches && echo DROPPED; mkdir /m && mount -t tmpfs t /m && echo MOUNTED")
    r = daemon.docker("run", "--rm", "--privileged", "busybox", "sh", "-c", script)
    host = daemon.docker("run", "--rm", "--privileged", "--userns=host", "busybox", "sh", "-c", script)
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
    r = daemon.docker("run", "--rm", "--userns=host", "busybox", "cat", "/proc/self/uid_map")
    assert r.stdout.split() == ["0", "0", "4294967295"]
    # the daemon's default gives way to the host's namespaces; an explicit auto is refused
    r = daemon.docker("run", "--rm", "--network=host", "busybox", "cat", "/proc/self/uid_map")
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
    before = daemon.docker("ps", "-aq").stdout.split()
    assert not before


def test_a_failed_create_keeps_no_range(daemon: Daemon) -> None:
    """A create refused after its range was allocated (volumes from nothing, a link to nothing)
    frees it: the whole pool is still there for one container afterwards. (A missing network no
    longer fails the create: as dockerd, the start looks it up.)"""
    for bad in ({"VolumesFrom": ["nosuchctr"]}, {"Links": ["nosuchctr:alias"]}):
        for _ in range(3):
            status, body = daemon.request("POST", "/containers/create", json.dumps(
                {"Image": "busybox", "Cmd": ["true"], "HostConfig": bad}).encode(), {"Content-Type": "application/json"})
            assert status in (400, 404) and b"nosuch" in body, (status, body)
    r = _berth(daemon, "run", "--rm", f"--userns=auto:size={POOL[1]}", "busybox", "true")
    assert r.returncode == 0, r.stderr


def _copying(d: Daemon) -> bool:
    return d.extra_env.get("BERTH_FORCE_USERNS_COPY") == "1"


def test_info_shows_the_default_and_the_layers(daemon: Daemon) -> None:
    r = daemon.docker("info", "-f", "{{json .SecurityOptions}}")
    assert "name=userns,default=auto" in json.loads(r.stdout)
    text = daemon.docker("info").stdout
    want = "chown'd copy per id range (forced by BERTH_FORCE_USERNS_COPY)" if _copying(daemon) else "idmapped mounts"
    assert f"User namespace layers: {want}" in text, text


def _copies(d: Daemon) -> list[Path]:
    top = d.data_root / "image" / "userns"
    return sorted(top.iterdir()) if top.exists() else []


def test_layers_copied_per_range_only_in_the_fallback(daemon: Daemon) -> None:
    """idmapped: no copy of any layer; the fallback: one chown'd copy per range, gone with the
    range's last container."""
    assert daemon.docker("run", "-d", "--name", "uns-cp1", "busybox", "sleep", "60").returncode == 0
    try:
        base = _host_ids(_pid(daemon, "uns-cp1"))[0]
        copies = _copies(daemon)
        if not _copying(daemon):
            assert copies == []
            return
        assert len(copies) == 1
        bb = next((copies[0] / "l").iterdir()) / "bin" / "busybox"
        st = bb.stat()
        assert (st.st_uid, st.st_gid) == (base, base) and st.st_mode & 0o777 == 0o755
        layer = next((daemon.data_root / "image" / "l").iterdir()) / "bin" / "busybox"
        assert layer.stat().st_uid == 0  # the image's own layer is never chowned
        # setuid survives the chown, hard links stay one inode
        r = daemon.docker("exec", "uns-cp1", "sh", "-c", "stat -c %u:%g:%h /bin/busybox /bin/sh")
        assert r.stdout.split() == [f"0:0:{st.st_nlink}"] * 2, r
    finally:
        daemon.docker("rm", "-f", "uns-cp1")
    assert _copies(daemon) == []


def test_commit_and_build_layers_carry_the_containers_own_ids(daemon: Daemon, tmp_path: Path) -> None:
    r = daemon.docker("run", "--name", "uns-commit", "busybox", "sh", "-c",
                      "touch /by-root && touch /by-1000 && chown 1000:1001 /by-1000")
    assert r.returncode == 0, r.stderr
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN touch /built && chown 7:8 /built\n")
    try:
        assert daemon.docker("commit", "uns-commit", "uns-committed").returncode == 0
        env = {**daemon.env, "DOCKER_BUILDKIT": "0"}
        b = subprocess.run([DOCKER, "build", "-q", "-t", "uns-built", str(tmp_path)], env=env,
                           capture_output=True, text=True, timeout=120)
        assert b.returncode == 0, b.stderr
        for image, script, want in (("uns-committed", "stat -c %u:%g /by-root /by-1000", "0:0\n1000:1001"),
                                    ("uns-built", "stat -c %u:%g /built", "7:8")):
            out = daemon.docker("run", "--rm", "--userns=host", image, "sh", "-c", script)
            assert out.stdout.strip() == want, (image, out)
    finally:
        daemon.docker("rm", "-f", "uns-commit")
        daemon.docker("rmi", "-f", "uns-committed", "uns-built")


def _tar_of(entries: list[tuple[str, int, int]]) -> bytes:
    """A tar of small files ``(name, uid, gid)``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, uid, gid in entries:
            ti = tarfile.TarInfo(name)
            ti.size, ti.uid, ti.gid, ti.mode = 3, uid, gid, 0o644
            tar.addfile(ti, io.BytesIO(b"hi\n"))
    return buf.getvalue()


def _owners(tar_bytes: bytes) -> dict[str, tuple[int, int]]:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        return {m.name: (m.uid, m.gid) for m in tar.getmembers()}


def test_cp_both_ways_carries_the_containers_own_ids(daemon: Daemon) -> None:
    r = daemon.docker("run", "-d", "--name", "uns-cp", "busybox", "sh", "-c",
                      "mkdir -p /d && touch /d/by-1000 && chown 1000:1001 /d/by-1000 && sleep 60")
    assert r.returncode == 0, r.stderr
    try:
        base = _host_ids(_pid(daemon, "uns-cp"))[0]
        cid = daemon.docker("inspect", "-f", "{{.Id}}", "uns-cp").stdout.strip()
        upper = daemon.data_root / "containers" / cid / "upper"
        for state in ("running", "stopped"):
            src = _tar_of([(f"in-{state}-root", 0, 0), (f"in-{state}-1000", 1000, 1002)])
            put = subprocess.run([DOCKER, "cp", "-", "uns-cp:/d"], env=daemon.env, input=src, capture_output=True,
                                 timeout=60)
            assert put.returncode == 0, put.stderr
            # on disk: the host ids the container's map to
            st = (upper / "d" / f"in-{state}-1000").stat()
            assert (st.st_uid, st.st_gid) == (base + 1000, base + 1002)
            st = (upper / "d" / f"in-{state}-root").stat()
            assert (st.st_uid, st.st_gid) == (base, base)
            # out: the container's own ids, for the writable layer's files and the image's
            out = subprocess.run([DOCKER, "cp", "uns-cp:/d", "-"], env=daemon.env, capture_output=True, timeout=60)
            assert out.returncode == 0, out.stderr
            owners = _owners(out.stdout)
            assert owners["d"] == (0, 0) and owners["d/by-1000"] == (1000, 1001), owners
            assert owners[f"d/in-{state}-1000"] == (1000, 1002) and owners[f"d/in-{state}-root"] == (0, 0)
            img = subprocess.run([DOCKER, "cp", "uns-cp:/bin/busybox", "-"], env=daemon.env, capture_output=True,
                                 timeout=60)
            assert _owners(img.stdout) == {"busybox": (0, 0)}
            # HEAD (docker cp's stat) works on both
            assert daemon.request("HEAD", f"/containers/{cid}/archive?path=/d/by-1000")[0] == 200
            # an id the container's map does not hold is refused, the daemon stays up
            bad = subprocess.run([DOCKER, "cp", "-", "uns-cp:/d"], env=daemon.env,
                                 input=_tar_of([("too-high", 70000, 0)]), capture_output=True, timeout=60)
            assert bad.returncode != 0 and b"Container ID 70000 cannot be mapped to a host ID" in bad.stderr, bad
            if state == "running":
                assert daemon.docker("stop", "-t", "0", "uns-cp").returncode == 0
        # started again, the files copied in while it was stopped are the container's ids inside
        assert daemon.docker("start", "uns-cp").returncode == 0
        r = daemon.docker("exec", "uns-cp", "stat", "-c", "%u:%g", "/d/in-stopped-1000", "/d/in-stopped-root")
        assert r.stdout.split() == ["1000:1002", "0:0"], r
    finally:
        daemon.docker("rm", "-f", "uns-cp")


def _layer_owners(d: Daemon, image: str) -> dict[str, tuple[int, int]]:
    """Every file's (uid, gid) in the layer tars of ``docker save image``."""
    saved = subprocess.run([DOCKER, "save", image], env=d.env, capture_output=True, timeout=60)
    assert saved.returncode == 0, saved.stderr
    owners: dict[str, tuple[int, int]] = {}
    with tarfile.open(fileobj=io.BytesIO(saved.stdout)) as outer:
        for m in outer.getmembers():
            f = outer.extractfile(m) if m.isfile() else None
            head = f.read(262) if f is not None else b""
            if len(head) > 257 and head[257:262] == b"ustar":
                f = outer.extractfile(m)
                assert f is not None
                owners.update(_owners(f.read()))
    return owners


def test_diff_and_commit_of_a_non_root_users_file(daemon: Daemon) -> None:
    r = daemon.docker("run", "-d", "--name", "uns-diff", "busybox", "sh", "-c",
                      "touch /added && rm /etc/group && sleep 60")
    assert r.returncode == 0, r.stderr
    try:
        assert daemon.docker("exec", "-u", "1000:1002", "uns-diff", "touch", "/tmp/by-user").returncode == 0
        diff = daemon.docker("diff", "uns-diff").stdout.splitlines()
        for line in ("A /added", "C /etc", "D /etc/group", "C /tmp", "A /tmp/by-user"):
            assert line in diff, diff
        assert daemon.docker("commit", "uns-diff", "uns-diffed").returncode == 0
        owners = _layer_owners(daemon, "uns-diffed")
        assert owners["tmp/by-user"] == (1000, 1002) and owners["added"] == (0, 0), owners
    finally:
        daemon.docker("rm", "-f", "uns-diff")
        daemon.docker("rmi", "-f", "uns-diffed")


def test_exec_keeps_the_supplemental_groups_and_gets_its_tty(daemon: Daemon) -> None:
    """An exec joins the user namespace last (after the namespaces that need host root), keeps
    the container's --group-add gids, and its terminal is its controlling tty."""
    r = daemon.docker("run", "-d", "--group-add", "1234", "--name", "uns-exec", "busybox", "sleep", "60")
    assert r.returncode == 0, r.stderr
    try:
        r = daemon.docker("exec", "uns-exec", "id", "-G")  # as the container's user
        assert r.stdout.split() == ["0", "1234"], r
        r = daemon.docker("exec", "-t", "uns-exec", "sh", "-c", ": </dev/tty && tty && cat /proc/self/uid_map")
        lines = r.stdout.replace("\r", "").splitlines()
        assert r.returncode == 0 and lines[0].startswith("/dev/pts/"), r
        assert lines[1].split()[:2] == ["0", str(_host_ids(_pid(daemon, "uns-exec"))[0])], r
    finally:
        daemon.docker("rm", "-f", "uns-exec")


def test_image_content_copied_into_a_new_volume_keeps_its_owners(daemon: Daemon) -> None:
    r = daemon.docker("run", "--userns=host", "--name", "uns-src", "busybox", "sh", "-c",
                      "mkdir -p /srv/sub && touch /srv/f && chown -R 1000:1001 /srv")
    assert r.returncode == 0, r.stderr
    vols = ("uns-cv", "uns-cv-idmap", "uns-cv-etc")
    try:
        assert daemon.docker("commit", "uns-src", "uns-owned").returncode == 0
        script = "stat -c %u:%g /srv /srv/f /srv/sub && cat /proc/self/uid_map"
        for run, vol, opt in ((Daemon.docker, "uns-cv", ""), (_berth, "uns-cv-idmap", ":idmap")):
            r = run(daemon, "run", "--rm", "-v", f"{vol}:/srv{opt}", "uns-owned", "sh", "-c", script)
            assert r.returncode == 0, r.stderr
            lines = r.stdout.split("\n")
            assert lines[:3] == ["1000:1001"] * 3, r.stdout  # not nobody (65534)
            base = int(lines[3].split()[1])
            st = (daemon.data_root / "volumes" / vol / "_data" / "f").stat()
            # on disk: the host ids of the container's, or (idmapped) the container's own
            want = (1000, 1001) if opt else (base + 1000, base + 1001)
            assert (st.st_uid, st.st_gid) == want, (vol, st)
        r = daemon.docker("run", "--rm", "-v", "uns-cv-etc:/etc", "busybox", "stat", "-c", "%u:%g", "/etc",
                          "/etc/passwd")
        assert r.stdout.split() == ["0:0", "0:0"], r
    finally:
        daemon.docker("rm", "-f", "uns-src")
        daemon.docker("rmi", "-f", "uns-owned")
        daemon.docker("volume", "rm", *vols)


def test_mount_idmap_on_and_off(daemon: Daemon, tmp_path: Path) -> None:
    import docker
    secret = tmp_path / "secret"
    secret.write_text("host root only\n")
    os.chmod(secret, 0o600)
    os.chmod(tmp_path, 0o755)
    bind = f"type=bind,src={tmp_path},dst=/h"
    # podman's --mount ...,idmap: the host root's file is the container root's; idmap=false: as it is
    on = _berth(daemon, "run", "--rm", "--mount", f"{bind},idmap", "busybox", "sh", "-c",
                "stat -c %u /h/secret && cat /h/secret")
    assert on.returncode == 0 and on.stdout.split("\n")[:2] == ["0", "host root only"], on
    off = _berth(daemon, "run", "--rm", "--mount", f"{bind},idmap=false", "busybox", "cat", "/h/secret")
    assert off.returncode != 0 and "Permission denied" in off.stderr, off
    # a volume: idmapped, its files are the container's own ids on disk; else the host's
    r = _berth(daemon, "run", "--rm", "--mount", "type=volume,src=uns-mv,dst=/v,idmap", "busybox", "sh", "-c",
               "touch /v/f && chown 7:8 /v/f")
    assert r.returncode == 0, r.stderr
    f = daemon.data_root / "volumes" / "uns-mv" / "_data" / "f"
    try:
        assert (f.stat().st_uid, f.stat().st_gid) == (7, 8)
        # the API's BindOptions.Idmap (docker-py sends HostConfig.Mounts as given)
        client = docker.APIClient(base_url=f"unix://{daemon.sock}", version="1.50")
        hc = client.create_host_config(mounts=[{"Type": "bind", "Source": str(tmp_path), "Target": "/h",
                                                "BindOptions": {"Idmap": True}}])
        c = client.create_container("busybox", ["cat", "/h/secret"], host_config=hc)
        try:
            client.start(c)
            assert client.wait(c)["StatusCode"] == 0
            assert client.logs(c) == b"host root only\n"
        finally:
            client.remove_container(c, force=True)
        # no user namespace: nothing to map through, refused at create
        r = _berth(daemon, "run", "--rm", "--userns=host", "--mount", f"{bind},idmap", "busybox", "true")
        assert r.returncode == 125 and "the idmap option needs a user namespace" in r.stderr, r
        r = daemon.docker("run", "--rm", "--userns=host", "-v", f"{tmp_path}:/h:idmap", "busybox", "true")
        assert r.returncode == 125 and "the idmap option needs a user namespace" in r.stderr, r
        assert not daemon.docker("ps", "-aq").stdout.split()
    finally:
        daemon.docker("volume", "rm", "uns-mv")


def test_joining_another_containers_namespaces_joins_its_user_namespace(daemon: Daemon) -> None:
    r = daemon.docker("run", "-d", "--name", "uns-donor", "--ipc=shareable", "busybox", "sleep", "60")
    assert r.returncode == 0, r.stderr
    try:
        donor_map = daemon.docker("exec", "uns-donor", "cat", "/proc/self/uid_map").stdout.split()
        donor_userns = os.readlink(f"/proc/{_pid(daemon, 'uns-donor')}/ns/user")
        for ns in ("pid", "ipc", "network"):
            r = daemon.docker("run", "--rm", f"--{ns}", "container:uns-donor", "busybox", "sh", "-c",
                              "cat /proc/self/uid_map; readlink /proc/self/ns/user; ps -o comm")
            assert r.returncode == 0, (ns, r)
            lines = r.stdout.split("\n")
            assert lines[0].split() == donor_map and lines[1] == donor_userns, (ns, r.stdout)
            assert ("sleep" in lines[2:]) == (ns == "pid"), (ns, r.stdout)
        # the host's ipc namespace: the daemon's default gives way, as for --pid/--network=host
        r = daemon.docker("run", "--rm", "--ipc=host", "busybox", "cat", "/proc/self/uid_map")
        assert r.returncode == 0 and r.stdout.split() == ["0", "0", "4294967295"], r
        r = _berth(daemon, "run", "--rm", "--userns=auto", "--ipc=host", "busybox", "true")
        assert r.returncode == 125 and "cannot be used with --ipc=host" in r.stderr, r
    finally:
        daemon.docker("rm", "-f", "uns-donor")


def test_sysfs_shows_the_containers_network_devices(daemon: Daemon) -> None:
    """/sys of a user namespace container is its network namespace's sysfs (a fresh one the
    init makes as the host's root), read-only, not the host's /sys."""
    r = daemon.docker("run", "--rm", "--mac-address", "02:42:aa:bb:cc:dd", "busybox", "sh", "-c",
                      "cat /sys/class/net/eth0/address; ls /sys/class/net; touch /sys/x 2>&1; grep ' /sys ' /proc/mounts")
    assert r.returncode == 0, r
    lines = r.stdout.split("\n")
    assert lines[0] == "02:42:aa:bb:cc:dd" and lines[1:3] == ["eth0", "lo"], r.stdout
    assert "Read-only file system" in r.stdout and " ro," in r.stdout.split("/sys ")[-1], r.stdout


def test_another_runtime_runs_in_the_hosts_user_namespace(daemon: Daemon) -> None:
    """runc gets no idmapped layers: the daemon's default gives way, an explicit auto is refused."""
    r = daemon.docker("run", "--rm", "--runtime", "runc", "busybox", "cat", "/proc/self/uid_map")
    assert r.returncode == 0 and r.stdout.split() == ["0", "0", "4294967295"], r
    r = _berth(daemon, "run", "--rm", "--userns=auto", "--runtime", "runc", "busybox", "true")
    assert r.returncode == 125 and "needs berth's own runtime, not runc" in r.stderr, r


def _many_files_tar(n: int) -> bytes:
    """A rootfs of ``n`` small files in 100 dirs: a layer whose copy takes a while by its size."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(n):
            ti = tarfile.TarInfo(f"many/{i % 100}/f{i}")
            ti.size, ti.mode = 3, 0o644
            tar.addfile(ti, io.BytesIO(b"hi\n"))
    return buf.getvalue()


def test_cp_into_a_never_started_container_copies_the_layers_off_the_loop(daemon: Daemon) -> None:
    """The fallback's first copy of a range's layers (``cp -a`` and the chown walk) is made by
    ``docker cp`` into a container that never ran: /_ping is answered meanwhile. With idmapped
    layers the same cp copies no layer at all."""
    status, body = daemon.request("POST", "/images/create?fromSrc=-&repo=uns-many&tag=latest"
                                  "&changes=CMD%20%5B%22true%22%5D", _many_files_tar(5000))
    assert status == 200, body
    assert daemon.docker("create", "--name", "uns-many", "uns-many").returncode == 0
    try:
        with PingWatch(daemon) as w:
            t0 = time.monotonic()
            put = subprocess.run([DOCKER, "cp", "-", "uns-many:/many"], env=daemon.env, capture_output=True,
                                 input=_tar_of([("copied-in", 0, 0)]), timeout=120)
            took = time.monotonic() - t0
        assert put.returncode == 0, put.stderr
        if not _copying(daemon):
            assert _copies(daemon) == []  # idmapped layers: nothing to copy, nothing to wait for
            return
        assert len(_copies(daemon)) == 1  # the range's copy was made by this cp
        # the copy must be long enough to tell: a blocked loop would make the worst ping ~ took
        assert took > 0.2 and w.worst < took / 2, (took, w.worst, w.count)
    finally:
        daemon.docker("rm", "-f", "uns-many")
        daemon.docker("rmi", "uns-many")
