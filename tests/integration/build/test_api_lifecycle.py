"""A build's life beyond the happy path: a client that hangs up, berthd killed mid-build,
contexts from a git URL."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from tests.integration.build._api import build, containers_all, error, run_output, tar_of, text
from tests.integration.daemon import Daemon, suite_args

pytestmark = pytest.mark.root

SLOW = "FROM busybox\nRUN echo started; sleep 60\n"


def _start_build(d: Daemon, body: bytes) -> socket.socket:
    """Send a build request and wait until its RUN container runs; returns the socket."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(d.sock))
    s.sendall(b"POST /build?nocache=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    s.settimeout(30)
    got = b""
    while b"started" not in got:
        chunk = s.recv(65536)
        assert chunk, got
        got += chunk
    return s


def _build_containers(d: Daemon) -> list[dict]:
    return [c for c in containers_all(d) if "berth.build" in (c.get("Labels") or {})]


def test_client_hangup_cancels_the_build(berthd, busybox):
    s = _start_build(berthd, tar_of({"Dockerfile": SLOW}))
    assert len(_build_containers(berthd)) == 1
    t0 = time.monotonic()
    s.close()
    while _build_containers(berthd) and time.monotonic() - t0 < 15:
        time.sleep(0.1)
    assert _build_containers(berthd) == []
    assert time.monotonic() - t0 < 15
    assert os.listdir(berthd.data_root / "build" / "tmp") == []


def test_kill9_mid_build_leaves_no_image_and_is_swept():
    d = Daemon(args=suite_args())
    d.start()
    try:
        d.import_busybox("busybox:latest")
        s = _start_build(d, tar_of({"Dockerfile": SLOW + "RUN true\n"}))
        s.close()
        d.kill9()
        tmp = d.data_root / "build" / "tmp"
        assert os.listdir(tmp)  # the context was there
        # a big context left behind too; its delete is timed on a copy of it, side by side
        _files(tmp / "big", 20000)
        _files(d.base / "ref", 20000)
        t0 = time.monotonic()
        shutil.rmtree(d.base / "ref")
        rmtree_ms = (time.monotonic() - t0) * 1000
        d.start()
        deadline = time.monotonic() + 15
        while _build_containers(d) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _build_containers(d) == []
        assert os.listdir(d.data_root / "build" / "tmp") == []
        # the sweep deleted it off the loop: the wiring (where it is swept) took less than the delete
        wiring = float(re.findall(r"start-up: listening at .*?wiring (\d+) ms", d.log.read_text())[-1])
        assert wiring < rmtree_ms / 2, (wiring, rmtree_ms)
        while list((d.data_root / "build").glob(".tmp.swept-*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list((d.data_root / "build").glob(".tmp.swept-*")) == []
        st, out = d.request("GET", "/images/json")
        assert b"busybox:latest" in out and out.count(b'"Id"') == 1, out
    finally:
        d.cleanup()


def _files(top, n: int) -> None:
    for i in range(n):
        if i % 100 == 0:
            (top / str(i // 100)).mkdir(parents=True)
        (top / str(i // 100) / str(i)).write_bytes(b"x")


def test_git_remote_context(berthd, busybox, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "Dockerfile").write_text("FROM busybox\nCOPY hello.txt /hello.txt\n")
    (repo / "hello.txt").write_text("from git\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    for cmd in (["init", "-q"], ["add", "."], ["commit", "-qm", "x"]):
        subprocess.run(["git", "-C", str(repo), *cmd], check=True, env=env)
    st, msgs = build(berthd, b"", f"remote=file://{repo}&t=apitest/git")
    assert st == 200 and "error" not in msgs[-1], msgs
    assert run_output(berthd, "apitest/git", ["cat", "/hello.txt"]) == "from git\n"


def test_dockerfile_from_body_without_tar(berthd, busybox):
    st, msgs = build(berthd, b"FROM busybox\nRUN echo bare\n", "nocache=1")
    assert st == 200 and "bare\n" in text(msgs), msgs


def test_pull_missing_base_fails_cleanly(berthd, busybox):
    st, msgs = build(berthd, tar_of({"Dockerfile": "FROM 127.0.0.1:9/nothing/here\nRUN true\n"}))
    assert st == 200
    assert error(msgs)["error"]
