"""daemon.json (issue 13) against a real berthd: an operator's file starts berthd unchanged and
its defaults reach new containers; bad files and conflicting flags refuse to start, naming the
key; SIGHUP reloads (a broken file keeps the configuration in force); docker info shows it; a
Docker Hub mirror is tried in order (two local registries)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.integration.daemon import ROOT, Daemon

DOCKER = "/usr/local/bin/docker"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs uid 0")


class ConfiguredDaemon(Daemon):
    """berthd started with nothing but ``--config-file`` (the file names the roots and socket)."""

    def __init__(self, conf: dict[str, Any], flags: list[str] | None = None):
        super().__init__()
        self.conf_path = self.base / "daemon.json"
        self.flags = flags or []
        self.write({"hosts": [self.host], "data-root": str(self.data_root), "exec-root": str(self.exec_root),
                    **conf})

    def write(self, conf: dict[str, Any] | str) -> None:
        self.conf_path.write_text(conf if isinstance(conf, str) else json.dumps(conf, indent=2))

    def start(self, timeout: float = 10) -> float:
        t0 = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "berth.daemon.main", "--config-file", str(self.conf_path),
                                      *self.flags], stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, cwd=ROOT)
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"berthd exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if self.request("GET", "/_ping")[0] == 200:
                    return time.monotonic() - t0
            except OSError:
                time.sleep(0.01)
        raise RuntimeError(f"berthd did not answer: {self.log.read_text()[-3000:]}")

    def info(self) -> dict[str, Any]:
        status, body = self.request("GET", "/info")
        assert status == 200, body
        out: dict[str, Any] = json.loads(body)
        return out

    def docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DOCKER, *args], env=self.env, capture_output=True, text=True, timeout=60)


def refused(tmp_path: Path, conf: str, *flags: str, untouched: bool = True) -> str:
    """berthd's stderr when it refuses to start with ``conf`` as its daemon.json (``untouched``:
    before it made its data root)."""
    f = tmp_path / "daemon.json"
    f.write_text(conf)
    p = subprocess.run([sys.executable, "-m", "berth.daemon.main", "--config-file", str(f),
                        "--data-root", str(tmp_path / "data"), "--exec-root", str(tmp_path / "run"), *flags],
                       capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert p.returncode != 0, p.stderr
    assert not untouched or not (tmp_path / "data").exists()
    return p.stderr


# An operator's daemon.json from a Docker host (keys berth supports), unchanged but for the roots.
OPERATOR = {
    "debug": False, "log-level": "info", "labels": ["env=prod", "rack=r1"], "live-restore": True,
    "log-driver": "json-file", "log-opts": {"max-size": "10k", "max-file": "3"},
    "default-ulimits": {"nofile": {"Name": "nofile", "Hard": 2048, "Soft": 1536}},
    "default-shm-size": "128M", "dns": ["192.0.2.53"], "dns-search": ["corp.example"], "dns-opts": ["ndots:2"],
    "insecure-registries": ["10.9.0.0/16", "registry.corp.example:5000"],
    "registry-mirrors": ["https://mirror.corp.example"], "max-concurrent-downloads": 3,
    "max-concurrent-uploads": 2, "exec-opts": ["native.cgroupdriver=cgroupfs"], "mtu": 1450,
    "default-address-pools": [{"base": "10.123.0.0/16", "size": 24}], "icc": True, "ip-masq": True,
    "iptables": True, "ip-forward": True, "userland-proxy": False, "shutdown-timeout": 15,
    "no-new-privileges": False, "init": False, "default-cgroupns-mode": "private",
    "default-ipc-mode": "shareable",
}


@pytest.fixture(scope="module")
def operator() -> Iterator[ConfiguredDaemon]:
    d = ConfiguredDaemon(OPERATOR)
    d.start()
    try:
        d.import_busybox()
        yield d
    finally:
        d.cleanup()


def test_docker_info_reflects_the_file(operator: ConfiguredDaemon) -> None:
    info = operator.info()
    assert info["Labels"] == ["env=prod", "rack=r1"]
    assert info["LiveRestoreEnabled"] is True and info["CgroupDriver"] == "cgroupfs"
    assert info["Runtimes"]["berth"] and info["DefaultRuntime"] == "berth"  # berth's own; runc when on the PATH
    reg = info["RegistryConfig"]
    assert reg["InsecureRegistryCIDRs"] == ["127.0.0.0/8", "10.9.0.0/16"]
    assert reg["Mirrors"] == ["https://mirror.corp.example/"]
    assert reg["IndexConfigs"]["registry.corp.example:5000"]["Secure"] is False
    assert reg["IndexConfigs"]["docker.io"]["Mirrors"] == ["https://mirror.corp.example/"]
    out = operator.docker("info", "--format", "{{json .RegistryConfig.Mirrors}} {{.LoggingDriver}} {{json .Labels}}")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '["https://mirror.corp.example/"] json-file ["env=prod","rack=r1"]'


def test_default_ipc_mode_shareable(operator: ConfiguredDaemon) -> None:
    """dockerd's default-ipc-mode: a container created without --ipc is shareable (recorded in
    HostConfig.IpcMode), so another joins it and reads its /dev/shm."""
    out = operator.docker("run", "-d", "busybox", "sh", "-c", "echo seg > /dev/shm/f && sleep 300")
    assert out.returncode == 0, out.stderr
    cid = out.stdout.strip()
    try:
        assert operator.docker("inspect", "-f", "{{.HostConfig.IpcMode}}", cid).stdout.strip() == "shareable"
        got = operator.docker("run", "--rm", "--ipc", f"container:{cid}", "busybox", "sh", "-c",
                              "until [ -e /dev/shm/f ]; do sleep 0.05; done; cat /dev/shm/f")
        assert (got.returncode, got.stdout) == (0, "seg\n"), got.stderr
    finally:
        operator.docker("rm", "-f", cid)


def test_defaults_reach_new_containers(operator: ConfiguredDaemon) -> None:
    script = "ulimit -Sn; ulimit -Hn; df -k /dev/shm | tail -1; cat /etc/resolv.conf"
    out = operator.docker("run", "--rm", "busybox", "sh", "-c", script)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:2] == ["1536", "2048"]
    assert lines[2].split()[1] == str(128 * 1024)
    assert "nameserver 192.0.2.53" in out.stdout and "search corp.example" in out.stdout
    assert "options ndots:2" in out.stdout
    # the container's own settings win over the daemon's
    out = operator.docker("run", "--rm", "--ulimit", "nofile=100:200", "--shm-size", "8m", "busybox", "sh", "-c",
                          "ulimit -Sn; df -k /dev/shm | tail -1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "100" and out.stdout.splitlines()[1].split()[1] == "8192"


def test_log_opts_rotate_a_chatty_container(operator: ConfiguredDaemon) -> None:
    out = operator.docker("run", "-d", "busybox", "sh", "-c",
                          "i=0; while [ $i -lt 3000 ]; do echo line-$i-xxxxxxxxxxxxxxxx; i=$((i+1)); done")
    assert out.returncode == 0, out.stderr
    cid = out.stdout.strip()
    try:
        assert operator.docker("wait", cid).stdout.strip() == "0"
        lc = json.loads(operator.docker("inspect", "--format", "{{json .HostConfig.LogConfig}}", cid).stdout)
        assert lc == {"Type": "json-file", "Config": {"max-size": "10k", "max-file": "3"}}
        files = sorted(p.name for p in (operator.data_root / "containers" / cid).glob(f"{cid}-json.log*"))
        assert files == [f"{cid}-json.log", f"{cid}-json.log.1", f"{cid}-json.log.2"]
        for name in files:
            # rotated at the record that reached max-size, as dockerd does
            assert (operator.data_root / "containers" / cid / name).stat().st_size <= 10 * 1024 + 200
    finally:
        operator.docker("rm", "-f", cid)


def test_address_pool_for_new_networks(operator: ConfiguredDaemon) -> None:
    out = operator.docker("network", "create", "pooled")
    assert out.returncode == 0, out.stderr
    try:
        subnet = operator.docker("network", "inspect", "--format", "{{(index .IPAM.Config 0).Subnet}}", "pooled")
        assert subnet.stdout.strip().startswith("10.123.") and subnet.stdout.strip().endswith("/24")
    finally:
        operator.docker("network", "rm", "pooled")


@pytest.mark.parametrize("conf,flags,words", [
    ('{"debug": true,', [], ["unable to configure the Docker daemon with file", "line 1"]),
    ('{"debug": true, "no-such-key": 1}', [], ["don't match any configuration option: no-such-key"]),
    ('{"debug": true}', ["--debug"], ["specified both as a flag and in the configuration file: "
                                      "debug: (from flag: true, from file: true)"]),
    ('{"labels": ["a=b"]}', ["--label", "c=d"], ["labels: (from flag: [c=d], from file: [a=b])"]),
    ('{"debug": "yes"}', [], ['"debug"', "boolean"]),
    ('{"mtu": 20}', [], ["mtu"]),
    ('{"log-opts": {"max-size": "lots"}}', [], ['"log-opts"', "lots"]),
    ('{"default-ulimits": {"nofile": {"Name": "nofile", "Soft": 10, "Hard": 5}}}', [], ['"default-ulimits"']),
    ('{"exec-opts": ["native.cgroupdriver=systemd"]}', [], ['"exec-opts"', "systemd is not supported"]),
    ('{"registry-mirrors": ["ftp://m"]}', [], ['"registry-mirrors"']),
    ('{"default-runtime": "crun"}', [], ["default runtime 'crun' does not exist"]),
])
def test_bad_configuration_refuses_to_start(tmp_path: Path, conf: str, flags: list[str], words: list[str]) -> None:
    err = refused(tmp_path, conf, *flags)
    for w in words:
        assert w in err, err


def test_address_pool_over_a_host_route_is_refused(tmp_path: Path) -> None:
    """A pool whose every subnet is already a route of the host (a bridge made here)."""
    link = f"bcfg{os.getpid() % 10000}"
    subprocess.run(["ip", "link", "add", link, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", "10.251.7.1/24", "dev", link], check=True)
        subprocess.run(["ip", "link", "set", link, "up"], check=True)
        err = refused(tmp_path, json.dumps({"hosts": [f"unix://{tmp_path}/s.sock"],
                                            "default-address-pools": [{"base": "10.251.7.0/24", "size": 24}]}),
                      untouched=False)
        assert '"default-address-pools"' in err and "10.251.7.0/24 overlaps with the host route" in err, err
    finally:
        subprocess.run(["ip", "link", "del", link], check=True)


def test_sighup_reloads_and_a_broken_file_keeps_the_configuration() -> None:
    d = ConfiguredDaemon({"labels": ["a=1"], "max-concurrent-downloads": 3})
    try:
        d.start()
        assert d.proc is not None
        assert d.info()["Labels"] == ["a=1"] and d.info()["Debug"] is False
        d.write({"hosts": [d.host], "data-root": str(d.data_root), "exec-root": str(d.exec_root),
                 "labels": ["a=2", "b=3"], "debug": True, "registry-mirrors": ["http://127.0.0.1:5999"],
                 "live-restore": False})
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while d.info()["Labels"] != ["a=2", "b=3"] and time.monotonic() < deadline:
            time.sleep(0.05)
        info = d.info()
        assert info["Labels"] == ["a=2", "b=3"] and info["Debug"] is True and info["LiveRestoreEnabled"] is False
        assert info["RegistryConfig"]["Mirrors"] == ["http://127.0.0.1:5999/"]
        assert "reloaded labels: ['a=2', 'b=3']" in d.log.read_text()
        d.write('{"labels": ["broken"')
        d.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "keeping the current one" not in d.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "keeping the current one" in d.log.read_text()
        assert d.proc.poll() is None and d.info()["Labels"] == ["a=2", "b=3"]
    finally:
        d.cleanup()


def test_registry_mirrors_are_tried_in_order(operator: ConfiguredDaemon) -> None:
    """Two local registries as Docker Hub mirrors: the first lacks the image, the second has it."""
    from tests.integration.images.registry_proc import RegistryProc
    empty, full = RegistryProc().start(), RegistryProc().start()
    d: ConfiguredDaemon | None = None
    try:
        ref = f"{full.host}/library/mirrored:1"
        assert operator.docker("tag", "busybox", ref).returncode == 0
        out = operator.docker("push", ref)
        assert out.returncode == 0, out.stderr
        operator.docker("rmi", ref)
        d = ConfiguredDaemon({"registry-mirrors": [f"http://{empty.host}", f"http://{full.host}"]})
        d.start()
        out = d.docker("pull", "mirrored:1")
        assert out.returncode == 0, out.stderr
        assert "Downloaded newer image for mirrored:1" in out.stdout
        assert d.docker("run", "--rm", "mirrored:1", "true").returncode == 0
        assert f"mirror {empty.host} failed" in d.log.read_text()
    finally:
        if d is not None:
            d.cleanup()
        empty.stop()
        full.stop()
