"""Regression guard for ``docker exec`` (issue 12): what one exec costs its shim in processes,
threads and execs, counted with ``strace -f`` on the shim host. Counts, not timings.

The shim forks the exec'd process itself, straight into the container (one fork, one
execve); an exec helper between them cost a second Python fork on every exec. If a change
needs more, it must say why and raise the bound here.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import DOCKER
from tests.integration.daemon import Daemon
from tests.integration.perf.test_start_path_guard import _traced, count_calls

pytestmark = pytest.mark.root

EXECS = 3
MAX_PROCESSES = 1  # the exec'd process, forked by the shim
MAX_EXECVE = 1     # its command
MAX_THREADS = 0


def _shim_of(berthd: Daemon, cid: str) -> int:
    pid = subprocess.run([DOCKER, "inspect", "-f", "{{.State.Pid}}", cid], env=berthd.env, check=True,
                         capture_output=True, text=True).stdout.strip()
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[1])  # the init's parent: its shim host


def test_exec_forks_one_process_and_no_helper(berthd: Daemon, busybox: str, tmp_path: Path) -> None:
    if shutil.which("strace") is None:
        pytest.fail("strace is not installed (.ci/run installs it)")
    cid = subprocess.run([DOCKER, "run", "-d", busybox, "sleep", "60"], env=berthd.env, check=True,
                         capture_output=True, text=True).stdout.strip()
    try:
        run = [DOCKER, "exec", cid, "true"]
        subprocess.run(run, env=berthd.env, check=True, capture_output=True)  # warm: the exec context
        shim = _shim_of(berthd, cid)
        out = tmp_path / "trace"
        tracer = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=clone,clone3,fork,vfork,execve",
                                   "-o", str(out), "-p", str(shim)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while not _traced(shim):
                assert time.monotonic() < deadline, "strace did not attach"
                time.sleep(0.02)
            for _ in range(EXECS):
                subprocess.run(run, env=berthd.env, check=True, capture_output=True, timeout=60)
            time.sleep(0.2)
        finally:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(10)
        per_exec = {k: v / EXECS for k, v in count_calls(out.read_text()).items()}
        assert per_exec.get("process", 0) <= MAX_PROCESSES, per_exec
        assert per_exec.get("execve", 0) <= MAX_EXECVE, per_exec
        assert per_exec.get("thread", 0) <= MAX_THREADS, per_exec
        assert per_exec.get("execve", 0) >= 1, f"nothing traced: {per_exec}"  # the guard itself works
    finally:
        subprocess.run([DOCKER, "rm", "-f", cid], env=berthd.env, capture_output=True)
