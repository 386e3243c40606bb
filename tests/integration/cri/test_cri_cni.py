"""Pods on a CNI network: Debian's containernetworking-plugins (bridge, host-local, loopback,
portmap) called by a real berthd from a conflist the test writes (its own bridge name, a
private subnet, host-local's state in a tmp dir). The plugins must be installed (.ci/run
installs them): a missing one fails here.

Covers: ADD (the pod's address, its veth on the bridge, two containers sharing the namespace,
a port mapping through portmap), CHECK on the cached result (and its failure), DEL on removal (the veth and the
address go), an ADD that fails (undone, RunPodSandbox fails with the plugin's message,
nothing left), DEL after kill -9 of berthd from the cached result alone, hostNetwork pods,
ADD before the pause runs (in the namespace it then runs in), a plain loopback alongside the
plugins before it."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shlex
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from berth.network.cni import Attachment, Cni, CniError, Network
from tests.integration.cri.conftest import Cri, container_config, pb, pod_config, wait_socket
from tests.integration.daemon import Daemon, suite_args

pytestmark = pytest.mark.root

BIN = "/usr/lib/cni"
# A plugin of the test's, last in a list: at ADD it records the processes in CNI_NETNS (pid and
# executable) and the namespace's inode into its config's "record" file, and passes the result on.
PROBE = """#!/usr/bin/python3
import json, os, sys
conf = json.load(sys.stdin)
if os.environ["CNI_COMMAND"] == "ADD":
    ino = os.stat(os.environ["CNI_NETNS"]).st_ino
    procs = []
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{p}/ns/net").st_ino == ino:
                procs.append([int(p), os.readlink(f"/proc/{p}/exe")])
        except OSError:
            pass
    with open(conf["record"], "w") as f:
        json.dump({"ino": ino, "procs": procs}, f)
    json.dump(conf["prevResult"], sys.stdout)
"""
# A first plugin that waits (up to 5 s) for lo to be up in CNI_NETNS, records whether it came up,
# and answers with a result of its own.
GATE = """#!/usr/bin/python3
import json, os, subprocess, sys, time
conf = json.load(sys.stdin)
deadline = time.monotonic() + 5
while True:
    out = subprocess.run(["nsenter", "--net=" + os.environ["CNI_NETNS"], "ip", "-o", "link", "show", "lo"],
                         capture_output=True, text=True).stdout
    if ",UP" in out or time.monotonic() > deadline:
        break
    time.sleep(0.05)
with open(conf["record"], "w") as f:
    f.write("up" if ",UP" in out else "down")
json.dump({"cniVersion": conf["cniVersion"], "interfaces": [{"name": "gate0"}],
           "ips": [{"address": "10.9.9.9/24", "interface": 0}]}, sys.stdout)
