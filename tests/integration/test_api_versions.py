"""Engine API versions: berthd advertises 1.50; older requests keep their shapes.

The docker CLI negotiates 1.50 (so the rest of the suite runs at 1.50); the requests pinned at
/v1.4x/ here keep older clients covered."""

from __future__ import annotations

import json
import time
import uuid

import pytest

pytestmark = pytest.mark.root


@pytest.fixture
def cleanup(docker):  # type: ignore[no-untyped-def]
    names: list[tuple[str, str]] = []
    yield names
    for kind, name in reversed(names):
        if kind == "container":
            docker("rm", "-f", "-v", name)
        else:
            docker(kind, "rm", "-f", name)


def uid() -> str:
    return uuid.uuid4().hex[:8]


def ok(r) -> str:  # type: ignore[no-untyped-def]
    assert r.returncode == 0, r.stderr
    return r.stdout


def get(berthd, path: str):  # type: ignore[no-untyped-def]
    status, body = berthd.request("GET", path)
    assert status == 200, (path, body)
    return json.loads(body)


def post(berthd, path: str, body: object | None = None) -> tuple[int, object]:  # type: ignore[no-untyped-def]
    raw = json.dumps(body).encode() if body is not None else None
    status, out = berthd.request("POST", path, raw, {"Content-Type": "application/json"} if raw else None)
    try:
        return status, json.loads(out) if out.strip() else None
    except ValueError:
        return status, out


def create(berthd, version: str, body: dict, name: str = "") -> str:  # type: ignore[no-untyped-def]
    status, out = post(berthd, f"/v{version}/containers/create" + (f"?name={name}" if name else ""), body)
    assert status == 201, out
    return out["Id"]  # type: ignore[index]


def test_version_negotiation(berthd, docker):
    v = get(berthd, "/version")
    assert v["ApiVersion"] == "1.50" and v["MinAPIVersion"] == "1.24"
    assert ok(docker("version", "-f", "{{.Client.APIVersion}} {{.Server.APIVersion}}")).split() == ["1.50", "1.50"]
    status, body = berthd.request("GET", "/v1.51/version")
    assert status == 400 and b"client version 1.51 is too new. Maximum supported API version is 1.50" in body
    status, body = berthd.request("GET", "/v1.23/version")
    assert status == 400 and b"is too old. Minimum supported API version is 1.24" in body
    assert berthd.request("GET", "/v1.24/_ping")[0] == 200
    assert get(berthd, "/v1.41/version")["ApiVersion"] == "1.50"


def test_info_per_version(berthd):
    old, new = get(berthd, "/v1.41/info"), get(berthd, "/v1.50/info")
    assert "KernelMemory" in old and "BridgeNfIptables" in old and "DiscoveredDevices" not in old
    assert "KernelMemory" not in new and "BridgeNfIptables" not in new
    assert new["DiscoveredDevices"] == [] and new["CDISpecDirs"] == [] and new["FirewallBackend"]["Driver"]


def test_image_shapes_per_version(berthd, busybox):
    old = [i for i in get(berthd, "/v1.41/images/json") if busybox in i["RepoTags"]][0]
    new = [i for i in get(berthd, "/v1.50/images/json") if busybox in i["RepoTags"]][0]
    assert old["VirtualSize"] == old["Size"] and "VirtualSize" not in new
    assert new["SharedSize"] == -1
    shared = [i for i in get(berthd, "/v1.50/images/json?shared-size=1") if busybox in i["RepoTags"]][0]
    assert shared["SharedSize"] >= 0
    i44, i45, i50 = (get(berthd, f"/v{v}/images/{busybox}/json") for v in ("1.44", "1.45", "1.50"))
    assert "Container" in i44 and "ContainerConfig" in i44 and "VirtualSize" not in i44
    assert "Container" not in i45 and "ContainerConfig" not in i45
    assert "Hostname" in i45["Config"] and "Hostname" not in i50["Config"] and i50["Config"]["Cmd"] == ["sh"]
    assert "VirtualSize" in get(berthd, f"/v1.43/images/{busybox}/json")


def test_untagged_images_list_per_version(berthd, busybox):
    cid = create(berthd, "1.50", {"Image": busybox, "Cmd": ["true"]})
    try:
        status, out = post(berthd, f"/commit?container={cid}")
        assert status == 201, out
        iid = out["Id"]  # type: ignore[index]
        old = [i for i in get(berthd, "/v1.42/images/json") if i["Id"] == iid][0]
        new = [i for i in get(berthd, "/v1.43/images/json") if i["Id"] == iid][0]
        assert old["RepoTags"] == ["<none>:<none>"] and old["RepoDigests"] == ["<none>@<none>"]
        assert new["RepoTags"] == [] and new["RepoDigests"] == []
    finally:
        berthd.request("DELETE", f"/containers/{cid}?force=1")
        berthd.request("DELETE", f"/images/{iid}?force=1")


