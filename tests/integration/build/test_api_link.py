"""COPY --link as BuildKit makes it: a layer that does not depend on the parent. Its cache
survives a change of an earlier step (the layer blob is reused, the image on the new parent
is new), and it is made without reading the parent's filesystem: no symlink in the parent is
followed, and --chown takes numeric IDs (or root) only."""

from __future__ import annotations

import json

import pytest

from tests.integration.build._api import build, error, image_id, run_output, tar_of, text

pytestmark = pytest.mark.root


def _diff_ids(d, ref: str) -> list[str]:
    st, out = d.request("GET", f"/images/{ref}/json")
    assert st == 200, out
    return json.loads(out)["RootFS"]["Layers"]


def test_link_layer_is_cached_across_a_changed_parent(berthd, busybox):
    files = {"app/f.txt": "linked content\n", "app/g.txt": "g\n"}
    df = "FROM busybox\nRUN echo {n} > /n\nCOPY --link app /app/\nRUN cat /app/f.txt /n > /both\n"
    st, first = build(berthd, tar_of({"Dockerfile": df.format(n="one"), **files}), "t=apitest/link1")
    assert st == 200 and "error" not in first[-1], first
    st, second = build(berthd, tar_of({"Dockerfile": df.format(n="two"), **files}), "t=apitest/link2")
    assert st == 200 and "error" not in second[-1], second
    out = text(second)
    # the RUN before changed, so it and the RUN after run again; the --link COPY is cached
    copy_part = out.split("COPY --link app /app/\n", 1)[1].split("Step 4/4", 1)[0]
    assert " ---> Using cache\n" in copy_part, out
    assert out.count(" ---> Using cache\n") == 1, out
    a, b = _diff_ids(berthd, "apitest/link1"), _diff_ids(berthd, "apitest/link2")
    assert a[2] == b[2]          # the same layer ...
    assert a[1] != b[1]          # ... on another parent
    assert image_id(first) != image_id(second)
    assert run_output(berthd, "apitest/link2", ["cat", "/both"]) == "linked content\ntwo\n"
    for ref in ("apitest/link1", "apitest/link2"):
        berthd.request("DELETE", f"/images/{ref}")


def test_link_does_not_follow_the_parents_symlinks(berthd, busybox):
    df = ("FROM busybox\nRUN mkdir /real && ln -s /real /lnk\n"
          "COPY f /lnk/plain\nCOPY --link f /lnk/linked\n")
    st, msgs = build(berthd, tar_of({"Dockerfile": df, "f": "x"}), "nocache=1&t=apitest/linksym")
    assert st == 200 and "error" not in msgs[-1], msgs
    # a plain COPY writes through the parent's symlink; --link makes a path of directories only
    out = run_output(berthd, "apitest/linksym", ["sh", "-c", "ls /real; echo --; ls /lnk; test -L /lnk || echo dir"])
    assert out == "plain\n--\nlinked\ndir\n", out
    berthd.request("DELETE", "/images/apitest/linksym")


def test_link_chown_numeric_only(berthd, busybox):
    df = "FROM busybox\nCOPY --link --chown=1234:5678 f /num\nCOPY --link --chown=root f /root-owned\n"
    st, msgs = build(berthd, tar_of({"Dockerfile": df, "f": "x"}), "nocache=1&t=apitest/linkchown")
    assert st == 200 and "error" not in msgs[-1], msgs
    out = run_output(berthd, "apitest/linkchown", ["stat", "-c", "%u:%g", "/num", "/root-owned"])
    assert out == "1234:5678\n0:0\n"
    berthd.request("DELETE", "/images/apitest/linkchown")
    # a name needs the parent's /etc/passwd, which --link does not read ("nobody" is in busybox's)
    st, msgs = build(berthd, tar_of({"Dockerfile": "FROM busybox\nCOPY --link --chown=nobody f /n\n", "f": "x"}),
                     "nocache=1")
    assert st == 200
    assert "--chown=nobody with --link" in error(msgs)["error"], msgs
    # without --link the name is looked up in the image
    st, msgs = build(berthd, tar_of({"Dockerfile": "FROM busybox\nCOPY --chown=nobody f /n\n", "f": "x"}), "nocache=1")
    assert "error" not in msgs[-1], msgs
