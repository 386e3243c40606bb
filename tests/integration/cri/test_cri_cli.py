"""``berth cri pods|ps|images|exec|logs`` against the test berthd's CRI socket: crictl's
columns, the exit code of exec, the CRI log's lines on their streams, a gRPC error's code."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.cri.conftest import Cri, container_config, pb, pod_config
from tests.integration.daemon import ROOT, Daemon

pytestmark = pytest.mark.root


def _berth(berthd: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    sub, rest = args[0], args[1:]
    return subprocess.run([sys.executable, "-m", "berth.cli.main", "cri", sub, "--cri-socket",
                           str(berthd.exec_root / "cri.sock"), *rest], capture_output=True, text=True, env=env,
                          timeout=60)


def test_cri_cli(cri: Cri, berthd: Daemon, busybox: str, tmp_path: Path) -> None:
    cfg = pod_config(tmp_path, "clipod")
    sid = cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
    try:
        cid = cri.runtime.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=sid, sandbox_config=cfg, config=(
            container_config("talker", busybox, ["sh", "-c", "echo out-line; echo err-line >&2; exec sleep 1000"])
        ))).container_id
        cri.runtime.StartContainer(pb.StartContainerRequest(container_id=cid))
        pods = _berth(berthd, "pods")
        assert pods.returncode == 0, pods.stderr
        head, *rows = pods.stdout.splitlines()
        assert head.split() == ["POD", "ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME"]
        row = next(r for r in rows if r.startswith(sid[:13]))
        assert row.split()[-5:] == ["Ready", "clipod", "default", "0", "(default)"]
        ps = _berth(berthd, "ps")
        assert ps.returncode == 0, ps.stderr
        assert ps.stdout.splitlines()[0].split() == ["CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT",
                                                     "POD", "ID", "POD"]
        row = next(r for r in ps.stdout.splitlines() if r.startswith(cid[:13]))
        assert row.split()[-5:] == ["Running", "talker", "0", sid[:13], "clipod"]
        assert _berth(berthd, "ps", "-q").stdout.split().count(cid[:13]) == 1
        images = _berth(berthd, "images")
        assert images.stdout.splitlines()[0].split() == ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"]
        assert any(r.split()[:2] == ["busybox", "latest"] for r in images.stdout.splitlines())
        ex = _berth(berthd, "exec", cid, "sh", "-c", "echo hi; echo there >&2; exit 3")
        assert (ex.returncode, ex.stdout, ex.stderr) == (3, "hi\n", "there\n")
        deadline = time.monotonic() + 10
        while (logs := _berth(berthd, "logs", cid)).stdout != "out-line\n":
            assert time.monotonic() < deadline, (logs.stdout, logs.stderr)
            time.sleep(0.2)
        assert logs.stderr == "err-line\n" and logs.returncode == 0
        missing = _berth(berthd, "exec", "nosuchcontainer", "true")
        assert missing.returncode == 1 and "code = NOT_FOUND" in missing.stderr
    finally:
        cri.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
