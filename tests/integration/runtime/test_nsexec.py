"""``docker exec`` through berth-nsexec (C, vfork) and through the Python child (BERTH_NSEXEC=0):
the same process either way. Two berthds, one per path, run the same execs into the same kind of
container (with and without user namespaces) and must agree on everything the process can see
of itself (capabilities, no_new_privs, seccomp, ids and groups, umask, cwd, rlimits, env, cgroup,
namespaces, its terminal) and on every error the client gets (words and exit code); strace of
the shim shows which path each exec took.
"""

from __future__ import annotations

import difflib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.runtime import nsexec
from tests.integration.daemon import Daemon
from tests.integration.perf.test_start_path_guard import _traced

pytestmark = pytest.mark.root
DOCKER = "/usr/local/bin/docker"
POOL = (300000, 1000000)
SELF = ("grep -E '^(Uid|Gid|Groups|NoNewPrivs|Seccomp|Seccomp_filters|Sig(Blk|Ign)|Cap(Inh|Prm|Eff|Bnd|Amb)):' /proc/self/status;"
        " umask; pwd; ulimit -n; ulimit -Hn; id; env | grep -v ^HOSTNAME= | sort")
_NS = "cat /proc/{0}/cgroup; for f in /proc/{0}/ns/*; do readlink $f; done"
# (docker exec options, command): each run on both paths, in both containers
EXECS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    ((), ("sh", "-c", SELF)),
    (("-u", "nobody"), ("sh", "-c", SELF)),
    (("-u", "1000:1000"), ("sh", "-c", SELF)),
    (("-u", "daemon:wheel"), ("sh", "-c", SELF)),
    (("--privileged",), ("sh", "-c", SELF)),
    (("-e", "FOO=bar", "-e", "HOME=/srv", "-e", "PATH=/bin", "-w", "/tmp"), ("sh", "-c", SELF)),
    (("-t",), ("sh", "-c", ": </dev/tty && tty && " + SELF)),
    (("-u", "nosuch"), ("true",)),
    (("-u", "0:nosuchgroup"), ("true",)),
    ((), ("nosuchcmd",)),
    ((), ("/etc/passwd",)),
    ((), ("/nonexistent/cmd",)),
    (("-w", "/nonexistent"), ("pwd",)),
    (("-u", "root"), ("sh", "-c", SELF)),
)


def _pair(args: list[str], userns: bool) -> list[Daemon]:
    daemons = []
    for env in ({}, {"BERTH_NSEXEC": "0"}):
        d = Daemon(args=args, env=env)
        if userns:
            d.base.mkdir(parents=True, exist_ok=True)
            for name in ("subuid", "subgid"):
                (d.base / name).write_text(f"berth:{POOL[0]}:{POOL[1]}\n")
        daemons.append(d)
    return daemons


@pytest.fixture(scope="module", params=["host", "userns"])
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[Daemon, Daemon]]:
    """(berthd with berth-nsexec, berthd with the Python child)."""
    if os.geteuid() != 0:
        pytest.skip("needs uid 0")
    assert nsexec.build() is not None, "berth-nsexec does not build (cc and libc6-dev: .ci/run installs them)"
    userns = request.param == "userns"
    daemons = _pair(["--userns-default", "auto"] if userns else [], userns)
    try:
        for d in daemons:
            d.start()
            d.import_busybox()
        yield daemons[0], daemons[1]
    finally:
        for d in daemons:
            d.cleanup()


def _shim(d: Daemon, name: str) -> tuple[int, int]:
    """(the init's pid, its shim host's)."""
    pid = int(d.docker("inspect", "-f", "{{.State.Pid}}", name).stdout)
    stat = Path(f"/proc/{pid}/stat").read_text()
    return pid, int(stat[stat.rindex(")") + 2:].split()[1])


def _normalized(d: Daemon, name: str, r: subprocess.CompletedProcess[str]) -> tuple[str, str, int]:
    cid = d.docker("inspect", "-f", "{{.Id}}", name).stdout.strip()
    out = (r.stdout + "\0" + r.stderr).replace(cid, "<id>").replace(cid[:12], "<id>").replace("\r", "")
    out = re.sub(r"/dev/pts/\d+", "/dev/pts/N", out)
    return out.split("\0")[0], out.split("\0")[1], r.returncode


