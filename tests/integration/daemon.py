"""A real berthd on temporary roots, for integration tests and benchmarks."""

from __future__ import annotations

import http.client
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

DOCKER = "/usr/local/bin/docker"


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 30):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def suite_args() -> list[str]:
    """berthd flags every suite daemon takes: ``BERTH_TEST_DAEMON_ARGS`` (e.g.
    ``--userns-default auto``: the suite with user namespaces), for the session's berthd and
    the daemons tests start of their own when nothing about them needs the host's defaults."""
    return shlex.split(os.environ.get("BERTH_TEST_DAEMON_ARGS", ""))


class Daemon:
    def __init__(self, base: Path | None = None, env: dict[str, str] | None = None, netns: str = "",
                 args: list[str] | None = None, code: Path | None = None, mountns: str = ""):
        self.code = code or ROOT  # the tree whose berth runs (another version: upgrade tests)
        self.extra_env = env or {}
        self.extra_args = list(args or [])  # more berthd flags, e.g. ["--live-restore=false"]
        self.netns = netns      # a named netns (``ip netns add``) berthd runs in; "" = the host's
        self.mountns = mountns  # a mount namespace's file (/proc/PID/ns/mnt) berthd runs in; "" = the host's
        # Short paths: the shims' sockets live under the exec root (AF_UNIX paths are short).
        self.base = Path(base or tempfile.mkdtemp(prefix="berth-", dir="/tmp"))
        self.data_root = self.base / "data"
        self.exec_root = self.base / "run"
        self.sock = self.base / "berth.sock"
        self.log = self.base / "berthd.log"
        # the pods' CNI configs: the daemon's own, empty unless a test writes one (never the
        # host's /etc/cni/net.d, which podman or a CNI install may fill); unless args name one
        self.cni_conf_dir = self.base / "cni" / "net.d"
        self.proc: subprocess.Popen[bytes] | None = None
        self.launcher: list[str] = []  # runs before berthd and execs it (socket activation's LISTEN_PID)
        self.popen_kwargs: dict = {}  # e.g. pass_fds and preexec_fn for sockets handed in

    @property
    def subid_env(self) -> dict[str, str]:
        """User namespaces take their ids from files of this daemon's, never the host's
        /etc/subuid and /etc/subgid (berth adds its line at first use)."""
        return {"BERTH_SUBUID_FILE": str(self.base / "subuid"), "BERTH_SUBGID_FILE": str(self.base / "subgid")}

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DOCKER_HOST"] = self.host
        env["BERTH_HOST"] = self.host
        env.pop("DOCKER_CONTEXT", None)
        return env

    def start(self, timeout: float = 10, poll: float = 0.005) -> float:
        """Start berthd; returns seconds until /_ping answered (asked every ``poll`` s)."""
        t0 = time.monotonic()
        logf = open(self.log, "ab")
        # nsenter switches only the network namespace (``ip netns exec`` would also remount
        # /sys, hiding the cgroup mounts); it execs, so proc.pid is berthd's.
        enter = ["nsenter", f"--net=/run/netns/{self.netns}", "--"] if self.netns else []
        if self.mountns:
            enter = ["nsenter", f"--mount={self.mountns}", *(enter[1:] or ["--"])]
        self.proc = subprocess.Popen(
            [*enter, *self.launcher, sys.executable, "-m", "berth.daemon.main", "-H", self.host, "--data-root", str(self.data_root),
             "--exec-root", str(self.exec_root), "--log-level", "debug", *self._own_cni(), *self.extra_args],
            stdout=logf, stderr=logf, cwd=self.code, env={**os.environ, **self.subid_env, **self.extra_env},
            **self.popen_kwargs)
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"berthd exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if self.request("GET", "/_ping")[0] == 200:
                    return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(poll)
        raise RuntimeError(f"berthd did not answer /_ping: {self.log.read_text()[-3000:]}")

    def _own_cni(self) -> list[str]:
        """``--cni-conf-dir`` of the daemon's own, unless its arguments name one or its tree
        (an older berth's, in upgrade tests) has no such flag."""
        if any(a.split("=", 1)[0] == "--cni-conf-dir" for a in self.extra_args):
            return []
        try:
            if "cni-conf-dir" not in (self.code / "berth" / "daemon" / "config.py").read_text():
                return []
        except OSError:
            return []
        self.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        return ["--cni-conf-dir", str(self.cni_conf_dir)]

    def docker(self, *args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The real docker CLI against this berthd; its output as text, never raising."""
        return subprocess.run([DOCKER, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                              input=input)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, bytes]:
        c = _UnixHTTP(str(self.sock), timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def import_busybox(self, name: str = "busybox:latest") -> str:
        tar = self.base / "rootfs.tar"
        if not tar.exists():
            subprocess.run([str(ROOT / "scripts" / "mkrootfs.sh"), str(tar)], check=True)
        repo, _, tag = name.partition(":")
        q = f"fromSrc=-&repo={repo}&tag={tag or 'latest'}&changes=CMD%20%5B%22sh%22%5D"
        status, body = self.request("POST", f"/images/create?{q}", tar.read_bytes())
        assert status == 200, body
        return body.decode()

    def remove_all_containers(self) -> None:
        import json
        status, body = self.request("GET", "/containers/json?all=1")
        if status != 200:
            return
        for c in json.loads(body):
            self.request("DELETE", f"/containers/{c['Id']}?force=1")

    def shim_pids(self) -> list[int]:
        """Live shims of this daemon (their cmdline names our fork server's socket)."""
        needle = f"{self.exec_root}/forkserver.sock".encode()
        out = []
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                if open(f"/proc/{p}/comm", "rb").read().strip() == b"berth-shim" and \
                        needle in open(f"/proc/{p}/cmdline", "rb").read():
                    out.append(int(p))
            except OSError:
                continue
        return out

    def _kill_leftovers(self) -> None:
        """A failed test must not leak containers: kill what berthd left behind, by cgroup."""
        ids = [p.name for p in (self.data_root / "containers").glob("*")] if self.data_root.exists() else []
        for cid in ids:
            for ctrl in ("freezer", "pids", "memory", "cpu", "cpuacct", "cpuset", "devices", "blkio",
                         "systemd", "unified", ""):
                cg = Path("/sys/fs/cgroup") / ctrl / "berth" / cid
                if not cg.is_dir():
                    continue
                if (cg / "freezer.state").exists():
                    (cg / "freezer.state").write_text("THAWED")
                for pid in (cg / "cgroup.procs").read_text().split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        for pid in self.shim_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
        for cid in ids:
            for cg in Path("/sys/fs/cgroup").glob(f"*/berth/{cid}"):
                try:
                    cg.rmdir()
                except OSError:
                    pass

    leaks: list[str] = []  # what any daemon's cleanup found left behind (checked at session end)

    def _find_leaks(self) -> list[str]:
        found = []
        deadline = time.monotonic() + 3
        while self.shim_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.shim_pids():
            found.append(f"shims {self.shim_pids()} of {self.base}")
        try:
            netns = ["-n", self.netns] if self.netns else []
            links = subprocess.run(["ip", *netns, "-d", "link", "show"], capture_output=True, text=True).stdout
        except OSError:
            links = ""
        if f"alias berth:{self.data_root}\n" in links:
            found.append(f"a bridge of {self.data_root}")
        with open("/proc/self/mountinfo") as f:
            if any(str(self.base) in line for line in f):
                found.append(f"mounts under {self.base}")
        return found

    def cleanup(self) -> None:
        """Remove everything: containers (and so their shims and cgroups), then the roots.

        Anything still there once every container was removed and berthd stopped is a leak:
        it is recorded in Daemon.leaks (the session fails on it) and then removed.
        """
        removed = False
        try:
            if self.proc and self.proc.poll() is None:
                self.remove_all_containers()
                removed = True
        finally:
            self.stop()
            if removed:
                Daemon.leaks.extend(self._find_leaks())
            self._kill_leftovers()
            shutil.rmtree(self.base, ignore_errors=True)


@contextmanager
def running(d: Daemon, busybox: bool = True) -> Iterator[Daemon]:
    """``d`` started (with busybox imported), then cleaned up however the test left it: a
    berthd the test killed is started again first, so that its containers are removed."""
    d.start()
    try:
        if busybox:
            d.import_busybox()
        yield d
    finally:
        try:
            if d.proc is None or d.proc.poll() is not None:
                d.start()
        finally:
            d.cleanup()
