"""A step that fails shows where: its Dockerfile lines above the error, framed as BuildKit
prints them ("Dockerfile:3", ">>>"), while the error keeps the classic builder's words."""

from __future__ import annotations

import pytest

from tests.integration.build._api import build, error, tar_of, text

pytestmark = pytest.mark.root


@pytest.mark.parametrize("df,line,message", [
    ("FROM busybox\nENV A=1\nRUN echo hi; \\\n  exit 2\nCMD [\"sh\"]\n", 3,
     "The command '/bin/sh -c echo hi;   exit 2' returned a non-zero code: 2"),
    ("FROM busybox\n\n# files\nCOPY missing.txt /x\n", 4,
     "COPY failed: file not found in build context or excluded by .dockerignore: stat missing.txt: "
     "file does not exist"),
    ("FROM busybox\nCOPY --chown=nosuchuser f /f\n", 2,
     "unable to convert uid/gid chown string to host mapping: can't find uid for user nosuchuser: "
     "no such user: nosuchuser"),
])
def test_failed_step_names_its_dockerfile_line(berthd, busybox, df, line, message):
    st, msgs = build(berthd, tar_of({"Dockerfile": df, "f": "x"}), "nocache=1")
    assert st == 200
    assert error(msgs)["error"] == message
    out = text(msgs)
    lines = df.splitlines()
    assert f"Dockerfile:{line}\n--------------------\n" in out, out
    assert f"{line:>4} | >>> {lines[line - 1]}".rstrip() + "\n" in out, out
    if line > 1:
        assert f"{line - 1:>4} |     {lines[line - 2]}".rstrip() + "\n" in out, out
    assert out.endswith("--------------------\n")  # right above the error


def test_dockerfile_outside_the_context_is_called_dockerfile(berthd, busybox):
    # the CLI sends -f ../x as .dockerfile.<random>; BuildKit would say "Dockerfile:2"
    st, msgs = build(berthd, tar_of({".dockerfile.0a1b2c": "FROM busybox\nRUN exit 5\n"}),
                     "nocache=1&dockerfile=.dockerfile.0a1b2c")
    assert "Dockerfile:2\n" in text(msgs) and error(msgs)["errorDetail"]["code"] == 5


def test_parse_errors_carry_the_line(berthd, busybox):
    st, msgs = build(berthd, tar_of({"Dockerfile": "FROM busybox\nRUN true\nCOPY --nope a b\n"}))
    assert st == 400
    assert msgs[0]["message"] == "dockerfile parse error on line 3: unknown flag: nope"
