"""A real registry (Debian's docker-registry, the CNCF distribution) on 127.0.0.1 for tests
and benchmarks: its own storage root, a free port, optional htpasswd (Basic) auth."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

BINARY = "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RegistryProc:
    def __init__(self, htpasswd: tuple[str, str] | None = None):
        self.base = Path(tempfile.mkdtemp(prefix="berth-reg-", dir="/tmp"))
        self.port = free_port()
        self.auth = htpasswd
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> RegistryProc:
        auth = ""
        if self.auth:
            user, pw = self.auth
            out = subprocess.run(["htpasswd", "-Bbn", user, pw], check=True, capture_output=True, text=True).stdout
            (self.base / "htpasswd").write_text(out)
            auth = f"auth:\n  htpasswd:\n    realm: berth-test\n    path: {self.base / 'htpasswd'}\n"
        cfg = self.base / "config.yml"
        cfg.write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.base / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n{auth}")
        log = open(self.base / "registry.log", "wb")
        self.proc = subprocess.Popen([BINARY, "serve", str(cfg)], stdout=log, stderr=log)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10:
            if self.proc.poll() is not None:
                raise RuntimeError((self.base / "registry.log").read_text()[-2000:])
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
                return self
            except urllib.error.HTTPError:
                return self  # 401 with auth: it is up
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("docker-registry did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.base, ignore_errors=True)
