"""Mount point parsing (pure): -v, --mount, --tmpfs; and the spec's mount order."""

from __future__ import annotations

import pytest

from berth.engine import mount_specs as v
from berth.errors import InvalidArgument
from berth.oci import spec as oci
from berth.runtime.defaults import build_spec


def test_parse_bind_and_volume():
    p = v.parse_bind("/host/dir:/ctr:ro,Z,rslave")
    assert (p.type, p.source, p.destination, p.rw, p.propagation) == ("bind", "/host/dir", "/ctr", False, "rslave")
    p = v.parse_bind("data:/var/lib/data:nocopy")
    assert (p.type, p.source, p.nocopy, p.rw) == ("volume", "data", True, True)
    assert v.parse_bind("/anon").type == "volume" and v.parse_bind("/anon").source == ""
    for bad in ("a:b:c:d", "/x:/y:bogus", "/x:relative", "bad name:/x"):
        with pytest.raises(InvalidArgument):
            v.parse_bind(bad)


def test_parse_mount():
    p = v.parse_mount({"Type": "bind", "Source": "/s", "Target": "/t", "ReadOnly": True,
                       "BindOptions": {"Propagation": "rshared"}})
    assert (p.type, p.rw, p.propagation) == ("bind", False, "rshared")
    p = v.parse_mount({"Type": "volume", "Target": "/t", "VolumeOptions": {"NoCopy": True}})
    assert (p.type, p.source, p.nocopy) == ("volume", "", True)
    p = v.parse_mount({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1048576, "Mode": 0o700}})
    assert "size=1048576" in p.tmpfs_options and "mode=700" in p.tmpfs_options and "noexec" in p.tmpfs_options
    for bad in ({"Type": "nfs", "Target": "/t"}, {"Type": "bind", "Target": "/t"}, {"Type": "volume"}):
        with pytest.raises(InvalidArgument):
            v.parse_mount(bad)


def _spec(**kw):
    return build_spec(args=["sh"], env=[], cwd="/", user="", hostname="h", rootfs="/r", tty=False,
                      hostname_file="/f/hostname", hosts_file="/f/hosts", resolv_file="/f/resolv.conf",
                      cgroups_path="/berth/x", seccomp="unconfined", **kw)


def test_spec_netns_modes_and_mount_order():
    ns = {n.type: n.path for n in _spec().linux.namespaces}
    assert "network" in ns and ns["network"] is None and _spec().linux.sysctl
    s = _spec(netns=None)
    assert "network" not in {n.type for n in s.linux.namespaces} and not s.linux.sysctl
    s = _spec(netns="/proc/42/ns/net")
    assert {n.type: n.path for n in s.linux.namespaces}["network"] == "/proc/42/ns/net"
    extra = [oci.Mount(destination="/etc", type="bind", source="/vol", options=["rbind"]),
             oci.Mount(destination="/etc/hosts", type="bind", source="/mine", options=["rbind"])]
    dests = [m.destination for m in _spec(extra_mounts=extra).mounts]
    assert dests.index("/etc") < dests.index("/etc/resolv.conf")
    assert [m.source for m in _spec(extra_mounts=extra).mounts if m.destination == "/etc/hosts"] == ["/mine"]