def _run_all(d: Daemon, tmp: Path) -> dict[str, list[tuple[str, str, int]]]:
    """Every exec of ``EXECS`` in two containers (one with no_new_privs: seccomp loaded after the
    capabilities, not before), under strace; -> results, and the execve count of berth-nsexec."""
    results: dict[str, list[tuple[str, str, int]]] = {}
    for name, opts in (("nsx-a", ("--group-add", "1234", "--ulimit", "nofile=1000:2000")),
                       ("nsx-nnp", ("--security-opt", "no-new-privileges", "--cap-add", "SYS_PTRACE"))):
        r = d.docker("run", "-d", "--name", name, *opts, "busybox", "sleep", "120")
        assert r.returncode == 0, r.stderr
        init, shim = _shim(d, name)
        trace = tmp / f"{name}.trace"
        tracer = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=execve", "-o", str(trace), "-p", str(shim)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while not _traced(shim):
                assert time.monotonic() < deadline, "strace did not attach"
                time.sleep(0.02)
            out = [_normalized(d, name, d.docker("exec", *o, name, *cmd)) for o, cmd in EXECS]
            ns = d.docker("exec", name, "sh", "-c", _NS.format("self"))
        finally:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(10)
        init_ns = subprocess.run(["sh", "-c", _NS.format(init)],
                                 capture_output=True, text=True).stdout
        assert ns.stdout == init_ns, (ns.stdout, init_ns)  # its cgroup and all its namespaces are the init's
        spawned = trace.read_text().count("berth-nsexec-")
        results[name] = out + [("nsexec", "", min(spawned, 1))]
        d.docker("rm", "-f", name)
    return results


def test_the_c_helper_and_the_python_child_make_the_same_process(pair: tuple[Daemon, Daemon],
                                                                  tmp_path: Path) -> None:
    results = []
    for i, d in enumerate(pair):
        (tmp_path / str(i)).mkdir()
        results.append(_run_all(d, tmp_path / str(i)))
    native, python = results
    for name in native:
        assert native[name][-1][2] == 1 and python[name][-1][2] == 0, "each berthd took its own path"
        for (opts, cmd), a, b in zip(EXECS, native[name], python[name]):
            assert a == b, (name, opts, cmd, "\n".join(difflib.unified_diff(
                (a[0] + a[1]).splitlines(), (b[0] + b[1]).splitlines(), "berth-nsexec", "python", lineterm="")), a[2], b[2])
    a = [out + err for out, err, _ in native["nsx-a"]]
    codes = [code for _, _, code in native["nsx-a"]]
    status = _status(a[0])
    assert status["CapEff"] == "00000000a80425fb" and status["NoNewPrivs"] == "0", status
    assert status["Seccomp"] == "2" and status["Groups"].split()[-1] == "1234", status
    assert status["SigIgn"] == status["SigBlk"] == "0000000000000000", status  # Python ignores SIGPIPE
    assert "\n1000\n2000\n" in a[0]  # --ulimit nofile=1000:2000
    nobody = _status(a[1])
    assert nobody["Uid"].split()[0] == "65534" and nobody["CapEff"] == "0000000000000000", nobody
    assert _status(a[2])["Uid"].split()[0] == "1000" and _status(a[2])["CapEff"] == "0000000000000000"
    assert "gid=10(wheel)" in a[3] and _status(a[3])["Uid"].split()[0] == "1", a[3]
    assert _status(a[13])["Groups"].split() == ["0", "10", "1234"], a[13]  # root is in wheel; --group-add
    assert int(_status(a[4])["CapEff"], 16) > 0xa80425fb
    assert "\n/tmp\n" in a[5] and "FOO=bar\n" in a[5] and "HOME=/srv\n" in a[5] and "PATH=/bin\n" in a[5]
    assert a[6].startswith("/dev/pts/N\n") and codes[6] == 0, a[6]
    assert "unable to find user nosuch: no matching entries in passwd file" in a[7], a[7]
    assert "unable to find group nosuchgroup: no matching entries in group file" in a[8], a[8]
    assert 'exec: "nosuchcmd": executable file not found in $PATH' in a[9] and codes[9] == 126, (a[9], codes[9])
    assert 'exec: "/etc/passwd": permission denied' in a[10] and codes[10] == 126, (a[10], codes[10])
    assert "no such file or directory" in a[11] and "no such file or directory" in a[12], (a[11], a[12])
    nnp = _status(native["nsx-nnp"][0][0])
    assert nnp["NoNewPrivs"] == "1" and nnp["Seccomp"] == "2" and nnp["CapEff"] == "00000000a80c25fb", nnp


def _status(out: str) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (line.partition(":\t") for line in out.splitlines()) if v}