"""
SERVER = "mkdir -p /www && echo hello-over-cni > /www/index.html && exec httpd -f -p 8080 -h /www"


class Net:
    """The test's CNI network: a conflist in a dir of its own, its bridge and subnet."""

    def __init__(self, base: Path):
        n = random.randrange(1, 250)
        self.bridge = f"bcni{os.getpid() % 10000}{n}"[:15]
        self.prefix = f"10.231.{n}"
        self.conf_dir = base / "net.d"
        self.ipam_dir = base / "ipam"
        self.bin_dir = base / "bin"   # the test's own plugins, before the system's
        self.conf_dir.mkdir()
        self.bin_dir.mkdir()
        (self.bin_dir / "probe").write_text(PROBE)
        (self.bin_dir / "probe").chmod(0o755)

    def write(self, *extra: dict, name: str = "10-berth-test.conflist") -> None:
        plugins = [
            {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": False,
             "ipam": {"type": "host-local", "dataDir": str(self.ipam_dir),
                      "ranges": [[{"subnet": f"{self.prefix}.0/24"}]]}},
            {"type": "loopback"},
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
            *extra]
        doc = {"cniVersion": "1.0.0", "name": "berth-test", "plugins": plugins}
        (self.conf_dir / name).write_text(json.dumps(doc))

    def allocated(self) -> list[str]:
        d = self.ipam_dir / "berth-test"
        return sorted(p.name for p in d.iterdir() if p.name[0].isdigit()) if d.exists() else []

    def veths(self) -> list[str]:
        out = subprocess.run(["ip", "-br", "link", "show", "master", self.bridge], capture_output=True, text=True)
        return [line.split()[0].split("@")[0] for line in out.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def cni_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Cri, Net]]:
    assert os.access(f"{BIN}/bridge", os.X_OK), "containernetworking-plugins is not installed"
    if os.geteuid() != 0:
        pytest.skip("needs uid 0")
    net = Net(tmp_path_factory.mktemp("cni"))
    net.write()
    had_chains = "CNI-HOSTPORT-DNAT" in _nat_rules()
    d = Daemon(args=[*suite_args(), "--cni-conf-dir", str(net.conf_dir), "--cni-bin-dir", f"{net.bin_dir}:{BIN}"])
    d.start()
    try:
        d.import_busybox("busybox:latest")
        wait_socket(d.exec_root / "cri.sock")
        c = Cri(d.exec_root / "cri.sock")
        yield d, c, net
        c.channel.close()
    finally:
        d.cleanup()
        subprocess.run(["ip", "link", "del", net.bridge], capture_output=True)
        if not had_chains:
            _drop_portmap_chains()
            assert "CNI-HOSTPORT" not in _nat_rules()


def _nat_rules() -> str:
    return subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True).stdout


def _drop_portmap_chains() -> None:
    """portmap leaves its top chains (and the jumps to them) after the last DEL."""
    for line in _nat_rules().splitlines():
        if line.startswith("-A ") and "-j CNI-HOSTPORT" in line:
            subprocess.run(["iptables", "-t", "nat", "-D", *shlex.split(line)[1:]], capture_output=True)
    for chain in ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ"):
        subprocess.run(["iptables", "-t", "nat", "-F", chain], capture_output=True)
        subprocess.run(["iptables", "-t", "nat", "-X", chain], capture_output=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _exec(cri: Cri, cid: str, *cmd: str) -> pb.ExecSyncResponse:
    return cri.runtime.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=list(cmd), timeout=20))


def _get(url: str) -> bytes:
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                return bytes(r.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_pod_on_cni_network(cni_env: tuple[Daemon, Cri, Net], tmp_path: Path) -> None:
    d, cri, net = cni_env
    port = _free_port()
    cfg = pod_config(tmp_path, "cnipod", port_mappings=[
        pb.PortMapping(protocol=pb.Protocol.TCP, container_port=8080, host_port=port)])
    sid = cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
    removed = False
    try:
        st = cri.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid)).status
        assert st.state == pb.PodSandboxState.SANDBOX_READY
        assert st.network.ip.startswith(net.prefix + "."), st.network.ip
        assert net.allocated() == [st.network.ip]
        assert len(net.veths()) == 1
        cached = json.loads((d.data_root / "cni" / "results" / f"{sid}-eth0.json").read_text())
        assert cached["result"]["ips"][0]["address"].startswith(st.network.ip + "/")
        assert [p["type"] for p in cached["config"]["plugins"]] == ["bridge", "loopback", "portmap"]
        web, talk = (cri.runtime.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=sid, sandbox_config=cfg, config=container_config(n, "busybox:latest", cmd))).container_id
            for n, cmd in (("web", ["sh", "-c", SERVER]), ("talk", ["sleep", "1000"])))
        for cid in (web, talk):
            cri.runtime.StartContainer(pb.StartContainerRequest(container_id=cid))
        addr = _exec(cri, talk, "ip", "-4", "-o", "addr", "show", "eth0").stdout.decode()
        assert f" {st.network.ip}/24 " in addr
        deadline = time.monotonic() + 10
        while (r := _exec(cri, talk, "wget", "-qO-", "http://127.0.0.1:8080/")).exit_code != 0:
            assert time.monotonic() < deadline, r.stderr
            time.sleep(0.2)
        assert r.stdout == b"hello-over-cni\n"   # the other container, on the pod's localhost
        assert _get(f"http://{st.network.ip}:8080/") == b"hello-over-cni\n"   # over the bridge
        assert f"--dport {port}" in _nat_rules()   # portmap's DNAT
        assert _get(f"http://127.0.0.1:{port}/") == b"hello-over-cni\n"   # host port, through portmap
        cri.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid))
        assert net.allocated() == [] and net.veths() == []   # DEL on stop
        assert f"--dport {port}" not in _nat_rules()
        cri.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
        removed = True
        assert not (d.data_root / "cni" / "results" / f"{sid}-eth0.json").exists()
    finally:
        if not removed:
            cri.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))


