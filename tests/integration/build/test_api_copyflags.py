"""COPY's BuildKit flags on the classic API: --exclude and --parents."""

from __future__ import annotations

import pytest

from tests.integration.build._api import build, run_output, tar_of

pytestmark = pytest.mark.root

FILES = {"app/a.txt": "a", "app/b.log": "b", "app/sub/c.txt": "c", "app/sub/d.log": "d",
         "x/one.txt": "1", "y/two.txt": "2", "y/skip.log": "s"}


def _files(d, image: str, root: str) -> list[str]:
    return sorted(run_output(d, image, ["find", root, "-type", "f"]).split())


def test_copy_exclude(berthd, busybox):
    df = "FROM busybox\nCOPY --exclude=*.log --exclude=sub/c.txt app /dst/\nCOPY --exclude=*.log y/* /flat/\n"
    st, msgs = build(berthd, tar_of({"Dockerfile": df, **FILES}), "nocache=1&t=apitest/exclude")
    assert "error" not in msgs[-1], msgs
    # patterns are .dockerignore's, relative to the source: "*" stays in one directory
    assert _files(berthd, "apitest/exclude", "/dst") == ["/dst/a.txt", "/dst/sub/d.log"]
    assert _files(berthd, "apitest/exclude", "/flat") == ["/flat/two.txt"]
    berthd.request("DELETE", "/images/apitest/exclude")


def test_copy_parents(berthd, busybox):
    df = ("FROM busybox\nCOPY --parents x/one.txt y/two.txt /keep/\nCOPY --parents ./app/./sub /pivot/\n"
          "COPY --parents --exclude=**/*.log app /both/\n")
    st, msgs = build(berthd, tar_of({"Dockerfile": df, **FILES}), "nocache=1&t=apitest/parents")
    assert "error" not in msgs[-1], msgs
    assert _files(berthd, "apitest/parents", "/keep") == ["/keep/x/one.txt", "/keep/y/two.txt"]
    assert _files(berthd, "apitest/parents", "/pivot") == ["/pivot/sub/c.txt", "/pivot/sub/d.log"]
    assert _files(berthd, "apitest/parents", "/both") == ["/both/app/a.txt", "/both/app/sub/c.txt"]
    berthd.request("DELETE", "/images/apitest/parents")
