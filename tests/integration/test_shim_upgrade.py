"""Live restore across an upgrade (and a downgrade): shims started by one berth version keep
serving the next berthd, over the shim protocol (berth/runtime/shim/protocol.py).

The other version is real code: berth as of PROTOCOL_1 (the last commit whose berthd and shim
spoke unversioned JSON dicts) is extracted from git into a temp dir; a berthd run from there
starts containers (its fork server and shims run that tree too), is stopped with live restore
on, and a berthd of this tree takes over the same roots — then the reverse. The second berthd
then drives every request of the protocol against the first one's shims: exec (output, stdin,
exit code), resize, attach, wait, kill/stop, and the exit record of a container that exits
under it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker as dockerpy
import pytest

from tests.integration.daemon import ROOT, Daemon

pytestmark = pytest.mark.root
DOCKER = "/usr/local/bin/docker"
PROTOCOL_1 = "45c91bb"


@pytest.fixture(scope="module")
def old_tree() -> Iterator[Path]:
    """berth as of PROTOCOL_1, extracted from git (skips without the history)."""
    tmp = Path(tempfile.mkdtemp(prefix="berth-old-"))
    try:
        try:
            tar = subprocess.run(["git", "-C", str(ROOT), "archive", PROTOCOL_1, "berth"],
                                 capture_output=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            pytest.skip(f"no git history with {PROTOCOL_1}")
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=tar, check=True)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _ok(d: Daemon, *args: str, input: str | None = None) -> str:
    p = d.docker(*args, input=input)
    assert p.returncode == 0, f"docker {' '.join(args)}: {p.stderr}"
    return p.stdout


def _state(d: Daemon, name: str) -> dict:
    status, body = d.request("GET", f"/containers/{name}/json")
    assert status == 200, body
    return json.loads(body)["State"]


def _shim_trees(d: Daemon) -> set[str]:
    """The trees the daemon's shims run (the fork server's cwd, inherited from berthd's)."""
    return {os.readlink(f"/proc/{p}/cwd") for p in d.shim_pids()}


def _handover(first: Path, second: Path) -> None:
    d = Daemon(code=first)
    d.start()
    try:
        d.import_busybox()
        _ok(d, "run", "-d", "--name", "long", "busybox", "sh", "-c", "echo started; exec sleep 300")
        _ok(d, "run", "-dit", "--name", "term", "busybox", "sh")
        _ok(d, "run", "-di", "--name", "cat", "busybox", "cat")
        _ok(d, "run", "-d", "--name", "later", "busybox", "sh", "-c", "sleep 6; echo bye; exit 3")
        pids = {n: _state(d, n)["Pid"] for n in ("long", "term", "cat", "later")}
        assert _shim_trees(d) == {str(first)}

        d.stop()  # live restore: the containers and their shims stay
        d.code = second
        d.start()
        assert _shim_trees(d) == {str(first)}, "the first version's shims were replaced"
        for name, pid in pids.items():
            st = _state(d, name)
            assert st["Running"] and st["Pid"] == pid, (name, st)
        _drive(d)
    finally:
        d.cleanup()


def _drive(d: Daemon) -> None:
    """Every shim request, from this berthd to the other version's shims."""
    p = d.docker("exec", "long", "sh", "-c", "echo out; echo err >&2; exit 5")  # Exec, its stream, EXIT
    assert (p.returncode, p.stdout, p.stderr) == (5, "out\n", "err\n")
    assert _ok(d, "exec", "-i", "long", "cat", input="to stdin\n") == "to stdin\n"
    p = d.docker("exec", "long", "nope-not-here")  # an ExecReply with an error
    assert p.returncode == 126 and 'exec: "nope-not-here": executable file not found' in p.stdout + p.stderr

    status, body = d.request("POST", "/containers/term/resize?h=31&w=97")  # Resize
    assert status == 200, body
    assert _ok(d, "exec", "term", "sh", "-c", "stty size < /proc/1/fd/0").split() == ["31", "97"]

    client = dockerpy.DockerClient(base_url=d.host, timeout=30)  # Attach: stdin up, frames down
    try:
        sock = client.api.attach_socket("cat", params={"stdin": 1, "stdout": 1, "stream": 1})
        raw = sock._sock  # type: ignore[attr-defined]
        raw.sendall(b"through attach\n")
        got = b""
        deadline = time.monotonic() + 10
        while b"through attach\n" not in got and time.monotonic() < deadline:
            got += raw.recv(4096)
        assert got == b"\x01\x00\x00\x00\x00\x00\x00\x0fthrough attach\n"
        sock.close()
    finally:
        client.close()

    assert _ok(d, "wait", "later").strip() == "3"  # Wait, answered when the container exits
    assert _ok(d, "logs", "later") == "bye\n"
    assert _state(d, "later")["ExitCode"] == 3
    _ok(d, "stop", "-t", "1", "long")  # Kill (TERM, then KILL), then the exit record
    st = _state(d, "long")
    assert not st["Running"] and st["ExitCode"] == 137 and st["FinishedAt"] > st["StartedAt"]
    assert _ok(d, "logs", "long") == "started\n"
    _ok(d, "kill", "term")
    assert _ok(d, "wait", "term").strip() == "137"

    _ok(d, "start", "long")  # and a shim of this version for the same container
    assert _state(d, "long")["Running"]
    assert str(d.code) in _shim_trees(d)


def test_new_berthd_drives_shims_of_the_previous_version(old_tree: Path):
    _handover(old_tree, ROOT)


def test_previous_berthd_drives_shims_of_this_version(old_tree: Path):
    _handover(ROOT, old_tree)
