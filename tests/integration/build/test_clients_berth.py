"""``berth build`` / ``berth builder prune`` against berthd, and the issue's "Bad input" cases
through the CLI: a clear error with the line, the right exit code, nothing left behind."""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import uuid

import pytest

from tests.integration.build._clients import berth, docker, snapshot, write_context

pytestmark = pytest.mark.root


@pytest.fixture
def env(berthd, busybox):
    return dict(berthd.env)


def _tag() -> str:
    return f"bb-{uuid.uuid4().hex[:8]}:latest"


def _cat(env, image: str, *paths: str) -> str:
    r = docker(env, "run", "--rm", image, "cat", *paths)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_plain_progress_tags_iidfile_and_dockerignore(env, tmp_path):
    ctx = write_context(tmp_path / "ctx", {
        "Dockerfile": "FROM busybox\nARG FROM_ENV\nARG V\nLABEL stage=one\n"
                      "RUN echo \"$V $FROM_ENV\" > /v\nCOPY . /ctx/\n",
        ".dockerignore": "*.log\nsub\n!sub/keep\n",
        "a.log": "ignored", "b.txt": "kept", "sub/drop": "x", "sub/keep": "y",
    })
    t1, t2 = _tag(), _tag()
    iid = tmp_path / "iid"
    r = berth({**env, "FROM_ENV": "fromenv"}, "build", "--progress=plain", "-t", t1, "-t", t2,
              "--build-arg", "V=val", "--build-arg", "FROM_ENV", "--label", "extra=1",
              "--iidfile", str(iid), str(ctx))
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    assert out.startswith("Sending build context to Docker daemon  ")
    assert "Step 1/7 : FROM busybox\n" in out and "Step 7/7 : LABEL" in out and f"Successfully tagged {t1}\n" in out
    image_id = iid.read_text()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", image_id)
    assert docker(env, "image", "inspect", "-f", "{{.Id}}", t2).stdout.strip() == image_id
    labels = json.loads(docker(env, "image", "inspect", "-f", "{{json .Config.Labels}}", t1).stdout)
    assert labels == {"stage": "one", "extra": "1"}
    assert _cat(env, t1, "/v") == "val fromenv\n"
    listing = docker(env, "run", "--rm", t1, "find", "/ctx", "-type", "f").stdout.split()
    assert sorted(listing) == ["/ctx/.dockerignore", "/ctx/Dockerfile", "/ctx/b.txt", "/ctx/sub/keep"]
    docker(env, "rmi", t1, t2)


def test_quiet_prints_only_the_id(env, tmp_path):
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo q > /q\n"})
    for flags in (["-q"], ["--progress=quiet"]):
        r = berth(env, "build", *flags, str(ctx))
        assert r.returncode == 0, r.stderr
        assert re.fullmatch(rb"sha256:[0-9a-f]{64}\n", r.stdout), r.stdout


def test_dockerfile_outside_context_and_from_stdin(env, tmp_path):
    ctx = write_context(tmp_path / "ctx", {"payload": "p\n"})
    outside = write_context(tmp_path / "elsewhere", {"Build.df": "FROM busybox\nCOPY . /c/\n"})
    tag = _tag()
    r = berth(env, "build", "-q", "-f", str(outside / "Build.df"), "-t", tag, str(ctx))
    assert r.returncode == 0, r.stderr
    # the CLI's random .dockerfile.<hex> is excluded from the image, as with docker
    assert docker(env, "run", "--rm", tag, "ls", "-A", "/c").stdout == "payload\n"
    r = berth(env, "build", "-q", "-f", "-", "-t", tag, str(ctx), input=b"FROM busybox\nCOPY payload /from-stdin\n")
    assert r.returncode == 0, r.stderr
    assert _cat(env, tag, "/from-stdin") == "p\n"
    docker(env, "rmi", tag)


def test_stdin_dockerfile_and_stdin_tar(env, tmp_path):
    tag = _tag()
    r = berth(env, "build", "-q", "-t", tag, "-", input=b"FROM busybox\nRUN echo stdin-df > /s\n")
    assert r.returncode == 0, r.stderr
    assert _cat(env, tag, "/s") == "stdin-df\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("Dockerfile", b"FROM busybox\nCOPY in.txt /in.txt\n"), ("in.txt", b"tarred\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    r = berth(env, "build", "-q", "-t", tag, "-", input=buf.getvalue())
    assert r.returncode == 0, r.stderr
    assert _cat(env, tag, "/in.txt") == "tarred\n"
    docker(env, "rmi", tag)


