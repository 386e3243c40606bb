"""Regression guard for ``docker exec`` (issue 12): what one exec costs its shim in processes,
threads and execs, counted with ``strace -f`` on the shim host. Counts, not timings.

The shim starts the exec'd process itself, straight into the container: berth-nsexec, the C
program that sets it up, by vfork (CLONE_VM|CLONE_VFORK: no copy of the shim's page tables and
no Python in the child), then its execve and the command's (two); without it (not built, or
BERTH_NSEXEC=0) a Python child forked from the shim, one execve. An exec helper between them
cost a second Python fork on every exec. If a change needs more, it must say why and raise the
bound here.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from berth.runtime import nsexec
from tests.integration.conftest import DOCKER
from tests.integration.daemon import Daemon
from tests.integration.perf.test_start_path_guard import _traced, count_calls

pytestmark = pytest.mark.root

EXECS = 3
MAX_PROCESSES = 1  # the exec'd process, forked by the shim
MAX_EXECVE = 2     # berth-nsexec, then its command
MAX_THREADS = 0


def _shim_of(berthd: Daemon, cid: str) -> int:
    pid = subprocess.run([DOCKER, "inspect", "-f", "{{.State.Pid}}", cid], env=berthd.env, check=True,
                         capture_output=True, text=True).stdout.strip()
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[1])  # the init's parent: its shim host


def test_exec_forks_one_process_and_no_helper(berthd: Daemon, busybox: str, tmp_path: Path) -> None:
    if shutil.which("strace") is None:
        pytest.fail("strace is not installed (.ci/run installs it)")
    assert nsexec.build() is not None, "berth-nsexec does not build (.ci/run installs cc and libc6-dev)"
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
        text = out.read_text()
        per_exec = {k: v / EXECS for k, v in count_calls(text).items()}
        vforks = sum(1 for line in text.splitlines() if re.search(r"clone3?\(.*CLONE_VM\|CLONE_VFORK", line))
        assert vforks == EXECS, f"not started by vfork: {text}"  # berth-nsexec, built by make venv
        assert text.count('execve("' + str(nsexec.target())) == EXECS, text
        assert per_exec.get("process", 0) <= MAX_PROCESSES, per_exec
        assert per_exec.get("execve", 0) <= MAX_EXECVE, per_exec
        assert per_exec.get("thread", 0) <= MAX_THREADS, per_exec
        assert per_exec.get("execve", 0) >= 1, f"nothing traced: {per_exec}"  # the guard itself works
    finally:
        subprocess.run([DOCKER, "rm", "-f", cid], env=berthd.env, capture_output=True)