def test_failed_add_leaves_nothing(cni_env: tuple[Daemon, Cri, Net], tmp_path: Path) -> None:
    d, cri, net = cni_env
    bad = net.conf_dir / "00-bad.conflist"
    net.write({"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.no_such_knob": "1"}}, name=bad.name)
    try:
        with pytest.raises(grpc.RpcError) as e:
            cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=pod_config(tmp_path, "badnet")))
    finally:
        bad.unlink()
    assert 'plugin type="tuning" failed (add)' in (e.value.details() or ""), e.value.details()
    assert "no_such_knob" in (e.value.details() or "")
    assert not cri.runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items
    assert d.request("GET", "/containers/json?all=1")[1] == b"[]\n"
    assert net.allocated() == [] and net.veths() == []   # the plugins before tuning were undone
    assert not list((d.data_root / "cni" / "results").glob("*"))


def test_add_runs_before_the_pause(cni_env: tuple[Daemon, Cri, Net], tmp_path: Path) -> None:
    """The plugins set up the namespace the pause then runs in, before the pause runs (as
    containerd orders it; berth makes the namespace and runs ADD while the shim is spawned)."""
    d, cri, net = cni_env
    record = tmp_path / "probe.json"
    probed = net.conf_dir / "00-probed.conflist"
    net.write({"type": "probe", "record": str(record)}, name=probed.name)
    try:
        sid = cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=pod_config(tmp_path, "probed"))).pod_sandbox_id
    finally:
        probed.unlink()
    try:
        pause = json.loads(d.request("GET", f"/containers/{sid}/json")[1])["State"]["Pid"]
        seen = json.loads(record.read_text())
        assert seen["ino"] == os.stat(f"/proc/{pause}/ns/net").st_ino
        exe = os.readlink(f"/proc/{pause}/exe")
        assert [p for p in seen["procs"] if p[1] == exe] == [], (exe, seen)
        ip = cri.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid)).status.network.ip
        assert net.allocated() == [ip] and len(net.veths()) == 1
        cached = json.loads((d.data_root / "cni" / "results" / f"{sid}-eth0.json").read_text())
        assert cached["netns"] == f"/proc/{pause}/ns/net"
        assert {i.get("sandbox") for i in cached["result"]["interfaces"]} >= {f"/proc/{pause}/ns/net"}
    finally:
        cri.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    assert net.allocated() == [] and net.veths() == []


def test_loopback_runs_alongside(tmp_path: Path) -> None:
    """A plain loopback after the first plugin does not wait for it (it passes prevResult on
    unchanged): the first plugin sees lo come up while it runs; the list's result is the same."""
    if os.geteuid() != 0:
        pytest.skip("needs uid 0")
    (tmp_path / "gate").write_text(GATE)
    (tmp_path / "gate").chmod(0o755)
    ns = f"cnigate{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        net = Network("gated", "1.0.0", [{"type": "gate", "record": str(tmp_path / "lo")}, {"type": "loopback"}])
        cni = Cni(str(tmp_path), [str(tmp_path), BIN], tmp_path / "cache")
        result = asyncio.run(cni.add(net, Attachment("gatetest", f"/run/netns/{ns}")))
        assert (tmp_path / "lo").read_text() == "up"
        assert result["ips"] == [{"address": "10.9.9.9/24", "interface": 0}]
        assert json.loads((tmp_path / "cache" / "gatetest-eth0.json").read_text())["result"] == result
        asyncio.run(cni.delete("gatetest", f"/run/netns/{ns}"))
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)


