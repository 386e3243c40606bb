"""Errors and warnings a docker CLI user reads, in dockerd 28's words and statuses, found by
running the same commands against Debian's dockerd and berthd side by side (the differences a
client parses: a 404 at create makes the CLI pull the image; a prune that ignores a mistyped
filter removes what the filter was meant to keep).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.root


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def _err(r) -> str:
    return r.stderr.splitlines()[0] if r.stderr else ""


def test_kill_errors_name_the_container(docker):
    name = f"kw-{_uid()}"
    assert docker("create", "--name", name, "busybox", "true").returncode == 0
    try:
        cid = docker("inspect", "-f", "{{.Id}}", name).stdout.strip()
        r = docker("kill", name)
        assert r.returncode == 1
        assert _err(r) == f"Error response from daemon: cannot kill container: {name}: Container {cid} is not running"
        r = docker("kill", "--signal", "NOSUCH", name)
        assert _err(r) == f"Error response from daemon: cannot kill container: {name}: Invalid signal: NOSUCH"
    finally:
        docker("rm", "-f", name)


def test_rmi_conflict_names_the_reference_as_given(docker):
    base, img = f"rb-{_uid()}", f"rmiwords{_uid()}"
    assert docker("run", "--name", base, "busybox", "touch", "/made").returncode == 0
    assert docker("commit", base, img).returncode == 0  # an image of its own: one tag, no sharing
    user = f"ru-{_uid()}"
    assert docker("create", "--name", user, img, "true").returncode == 0
    try:
        r = docker("rmi", img)
        assert r.returncode == 1
        assert _err(r).startswith(f'Error response from daemon: conflict: unable to remove repository reference "{img}" '
                                  "(must force) - container "), r.stderr
    finally:
        docker("rm", "-f", base, user)
        docker("rmi", img)


def test_published_ports_on_the_host_network_warn(docker):
    r = docker("create", "--network", "host", "-p", "8080:80", "busybox", "true")
    assert r.returncode == 0, r
    try:
        assert "WARNING: Published ports are discarded when using host network mode" in r.stderr
    finally:
        docker("rm", "-f", r.stdout.strip())


def test_missing_network_container_fails_at_start(docker, berthd):
    """dockerd 28 does not look the container up at create (getNetworkedContainer's FIXME):
    the start fails with a 500. A 404 at create made the CLI pull the image."""
    name = f"nc-{_uid()}"
    r = docker("create", "--name", name, "--network", "container:nosuch-" + name, "busybox", "true")
    assert r.returncode == 0, r
    try:
        status, body = berthd.request("POST", f"/containers/{name}/start")
        assert (status, json.loads(body)["message"]) == \
            (500, f"joining network namespace of container: No such container: nosuch-{name}")
    finally:
        docker("rm", "-f", name)
    r = docker("run", "--rm", "--network", "container:nosuch-" + name, "busybox", "true")
    assert r.returncode == 125 and "Unable to find image" not in r.stderr, r
    assert _err(r) == f"docker: Error response from daemon: joining network namespace of container: No such container: nosuch-{name}"


def test_volumes_from_a_missing_container_is_a_400(docker, berthd):
    body = json.dumps({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"VolumesFrom": ["nosuch-vf"]}})
    status, out = berthd.request("POST", "/containers/create", body.encode(), {"Content-Type": "application/json"})
    assert (status, json.loads(out)) == (400, {"message": "No such container: nosuch-vf"})
    r = docker("create", "--volumes-from", "nosuch-vf", "busybox", "true")
    assert r.returncode == 1 and "Unable to find image" not in r.stderr, r


@pytest.mark.parametrize(("args", "message"), [
    (["--mount", "type=volume,dst=/x,src=a/b"],
     'create a/b: "a/b" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are '
     "allowed. If you intended to pass a host directory, use absolute path"),
    (["--storage-opt", "size=1G"], "--storage-opt is supported only for overlay over xfs with 'pquota' mount option"),
    (["--storage-opt", "foo=bar"], "Unknown option foo"),
    (["--tmpfs", "relative"], "invalid mount path: 'relative' mount path must be absolute"),
])
def test_create_refusals(docker, args, message):
    r = docker("create", *args, "busybox", "true")
    assert r.returncode == 1, r
    assert _err(r) == f"Error response from daemon: {message}"


def _blkio_weight_supported() -> bool:
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():
        return "io" in (root / "cgroup.controllers").read_text().split()
    blkio = root / "blkio"
    return (blkio / "blkio.weight").exists() or (blkio / "blkio.bfq.weight").exists()


def test_blkio_weight_the_host_cannot_apply_is_dropped_with_a_warning(docker):
    """dockerd's verifyPlatformContainerResources: without CFQ's or BFQ's weight (or v2's io),
    the weight is discarded with a warning before its range is checked."""
    r = docker("create", "--blkio-weight", "5", "busybox", "true")
    if _blkio_weight_supported():
        assert r.returncode == 1 and _err(r) == "Error response from daemon: Range of blkio weight is from 10 to 1000"
        return
    assert r.returncode == 0, r
    try:
        assert "WARNING: Your kernel does not support Block I/O weight or the cgroup is not mounted. " \
               "Weight discarded." in r.stderr
        assert docker("inspect", "-f", "{{.HostConfig.BlkioWeight}}", r.stdout.strip()).stdout.strip() == "0"
    finally:
        docker("rm", "-f", r.stdout.strip())


def test_container_errors_name_what_the_client_named(docker):
    a, b, net = f"ea-{_uid()}", f"eb-{_uid()}", f"en-{_uid()}"
    assert docker("run", "-d", "--name", a, "busybox", "sleep", "30").returncode == 0
    assert docker("create", "--name", b, "busybox", "true").returncode == 0
    assert docker("network", "create", net).returncode == 0
    try:
        r = docker("cp", f"{a}:/nosuch", "-")
        assert _err(r) == f"Error response from daemon: Could not find the file /nosuch in container {a}"
        r = docker("rename", a, b)
        bid = docker("inspect", "-f", "{{.Id}}", b).stdout.strip()
        assert _err(r) == (f'Error response from daemon: Error when allocating new name: Conflict. The container name '
                           f'"/{b}" is already in use by container "{bid}". You have to remove (or rename) that '
                           "container to be able to reuse that name.")
        aid = docker("inspect", "-f", "{{.Id}}", a).stdout.strip()
        r = docker("network", "disconnect", net, a)
        assert _err(r) == f"Error response from daemon: container {aid} is not connected to network {net}"
        r = docker("network", "disconnect", net, b)
        assert _err(r) == f"Error response from daemon: container {bid} is not connected to the network {net}"
    finally:
        docker("rm", "-f", a, b)
        docker("network", "rm", net)


def test_volume_create_errors(docker):
    name = f"vw-{_uid()}"
    r = docker("volume", "create", "--driver", "nosuch", name)
    assert _err(r) == f'Error response from daemon: create {name}: error looking up volume plugin nosuch: plugin "nosuch" not found'
    r = docker("volume", "create", "--opt", "foo=bar", name)
    assert _err(r) == f'Error response from daemon: create {name}: invalid option: "foo"'


def test_exec_errors(docker):
    name = f"ex-{_uid()}"
    assert docker("run", "-d", "--name", name, "busybox", "sleep", "30").returncode == 0
    try:
        r = docker("exec", "-w", "relative", name, "true")
        assert (r.returncode, r.stdout) == (126, "OCI runtime exec failed: exec failed: Cwd must be an absolute path: unknown\n")
        r = docker("exec", "-u", "nosuch", name, "true")  # dockerd looks the user up itself
        assert (r.returncode, r.stdout) == (126, "unable to find user nosuch: no matching entries in passwd file\n")
        r = docker("exec", "--detach-keys", "bogus", name, "true")
        assert _err(r) == "Error response from daemon: Invalid escape keys (bogus) provided"
    finally:
        docker("rm", "-f", name)


@pytest.mark.parametrize("what", ["container", "image", "network", "volume"])
def test_prune_with_a_mistyped_filter_removes_nothing(docker, what):
    """dockerd validates a prune's filters: a typo is a 400, not "no filter" (before, berthd
    pruned everything a typo was meant to narrow)."""
    r = docker(what, "prune", "-f", "--filter", "lable=x")
    assert r.returncode == 1 and _err(r) == "Error response from daemon: invalid filter 'lable'", r


def test_filters_dockerd_refuses(docker):
    assert _err(docker("images", "--filter", "bogus=1")) == "Error response from daemon: invalid filter 'bogus'"
    assert _err(docker("images", "--filter", "dangling=maybe")) == \
        "Error response from daemon: invalid filter 'dangling=[maybe]'"


def test_container_prune_label_not(docker):
    """``label!``: containers whose labels match every ``label!`` stay (dockerd's matchLabels)."""
    tag = _uid()
    keep, gone = f"pk-{tag}", f"pg-{tag}"
    assert docker("create", "--name", keep, "--label", f"prunetest={tag}", "--label", "keep=1", "busybox", "true").returncode == 0
    assert docker("create", "--name", gone, "--label", f"prunetest={tag}", "busybox", "true").returncode == 0
    try:
        r = docker("container", "prune", "-f", "--filter", f"label=prunetest={tag}", "--filter", "label!=keep=1")
        assert r.returncode == 0, r
        names = docker("ps", "-a", "--filter", f"label=prunetest={tag}", "--format", "{{.Names}}").stdout.split()
        assert names == [keep]
    finally:
        docker("rm", "-f", keep, gone)


@pytest.mark.parametrize(("mode", "ok"), [("ro,rw", False), ("ro,Z,z", False), ("rshared,rslave", False),
                                          ("cached", True), ("ro,delegated,z", True)])
def test_bind_modes_one_of_each_kind(docker, mode, ok):
    """moby's linuxValidMountMode: at most one mode of each kind; Docker Desktop's consistency
    modes (cached, delegated, consistent) are accepted and ignored on Linux."""
    r = docker("create", "-v", f"/tmp:/x:{mode}", "busybox", "true")
    if ok:
        assert r.returncode == 0, r
        docker("rm", "-f", r.stdout.strip())
    else:
        assert _err(r) == f"Error response from daemon: invalid mode: {mode}"


def test_mount_refusals_in_dockerds_words(docker):
    r = docker("create", "--mount", "type=bind,src=/tmp,dst=/x,bind-propagation=bogus", "busybox", "true")
    assert _err(r) == 'Error response from daemon: invalid mount config for type "bind": invalid propagation mode: bogus'


def test_oom_kill_disable_without_a_memory_limit_warns(docker):
    r = docker("create", "--oom-kill-disable", "busybox", "true")
    assert r.returncode == 0, r
    try:
        assert "WARNING: OOM killer is disabled for the container, but no memory limit is set, this can result " \
               "in the system running out of resources." in r.stderr
    finally:
        docker("rm", "-f", r.stdout.strip())
    r = docker("create", "--oom-kill-disable", "-m", "64m", "busybox", "true")
    assert r.returncode == 0 and "OOM killer" not in r.stderr, r
    docker("rm", "-f", r.stdout.strip())


def test_gpus_fail_the_start_for_want_of_a_device_driver(docker):
    name = f"gpu-{_uid()}"
    r = docker("run", "--name", name, "--gpus", "all", "busybox", "true")
    try:
        assert r.returncode == 125, r
        assert _err(r) == 'docker: Error response from daemon: could not select device driver "" with capabilities: [[gpu]]'
    finally:
        docker("rm", "-f", name)


def test_mount_volume_options_reach_the_volume(docker, berthd):
    """--mount's volume-driver, volume-opt and volume-label make the volume the mount creates
    (they were ignored: an NFS volume asked for that way was an empty local directory)."""
    vol = f"mv-{_uid()}"
    r = docker("run", "--rm", "--mount", f"type=volume,src={vol},dst=/x,volume-opt=type=tmpfs,volume-opt=device=tmpfs,"
               "volume-label=made=by-mount", "busybox", "true")
    try:
        assert r.returncode == 0, r
        v = json.loads(docker("volume", "inspect", vol).stdout)[0]
        assert v["Options"] == {"type": "tmpfs", "device": "tmpfs"} and v["Labels"] == {"made": "by-mount"}, v
    finally:
        docker("volume", "rm", vol)
    r = docker("create", "--mount", f"type=volume,src={vol},dst=/x,volume-opt=foo=bar", "busybox", "true")
    assert _err(r) == f'Error response from daemon: create {vol}: invalid option: "foo"'
    body = json.dumps({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Mounts": [
        {"Type": "volume", "Source": vol, "Target": "/x", "VolumeOptions": {"DriverConfig": {"Name": "nosuch"}}}]}})
    status, out = berthd.request("POST", "/containers/create", body.encode(), {"Content-Type": "application/json"})
    assert (status, json.loads(out)) == \
        (404, {"message": f'create {vol}: error looking up volume plugin nosuch: plugin "nosuch" not found'})
    assert docker("volume", "inspect", vol).returncode == 1  # nothing was made