def test_image_platform_parameters(berthd, busybox, docker):
    arm = "%7B%22os%22%3A%22linux%22%2C%22architecture%22%3A%22arm64%22%7D"  # {"os":"linux","architecture":"arm64"}
    status, body = berthd.request("GET", f"/v1.49/images/{busybox}/json?platform={arm}")
    assert status == 404 and b"does not provide the specified platform (linux/arm64)" in body
    assert berthd.request("GET", f"/v1.48/images/{busybox}/json?platform={arm}")[0] == 200  # not a 1.48 parameter
    assert berthd.request("GET", f"/v1.48/images/{busybox}/history?platform={arm}")[0] == 404
    host = json.loads(ok(docker("image", "inspect", "-f", "{{json .}}", busybox)))
    r = docker("image", "inspect", "--platform", f"linux/{host['Architecture']}", busybox)
    assert r.returncode == 0, r.stderr
    r = docker("rmi", "--platform", "linux/s390x", busybox)
    assert r.returncode != 0 and "does not provide the specified platform" in r.stderr
    assert ok(docker("image", "ls", "-q", busybox)).strip()


def test_system_df_types(berthd):
    assert "BuilderSize" in get(berthd, "/v1.41/system/df")
    d = get(berthd, "/v1.42/system/df?type=image")
    assert set(d) == {"LayersSize", "Images"}
    d = get(berthd, "/v1.50/system/df?type=container&type=volume")
    assert set(d) == {"Containers", "Volumes"}
    assert berthd.request("GET", "/v1.50/system/df?type=nope")[0] == 400


def test_mac_address_through_the_cli(docker, cleanup):
    name = f"mac-{uid()}"
    cleanup.append(("container", name))
    out = ok(docker("run", "--name", name, "--mac-address", "02:42:ac:11:00:42", "busybox",
                    "cat", "/sys/class/net/eth0/address"))
    assert out.strip() == "02:42:ac:11:00:42"
    assert ok(docker("inspect", "-f", "{{.NetworkSettings.Networks.bridge.MacAddress}}", name)).strip() \
        == "02:42:ac:11:00:42"


def test_mac_address_legacy_field_per_version(berthd, busybox):
    body = {"Image": busybox, "Cmd": ["true"], "MacAddress": "02:42:ac:11:00:43"}
    status, out = post(berthd, "/v1.43/containers/create", {**body, "HostConfig": {"NetworkMode": "none"}})
    assert status == 400 and "conflicting options: mac-address and the network mode" in out["message"]  # type: ignore[index]
    status, out = post(berthd, "/v1.50/containers/create", body)
    assert status == 201 and "MacAddress field is now deprecated" in out["Warnings"][0]  # type: ignore[index]
    cid = out["Id"]  # type: ignore[index]
    try:
        ep = get(berthd, f"/v1.50/containers/{cid}/json")
        assert ep["NetworkSettings"]["Networks"]["bridge"]["MacAddress"] == "02:42:ac:11:00:43"
        assert get(berthd, f"/v1.43/containers/{cid}/json")["Config"]["MacAddress"] == "02:42:ac:11:00:43"
    finally:
        berthd.request("DELETE", f"/containers/{cid}?force=1")


def test_volume_prune_all_through_the_cli(berthd, docker, cleanup):
    named, holder = f"named-{uid()}", f"anon-{uid()}"
    cleanup += [("volume", named), ("container", holder)]
    ok(docker("volume", "create", named))
    ok(docker("create", "--name", holder, "-v", "/data", "busybox", "true"))
    anon = json.loads(ok(docker("inspect", "-f", "{{json .Mounts}}", holder)))[0]["Name"]
    ok(docker("rm", holder))
    ok(docker("volume", "prune", "-f"))
    names = ok(docker("volume", "ls", "-q")).split()
    assert named in names and anon not in names
    out = ok(docker("volume", "prune", "-a", "-f"))
    assert named in out and named not in ok(docker("volume", "ls", "-q")).split()
    # API 1.41 clients keep the old meaning: every unused volume.
    ok(docker("volume", "create", named))
    status, out = post(berthd, "/v1.41/volumes/prune")
    assert status == 200 and named in out["VolumesDeleted"]  # type: ignore[index]