def test_host_network_pod_skips_cni(cni_env: tuple[Daemon, Cri, Net], tmp_path: Path) -> None:
    d, cri, net = cni_env
    sid = cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(
        config=pod_config(tmp_path, "hostpod", host_network=True))).pod_sandbox_id
    try:
        st = cri.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid)).status
        assert st.state == pb.PodSandboxState.SANDBOX_READY
        assert st.linux.namespaces.options.network == pb.NamespaceMode.NODE
        assert net.allocated() == [] and not (d.data_root / "cni" / "results" / f"{sid}-eth0.json").exists()
        pid = json.loads(d.request("GET", f"/containers/{sid}/json")[1])["State"]["Pid"]
        assert os.readlink(f"/proc/{pid}/ns/net") == os.readlink("/proc/self/ns/net")
    finally:
        cri.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))


def test_del_after_kill9_uses_the_cache(cni_env: tuple[Daemon, Cri, Net], tmp_path: Path) -> None:
    d, cri, net = cni_env
    sid = cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=pod_config(tmp_path, "kept"))).pod_sandbox_id
    ip = cri.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid)).status.network.ip
    conf = net.conf_dir / "10-berth-test.conflist"
    saved = conf.read_text()
    cri.channel.close()
    d.kill9()
    conf.unlink()   # only the cache can say how to undo the pod now
    try:
        d.start()
        wait_socket(d.exec_root / "cri.sock")
        cri.__init__(d.exec_root / "cri.sock")  # type: ignore[misc]
        st = cri.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid)).status
        assert st.state == pb.PodSandboxState.SANDBOX_READY and st.network.ip == ip
        assert net.allocated() == [ip] and len(net.veths()) == 1
        # CHECK from the cache alone (portmap 1.1.1's CHECK of a pod with ports fails on its
        # missing IPv6 chain, containernetworking/plugins#819: this pod has none)
        asyncio.run(Cni(str(net.conf_dir), [BIN], d.data_root / "cni" / "results").check(sid))
        subprocess.run(["ip", "link", "del", net.veths()[0]], check=True)
        with pytest.raises(CniError, match='plugin type="bridge" failed \\(check\\)'):
            asyncio.run(Cni(str(net.conf_dir), [BIN], d.data_root / "cni" / "results").check(sid))
        cri.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
        assert net.allocated() == [] and net.veths() == []
    finally:
        conf.write_text(saved)


def test_kill9_between_run_and_create(cni_env: tuple[Daemon, Cri, Net], tmp_path: Path) -> None:
    """berthd dies right after RunPodSandbox: after the restart the pod is ready in the same
    namespace with the same address, and its first container joins that namespace."""
    d, cri, net = cni_env
    cfg = pod_config(tmp_path, "interrupted")
    sid = cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
    ip = cri.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid)).status.network.ip
    pause = json.loads(d.request("GET", f"/containers/{sid}/json")[1])["State"]["Pid"]
    netns = os.readlink(f"/proc/{pause}/ns/net")
    cri.channel.close()
    d.kill9()
    d.start()
    wait_socket(d.exec_root / "cri.sock")
    cri.__init__(d.exec_root / "cri.sock")  # type: ignore[misc]
    try:
        st = cri.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid)).status
        assert st.state == pb.PodSandboxState.SANDBOX_READY and st.network.ip == ip
        assert os.readlink(f"/proc/{pause}/ns/net") == netns
        cid = cri.runtime.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=sid, sandbox_config=cfg,
            config=container_config("late", "busybox:latest", ["sleep", "1000"]))).container_id
        cri.runtime.StartContainer(pb.StartContainerRequest(container_id=cid))
        pid = json.loads(d.request("GET", f"/containers/{cid}/json")[1])["State"]["Pid"]
        assert os.readlink(f"/proc/{pid}/ns/net") == netns
        assert f" {ip}/24 " in _exec(cri, cid, "ip", "-4", "-o", "addr", "show", "eth0").stdout.decode()
    finally:
        cri.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    assert net.allocated() == [] and net.veths() == []
