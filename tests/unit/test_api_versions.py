"""Behaviour that follows the requested Engine API version (pure parts: no daemon)."""

from __future__ import annotations

import pytest

from berth.api import system
from berth.api.containers import adapt_create
from berth.api.http import BadRequest, Request, check_version
from berth.engine.mount_specs import parse_mount
from berth.errors import InvalidArgument
from berth.schema.containers import decode_create


def req(version: str | None) -> Request:
    return Request("GET", "/x", {}, {}, None, None, api_version=version)  # type: ignore[arg-type]


def test_advertised_range():
    assert system.API_VERSION == "1.50" and system.MIN_API_VERSION == "1.24"


def test_version_bounds_are_dockerds_400s():
    check_version("1.24", "1.24", "1.50")
    check_version("1.50", "1.24", "1.50")
    with pytest.raises(BadRequest, match="client version 1.51 is too new. Maximum supported API version is 1.50"):
        check_version("1.51", "1.24", "1.50")
    with pytest.raises(BadRequest, match="client version 1.23 is too old. Minimum supported API version is 1.24"):
        check_version("1.23", "1.24", "1.50")


def _info() -> dict[str, object]:
    return {"KernelMemory": False, "KernelMemoryTCP": False, "BridgeNfIptables": False, "BridgeNfIp6tables": False,
            "Runtimes": {"runc": {"path": "x"}}, "CDISpecDirs": [], "Containerd": None,
            "FirewallBackend": {"Driver": "nftables"}, "DiscoveredDevices": [],
            "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": [], "AllowNondistributableArtifactsHostnames": [],
                               "Mirrors": []}}


@pytest.mark.parametrize("version,present,absent", [
    ("1.41", {"KernelMemory", "BridgeNfIptables"}, {"CDISpecDirs", "Containerd", "FirewallBackend", "DiscoveredDevices"}),
    ("1.44", {"BridgeNfIptables", "CDISpecDirs"}, {"KernelMemory", "Containerd", "FirewallBackend"}),
    ("1.49", {"BridgeNfIptables", "Containerd", "FirewallBackend"}, {"DiscoveredDevices"}),
    ("1.50", {"FirewallBackend", "DiscoveredDevices", "CDISpecDirs"}, {"BridgeNfIptables", "BridgeNfIp6tables",
                                                                       "KernelMemoryTCP"}),
])
def test_info_fields_follow_the_version(version, present, absent):
    d = system.info_for_version(req(version), _info())
    assert present <= d.keys() and not (absent & d.keys())
    nondist = "AllowNondistributableArtifactsCIDRs" in d["RegistryConfig"]  # type: ignore[operator]
    assert nondist == (version < "1.49")
    assert ("status" in d["Runtimes"]["runc"]) == (version >= "1.44")  # type: ignore[index]


def _create(body: str, version: str):
    creq = decode_create(body.encode())
    return creq, adapt_create(req(version), creq)


def test_mac_address_moves_to_the_endpoint():
    creq, warnings = _create('{"Image": "x", "MacAddress": "02:42:ac:11:00:09"}', "1.43")
    assert warnings == [] and creq.MacAddress is None
    assert creq.NetworkingConfig["EndpointsConfig"]["default"]["MacAddress"] == "02:42:ac:11:00:09"
    creq, warnings = _create('{"Image": "x", "MacAddress": "02:42:ac:11:00:09"}', "1.50")
    assert "deprecated" in warnings[0]
    assert creq.NetworkingConfig["EndpointsConfig"]["default"]["MacAddress"] == "02:42:ac:11:00:09"
    with pytest.raises(InvalidArgument, match="must match the endpoint-specific MAC address"):
        _create('{"Image": "x", "MacAddress": "02:42:ac:11:00:09", "HostConfig": {"NetworkMode": "n"},'
                ' "NetworkingConfig": {"EndpointsConfig": {"n": {"MacAddress": "02:42:ac:11:00:0a"}}}}', "1.50")
    with pytest.raises(InvalidArgument, match="conflicting options: mac-address and the network mode"):
        _create('{"Image": "x", "MacAddress": "02:42:ac:11:00:09", "HostConfig": {"NetworkMode": "none"}}', "1.41")


def test_several_networks_at_create_need_1_44():
    body = '{"Image": "x", "NetworkingConfig": {"EndpointsConfig": {"a": {}, "b": {}}}}'
    with pytest.raises(InvalidArgument, match="cannot be connected to network endpoints: a, b"):
        _create(body, "1.43")
    _create(body, "1.44")


def test_fields_newer_than_the_request_are_dropped():
    body = ('{"Image": "x", "Healthcheck": {"Test": ["CMD", "true"], "StartInterval": 100},'
            ' "HostConfig": {"Annotations": {"a": "b"}, "Mounts": ['
            '{"Type": "volume", "Target": "/v", "VolumeOptions": {"Subpath": "s"}, "BindOptions": {}},'
            '{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"Options": [["exec"]]}}]}}')
    creq, _ = _create(body, "1.41")
    assert creq.HostConfig.Annotations is None and "StartInterval" not in creq.Healthcheck
    vol, tmp = creq.HostConfig.Mounts
    assert "BindOptions" not in vol and vol["VolumeOptions"] == {} and tmp["TmpfsOptions"] == {}
    creq, _ = _create(body, "1.50")
    assert creq.HostConfig.Annotations == {"a": "b"} and creq.Healthcheck["StartInterval"] == 100
    with pytest.raises(InvalidArgument, match='type "volume": field BindOptions must not be specified'):
        parse_mount(creq.HostConfig.Mounts[0])
    assert "exec" in parse_mount(creq.HostConfig.Mounts[1]).tmpfs_options


def test_mount_options_of_1_42_and_later():
    p = parse_mount({"Type": "bind", "Source": "/nonexistent", "Target": "/x", "BindOptions": {"CreateMountpoint": True}})
    assert p.mode == "mount-create"
    with pytest.raises(InvalidArgument, match="subpath must be a relative path"):
        parse_mount({"Type": "volume", "Source": "vol", "Target": "/x", "VolumeOptions": {"Subpath": "../etc"}})
    with pytest.raises(InvalidArgument, match="recursively read-only mounts are not supported"):
        parse_mount({"Type": "bind", "Source": "/", "Target": "/x", "ReadOnly": True,
                     "BindOptions": {"ReadOnlyForceRecursive": True}})
    with pytest.raises(InvalidArgument, match="invalid option"):
        parse_mount({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"Options": [["bogus"]]}})
