"""Stages that build at once, and a stream that still reads in Dockerfile order."""

from __future__ import annotations

import re
import time

import pytest

from tests.integration.build._api import build, error, run_output, tar_of, text

pytestmark = pytest.mark.root

PARALLEL = """\
FROM busybox AS a
RUN sleep 1 && echo a > /a
FROM busybox AS b
RUN sleep 1 && echo b > /b
FROM busybox
COPY --from=a /a /a
COPY --from=b /b /b
"""


def test_independent_stages_build_in_parallel(berthd, busybox):
    t0 = time.monotonic()
    st, msgs = build(berthd, tar_of({"Dockerfile": PARALLEL}), "nocache=1&t=apitest/parallel")
    took = time.monotonic() - t0
    assert st == 200 and "error" not in msgs[-1], msgs
    assert took < 1.8, took  # one after the other: at least 2 s of sleep
    out = text(msgs)
    # written in Dockerfile order: steps 1..7, each stage's lines together
    assert [int(n) for n in re.findall(r"^Step (\d+)/7 :", out, re.M)] == list(range(1, 8)), out
    first, second = out.index("Step 2/7 : RUN sleep 1 && echo a"), out.index("Step 4/7 : RUN sleep 1 && echo b")
    assert first < out.index("Running in", first) < out.index("Step 3/7", first) < second
    assert run_output(berthd, "apitest/parallel", ["cat", "/a", "/b"]) == "a\nb\n"
    berthd.request("DELETE", "/images/apitest/parallel")


def test_stage_waits_for_the_stage_it_copies_from(berthd, busybox):
    # the last stage needs "slow" (COPY --from by index), "fast" does not: no reordering of results
    df = ("FROM busybox AS slow\nRUN sleep 0.5 && echo slow > /s\nFROM busybox AS fast\nRUN echo fast > /f\n"
          "FROM fast\nCOPY --from=0 /s /s\nRUN cat /s /f > /both\n")
    st, msgs = build(berthd, tar_of({"Dockerfile": df}), "nocache=1&t=apitest/waits")
    assert st == 200 and "error" not in msgs[-1], msgs
    assert run_output(berthd, "apitest/waits", ["cat", "/both"]) == "slow\nfast\n"
    berthd.request("DELETE", "/images/apitest/waits")


def test_failure_in_a_parallel_stage_stops_the_build(berthd, busybox):
    df = "FROM busybox AS a\nRUN sleep 30\nFROM busybox AS b\nRUN exit 4\nFROM busybox\nCOPY --from=a / /a\nCOPY --from=b / /b\n"
    t0 = time.monotonic()
    st, msgs = build(berthd, tar_of({"Dockerfile": df}), "nocache=1")
    assert time.monotonic() - t0 < 15
    assert error(msgs)["error"] == "The command '/bin/sh -c exit 4' returned a non-zero code: 4"
    assert "Step 4/7 : RUN exit 4" in text(msgs)