def test_secret_mount_is_visible_to_run_only(env, tmp_path):
    secret = tmp_path / "token"
    secret.write_text("s3cr3t")
    ctx = write_context(tmp_path / "ctx", {
        "Dockerfile": "FROM busybox\nRUN --mount=type=secret,id=tok cat /run/secrets/tok > /seen && "
                      "wc -c < /run/secrets/tok > /len\n"})
    tag = _tag()
    r = berth(env, "build", "-q", "--secret", f"id=tok,src={secret}", "-t", tag, str(ctx))
    assert r.returncode == 0, r.stderr
    assert _cat(env, tag, "/seen") == "s3cr3t"
    probe = docker(env, "run", "--rm", tag, "ls", "/run/secrets/tok")
    assert probe.returncode != 0
    docker(env, "rmi", tag)


def test_target_and_no_cache(env, tmp_path):
    ctx = write_context(tmp_path / "ctx", {
        "Dockerfile": "FROM busybox AS a\nRUN echo a > /a\nFROM a AS b\nRUN echo b > /b\n"})
    tag = _tag()
    assert berth(env, "build", "-q", "--target", "a", "-t", tag, str(ctx)).returncode == 0
    assert docker(env, "run", "--rm", tag, "ls", "/b").returncode != 0
    r = berth(env, "build", "--progress=plain", "--no-cache", "--target", "a", "-t", tag, str(ctx))
    assert r.returncode == 0 and b"Using cache" not in r.stdout, r.stdout
    docker(env, "rmi", tag)


def test_failing_build_exit_code_and_message(env, tmp_path, berthd):
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo out; exit 1\n"})
    r = berth(env, "build", "--progress=plain", str(ctx))
    assert r.returncode == 1
    assert b"The command '/bin/sh -c echo out; exit 1' returned a non-zero code: 1" in r.stderr
    assert b"out\n" in r.stdout


def test_bad_flags_exit_125(env, tmp_path):
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\n"})
    for args in (["--bogus"], ["--memory", "lots"], ["--progress", "fancy"], ["--add-host", "nohost"]):
        r = berth(env, "build", *args, str(ctx))
        assert r.returncode == 125, (args, r.stderr)
    r = berth(env, "build", str(tmp_path / "missing"))
    assert r.returncode == 1 and b"unable to prepare context" in r.stderr


def test_builder_prune(env, tmp_path):
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo prune-me > /p\n"})
    assert berth(env, "build", "-q", str(ctx)).returncode == 0
    r = berth(env, "builder", "prune", "-a", "-f")
    assert r.returncode == 0, r.stderr
    assert b"Total:" in r.stdout
    again = berth(env, "build", "--progress=plain", str(ctx))
    assert again.returncode == 0 and b"Using cache" not in again.stdout, again.stdout


BAD = {
    "unknown-instruction": ({"Dockerfile": "FROM busybox\nRUN true\nFOO bar\n"}, ["line 3", "unknown instruction"]),
    "bad-flag": ({"Dockerfile": "FROM busybox\nCOPY --bogus=1 a /a\n", "a": "x"}, ["line 2", "bogus"]),
    "copy-parent": ({"Dockerfile": "FROM busybox\nCOPY ../x /x\n"}, ["COPY failed"]),
    "missing-source": ({"Dockerfile": "FROM busybox\n\nCOPY nothere.txt /x\n"},
                       ["COPY failed: file not found in build context", "nothere.txt"]),
    "symlink-out": ({"Dockerfile": "FROM busybox\nCOPY link/passwd /stolen\n"}, ["COPY failed"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_through_cli(case, env, tmp_path, berthd):
    files, needles = BAD[case]
    ctx = write_context(tmp_path / "ctx", files)
    if case == "symlink-out":
        os.symlink("/etc", ctx / "link")
    before = snapshot(berthd)
    tag = _tag()
    r = berth(env, "build", "--progress=plain", "-t", tag, str(ctx))
    err = r.stderr.decode()
    assert r.returncode == 1, (r.stdout, err)
    for needle in needles:
        assert needle in err, err
    assert docker(env, "image", "inspect", tag).returncode != 0
    after = snapshot(berthd)
    assert after[0] == before[0], "containers left behind"
    assert after[2] == before[2], "mounts left behind"
    assert after[1] - before[1] == set(), "files left behind under the data root"
