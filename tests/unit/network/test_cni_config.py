"""network.cni's pure parts: which config is used, a .conf as a list of one, what each plugin
reads on stdin (its name and version, runtimeConfig for the capabilities it declares,
prevResult), a plugin's error document, a result's address, a missing plugin's error."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from berth.network import cni


def test_first_valid_config_by_name(tmp_path: Path) -> None:
    (tmp_path / "05-broken.conflist").write_text("{not json")
    (tmp_path / "10-one.conf").write_text(json.dumps({"cniVersion": "0.4.0", "name": "one", "type": "bridge"}))
    (tmp_path / "20-two.conflist").write_text(json.dumps({"name": "two", "plugins": [{"type": "bridge"}]}))
    (tmp_path / "00-ignored.txt").write_text("{}")
    net = cni.load(str(tmp_path))
    assert net is not None and net.name == "one" and net.cni_version == "0.4.0"
    assert net.plugins == [{"type": "bridge"}]
    assert cni.load(str(tmp_path / "missing")) is None


@pytest.mark.parametrize("doc", [{"name": "x"}, {"name": "x", "plugins": []}, {"plugins": [{"type": "b"}]},
                                 {"name": "x", "plugins": [{"ipam": {}}]}, []])
def test_invalid_configs(doc: object) -> None:
    with pytest.raises(ValueError):
        cni.parse(json.dumps(doc))


def test_plugin_stdin() -> None:
    net = cni.Network("pods", "1.0.0", [{"type": "bridge"}, {"type": "portmap", "capabilities": {"portMappings": True}}])
    ports = [{"hostPort": 80, "containerPort": 8080, "protocol": "tcp", "hostIP": ""}]
    att = cni.Attachment("cid", "/proc/1/ns/net", capabilities={"portMappings": ports, "bandwidth": {}})
    first = cni.plugin_config(net, net.plugins[0], att, None)
    assert first == {"type": "bridge", "name": "pods", "cniVersion": "1.0.0"}
    prev = {"ips": [{"address": "10.1.0.2/24"}]}
    second = cni.plugin_config(net, net.plugins[1], att, prev)
    assert second == {"type": "portmap", "name": "pods", "cniVersion": "1.0.0",
                      "runtimeConfig": {"portMappings": ports}, "prevResult": prev}


def test_messages_and_addresses(tmp_path: Path) -> None:
    doc = json.dumps({"cniVersion": "1.0.0", "code": 11, "msg": "failed to allocate", "details": "range full"})
    assert cni._message(doc.encode(), b"") == "failed to allocate: range full"
    assert cni._message(b"", b"panic: boom\n") == "panic: boom"
    assert cni.first_ip({"ips": [{"address": "fd00::2/64"}, {"address": "10.1.0.2/24"}]}) == "10.1.0.2"
    assert cni.first_ip({}) == ""
    with pytest.raises(cni.CniError, match=r'failed to find plugin "nope" in path \['):
        cni.Cni(str(tmp_path), [str(tmp_path)], tmp_path / "cache").find("nope")


@pytest.mark.parametrize("ours, seen", [(None, "1"), ("4", "4")])
def test_plugins_run_with_one_go_proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ours: str | None,
                                      seen: str) -> None:
    """A plugin gets GOMAXPROCS=1 unless berthd's environment names its own."""
    if ours is None:
        monkeypatch.delenv("GOMAXPROCS", raising=False)
    else:
        monkeypatch.setenv("GOMAXPROCS", ours)
    plugin = tmp_path / "envecho"
    plugin.write_text('#!/bin/sh\nprintf \'{"cniVersion":"1.0.0","dns":{"domain":"%s"}}\' "$GOMAXPROCS"\n')
    plugin.chmod(0o755)
    c = cni.Cni(str(tmp_path), [str(tmp_path)], tmp_path / "cache")
    net = cni.Network("n", "1.0.0", [{"type": "envecho"}])
    result = asyncio.run(c.add(net, cni.Attachment("c1", "/proc/self/ns/net"), cache=False))
    assert result["dns"]["domain"] == seen