def test_mount_option_checks_per_version(berthd, busybox, tmp_path):
    vol_with_bind = {"Type": "volume", "Target": "/v", "BindOptions": {"Propagation": "rprivate"}}
    status, out = post(berthd, "/v1.50/containers/create", {"Image": busybox, "HostConfig": {"Mounts": [vol_with_bind]}})
    assert status == 400 and "field BindOptions must not be specified" in out["message"]  # type: ignore[index]
    cid = create(berthd, "1.41", {"Image": busybox, "HostConfig": {"Mounts": [vol_with_bind]}})
    berthd.request("DELETE", f"/containers/{cid}?force=1&v=1")
    src = tmp_path / "made" / "here"
    bind = {"Type": "bind", "Source": str(src), "Target": "/m", "BindOptions": {"CreateMountpoint": True}}
    status, out = post(berthd, "/v1.41/containers/create", {"Image": busybox, "HostConfig": {"Mounts": [bind]}})
    assert status == 400 and "bind source path does not exist" in out["message"]  # type: ignore[index]
    cid = create(berthd, "1.42", {"Image": busybox, "HostConfig": {"Mounts": [bind]}})
    berthd.request("DELETE", f"/containers/{cid}?force=1")
    assert src.is_dir()


def test_volume_subpath_and_tmpfs_options(docker, cleanup):
    vol, name = f"sub-{uid()}", f"sub-{uid()}"
    cleanup += [("volume", vol)]
    ok(docker("run", "--rm", "-v", f"{vol}:/d", "busybox", "sh", "-c", "mkdir -p /d/a/b && echo deep > /d/a/b/f"))
    out = ok(docker("run", "--rm", "--mount", f"type=volume,src={vol},dst=/s,volume-subpath=a/b", "busybox", "cat", "/s/f"))
    assert out == "deep\n"
    r = docker("run", "--rm", "--mount", f"type=volume,src={vol},dst=/s,volume-subpath=nope", "busybox", "true")
    assert r.returncode != 0 and "subpath not found" in r.stderr
    ok(docker("run", "--rm", "-v", f"{vol}:/d", "busybox", "ln", "-s", "/etc", "/d/esc"))
    r = docker("run", "--rm", "--mount", f"type=volume,src={vol},dst=/s,volume-subpath=esc", "busybox", "true")
    assert r.returncode != 0 and "subpath not found" in r.stderr
    _ = name


def test_tmpfs_options_1_46(berthd, busybox):
    t = {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"Options": [["exec"], ["nr_inodes", "100"]]}}
    cid = create(berthd, "1.46", {"Image": busybox, "Cmd": ["grep", " /t ", "/proc/mounts"], "HostConfig": {"Mounts": [t]}})
    try:
        assert berthd.request("POST", f"/containers/{cid}/start")[0] == 204
        post(berthd, f"/containers/{cid}/wait")
        _, logs = berthd.request("GET", f"/containers/{cid}/logs?stdout=1")
        assert b"noexec" not in logs and b"nr_inodes=100" in logs, logs
    finally:
        berthd.request("DELETE", f"/containers/{cid}?force=1")


def test_annotations(berthd, busybox):
    hc = {"Annotations": {"org.example/team": "blue"}}
    new = create(berthd, "1.43", {"Image": busybox, "Cmd": ["true"], "Labels": {"ann": "x"}, "HostConfig": hc})
    old = create(berthd, "1.42", {"Image": busybox, "Cmd": ["true"], "HostConfig": hc})
    try:
        assert get(berthd, f"/containers/{new}/json")["HostConfig"]["Annotations"] == hc["Annotations"]
        assert get(berthd, f"/containers/{old}/json")["HostConfig"].get("Annotations") is None
        f = "%7B%22label%22%3A%5B%22ann%3Dx%22%5D%7D"  # {"label":["ann=x"]}
        (row46,) = get(berthd, f"/v1.46/containers/json?all=1&filters={f}")
        (row45,) = get(berthd, f"/v1.45/containers/json?all=1&filters={f}")
        assert row46["HostConfig"]["Annotations"] == hc["Annotations"] and "Annotations" not in row45["HostConfig"]
        assert berthd.request("POST", f"/containers/{new}/start")[0] == 204
        spec = json.loads((berthd.data_root / "containers" / new / "config.json").read_text())
        assert spec["annotations"]["org.example/team"] == "blue"
    finally:
        for c in (new, old):
            berthd.request("DELETE", f"/containers/{c}?force=1")


def test_aliases_short_id_before_1_45(docker, berthd, cleanup):
    net, name = f"al-{uid()}", f"al-{uid()}"
    cleanup += [("container", name), ("network", net)]
    ok(docker("network", "create", net))
    cid = ok(docker("create", "--name", name, "--network", net, "--network-alias", "db", "busybox", "true")).strip()
    new = get(berthd, f"/v1.45/containers/{cid}/json")["NetworkSettings"]["Networks"][net]
    old = get(berthd, f"/v1.44/containers/{cid}/json")["NetworkSettings"]["Networks"][net]
    assert new["Aliases"] == ["db"] and old["Aliases"] == ["db", cid[:12]]
    assert cid[:12] in new["DNSNames"]


