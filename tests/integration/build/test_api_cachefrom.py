"""``cachefrom`` with an image this daemon did not build: pushed to a registry, every local
trace of the build removed (image, intermediates, build cache), pulled back. As in the
classic builder, its history (created_by, layer by layer) is matched against the steps, so
they are cached, and the last step's hit is the pulled image itself."""

from __future__ import annotations

import json
import os
import shutil
import uuid

import pytest

from tests.integration.build._api import build, get, image_id, run_output, tar_of, text
from tests.integration.images.registry_proc import BINARY, RegistryProc

pytestmark = pytest.mark.root

DF = ("FROM busybox\nENV GREETING=hello\nRUN echo $GREETING > /greeting\nCOPY f /f\nWORKDIR /srv\n"
      "RUN cat /f >> /greeting\nCMD [\"cat\", \"/greeting\"]\n")


@pytest.fixture
def registry():
    if not (os.path.exists(BINARY) or shutil.which(BINARY)):
        pytest.fail(f"{BINARY} is not installed (.ci/run installs docker-registry)")
    r = RegistryProc().start()
    try:
        yield r
    finally:
        r.stop()


def _image_ids(d) -> set[str]:
    return {i["Id"] for i in get(d, "/images/json?all=1")}  # type: ignore[union-attr]


def test_cache_from_a_pulled_image_matches_by_history(berthd, busybox, docker, registry):
    ref = f"{registry.host}/cachefrom-{uuid.uuid4().hex[:8]}:v1"
    body = tar_of({"Dockerfile": DF, "f": "from the context\n"})
    base = _image_ids(berthd)
    st, first = build(berthd, body, f"t={ref}")
    assert st == 200 and "error" not in first[-1], first
    built = image_id(first)
    p = docker("push", ref)
    assert p.returncode == 0, p.stderr
    # nothing of the build stays: the image, its intermediate images, the cache rows
    assert docker("rmi", ref).returncode == 0
    st, out = berthd.request("POST", "/build/prune?all=1")
    assert st == 200, out
    assert _image_ids(berthd) <= base  # (prune may also take what earlier tests left)
    assert get(berthd, "/system/df")["BuildCache"] in ([], None)  # type: ignore[index]
    p = docker("pull", ref)
    assert p.returncode == 0, p.stderr

    # without cachefrom nothing matches: the pulled image has no steps recorded here
    st, plain = build(berthd, body, "t=apitest/cachefrom-plain")
    assert "Using cache" not in text(plain)
    berthd.request("DELETE", "/images/apitest/cachefrom-plain")
    st, out = berthd.request("POST", "/build/prune?all=1")

    q = "cachefrom=" + json.dumps([ref]) + "&t=apitest/cachefrom"
    st, again = build(berthd, body, q)
    assert st == 200 and "error" not in again[-1], again
    steps = text(again).count("Step ")
    assert text(again).count(" ---> Using cache\n") == steps - 1, text(again)  # every step after FROM
    assert "Running in" not in text(again)
    assert image_id(again) == built
    assert run_output(berthd, "apitest/cachefrom", []) == "hello\nfrom the context\n"

    # a changed file: the steps before it still come from the pulled image, not those after
    st, changed = build(berthd, tar_of({"Dockerfile": DF, "f": "changed\n"}), q)
    out = text(changed)
    assert out.count(" ---> Using cache\n") == 2, out  # ENV, RUN
    assert run_output(berthd, "apitest/cachefrom", []) == "hello\nchanged\n"
    for r in ("apitest/cachefrom", ref):
        berthd.request("DELETE", f"/images/{r}")
    berthd.request("POST", "/build/prune?all=1")
