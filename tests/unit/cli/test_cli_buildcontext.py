"""The client side of a build: .dockerignore matching and the context tar the CLI streams."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from berth.client import buildcontext as bc
from berth.schema.dockerignore import Matcher, parse


def test_parse_cleans_like_docker():
    assert parse("# comment\n\n /a/b/ \n!./keep\n./x/../y\n**/tmp\n") == ["a/b", "!keep", "y", "**/tmp"]


@pytest.mark.parametrize("patterns,path,excluded", [
    (["*.log"], "a.log", True),
    (["*.log"], "dir/a.log", False),          # * does not cross /
    (["**/*.log"], "dir/sub/a.log", True),
    (["**/*.log"], "a.log", True),
    (["dir"], "dir/deep/file", True),         # a parent matches
    (["dir", "!dir/keep"], "dir/keep", False),
    (["dir", "!dir/keep"], "dir/other", True),
    (["*", "!Dockerfile"], "Dockerfile", False),
    (["a?c"], "abc", True),
    (["a?c"], "a/c", False),
    (["[a-c]x"], "bx", True),
    (["[!a-c]x"], "bx", True),               # Docker passes classes to Go's regexp: "!" is a member, "^" negates
    (["[^a-c]x"], "bx", False),
    (["docs/**"], "docs/x/y", True),
    (["docs/**"], "docsx", False),
])
def test_matcher(patterns, path, excluded):
    assert Matcher(patterns).excluded(path) is excluded


def test_descends_only_where_an_exception_may_match():
    m = Matcher(["dir", "!dir/keep/this"])
    assert m.may_contain_included("dir") and m.may_contain_included("dir/keep")
    assert not m.may_contain_included("dir/other")
    assert not Matcher(["dir"]).may_contain_included("dir")


def _members(blocks) -> dict[str, tarfile.TarInfo]:
    data = b"".join(blocks)
    assert len(data) % 512 == 0
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_dir_tar_applies_dockerignore_and_keeps_dockerfile(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM x\n")
    (tmp_path / ".dockerignore").write_text("Dockerfile\n*.log\nsub\n!sub/keep\n")
    for name in ("a.log", "b.txt", "sub/drop", "sub/keep"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(name)
    os.link(tmp_path / "b.txt", tmp_path / "hard")
    os.symlink("/etc/passwd", tmp_path / "sym")
    stats = bc.Stats()
    members = _members(bc.dir_tar(str(tmp_path), "Dockerfile", None, "", stats))
    assert sorted(members) == [".dockerignore", "Dockerfile", "b.txt", "hard", "sub/keep", "sym"]
    assert members["hard"].islnk() and members["hard"].linkname == "b.txt"
    assert members["sym"].issym() and members["sym"].linkname == "/etc/passwd"
    assert all(m.uid == 0 and m.gid == 0 for m in members.values())
    assert stats.sent % 512 == 0 and stats.sent > 0


def test_dockerfile_outside_context_gets_random_name_and_is_ignored(tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_text("x")
    other = tmp_path / "other.df"
    other.write_text("FROM y\n")
    rel, outside = bc.resolve_dockerfile(str(ctx), str(other))
    assert rel == "" and outside == str(other)
    name = bc.random_dockerfile_name()
    assert name.startswith(".dockerfile.") and len(name) == len(".dockerfile.") + 20
    data = b"".join(bc.dir_tar(str(ctx), "", b"FROM y\n", name, bc.Stats()))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.extractfile(name).read() == b"FROM y\n"
        assert tar.extractfile(".dockerignore").read().split() == [b".dockerignore", name.encode()]


def test_missing_dockerfile_is_reported(tmp_path):
    with pytest.raises(bc.ContextError, match="Cannot locate specified Dockerfile: Dockerfile"):
        bc.resolve_dockerfile(str(tmp_path), "")


def test_stdin_sniffing():
    assert bc.is_archive(b"\x1f\x8b\x08rest")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("x"))
    assert bc.is_archive(buf.getvalue()[:512])
    assert not bc.is_archive(b"FROM busybox\n" + b" " * 600)