def test_inspect_at_1_41_as_dockerd_28(docker, berthd, cleanup):
    """dockerd 28's inspect (api/server/router/container/inspect.go) gates by version only the
    aliases (< 1.45: the short ID and the hostname added, deduplicated) and
    ImageManifestDescriptor (< 1.48): GwPriority and DNSNames show at 1.41 too."""
    net, name = f"al-{uid()}", f"al-{uid()}"
    cleanup += [("container", name), ("network", net)]
    ok(docker("network", "create", net))
    cid = ok(docker("create", "--name", name, "--hostname", "web", "--network", net, "--network-alias", "db",
                    "busybox", "true")).strip()
    ep = get(berthd, f"/v1.41/containers/{cid}/json")["NetworkSettings"]["Networks"][net]
    assert ep["Aliases"] == ["db", cid[:12], "web"]
    assert ep["GwPriority"] == 0 and "DNSNames" in ep


def test_several_networks_and_gateway_priority(berthd, busybox, docker, cleanup):
    a, b = f"gwa-{uid()}", f"gwb-{uid()}"
    cleanup += [("network", a), ("network", b)]
    ok(docker("network", "create", "--subnet", "10.231.1.0/24", a))
    ok(docker("network", "create", "--subnet", "10.231.2.0/24", b))
    body = {"Image": busybox, "Cmd": ["ip", "route"], "HostConfig": {"NetworkMode": a},
            "NetworkingConfig": {"EndpointsConfig": {a: {}, b: {"GwPriority": 10}}}}
    status, out = post(berthd, "/v1.43/containers/create", body)
    assert status == 400
    cid = create(berthd, "1.48", body)
    try:
        assert berthd.request("POST", f"/containers/{cid}/start")[0] == 204
        post(berthd, f"/containers/{cid}/wait")
        _, logs = berthd.request("GET", f"/containers/{cid}/logs?stdout=1")
        assert b"default via 10.231.2.1" in logs, logs
        nets = get(berthd, f"/containers/{cid}/json")["NetworkSettings"]["Networks"]
        assert nets[b]["GwPriority"] == 10 and nets[a]["GwPriority"] == 0
    finally:
        berthd.request("DELETE", f"/containers/{cid}?force=1")


def test_network_without_ipv4(berthd):
    name = f"v4-{uid()}"
    status, out = post(berthd, "/v1.48/networks/create", {"Name": name, "EnableIPv4": False})
    assert status == 400 and "IPv4 or IPv6 must be enabled" in out["message"]  # type: ignore[index]
    status, out = post(berthd, "/v1.47/networks/create", {"Name": name, "EnableIPv4": False})
    assert status == 201
    berthd.request("DELETE", f"/networks/{name}")


def test_restart_signal(docker, cleanup):
    name = f"rs-{uid()}"
    cleanup.append(("container", name))
    ok(docker("run", "-d", "--name", name, "busybox", "sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"))
    t0 = time.monotonic()
    ok(docker("restart", "-t", "30", "--signal", "KILL", name))
    assert time.monotonic() - t0 < 10
    assert ok(docker("inspect", "-f", "{{.State.Running}}", name)).strip() == "true"


def test_health_start_interval(docker, berthd, busybox, cleanup):
    name = f"hs-{uid()}"
    cleanup.append(("container", name))
    ok(docker("run", "-d", "--name", name, "--health-cmd", "true", "--health-interval", "1h",
              "--health-start-period", "1m", "--health-start-interval", "200ms", "busybox", "sleep", "60"))
    deadline = time.monotonic() + 10
    while ok(docker("inspect", "-f", "{{.State.Health.Status}}", name)).strip() != "healthy":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    # 1.43 had no StartInterval: the default (5s) applies.
    hc = {"Test": ["CMD", "true"], "Interval": 3600 * 10**9, "StartPeriod": 60 * 10**9, "StartInterval": 2 * 10**8}
    cid = create(berthd, "1.43", {"Image": busybox, "Cmd": ["sleep", "60"], "Healthcheck": hc})
    try:
        assert berthd.request("POST", f"/containers/{cid}/start")[0] == 204
        time.sleep(2)
        assert get(berthd, f"/containers/{cid}/json")["State"]["Health"]["Status"] == "starting"
    finally:
        berthd.request("DELETE", f"/containers/{cid}?force=1")
