"""rm and forcerm as dockerd's classic builder has them: rm=0 keeps each RUN step's
container (``docker ps -a`` lists it, also after berthd restarts); forcerm=1 removes it even
when the step fails. A failed step with the default rm=1 is removed here too (dockerd keeps
it): the issue asks that a failed build leave nothing behind (test_api.py checks that)."""

from __future__ import annotations

import pytest

from tests.integration.build._api import build, containers_all, error, tar_of, text
from tests.integration.daemon import Daemon, suite_args

pytestmark = pytest.mark.root


def _steps(d: Daemon) -> dict[str, dict]:
    return {c["Id"]: c for c in containers_all(d) if "berth.build" in (c.get("Labels") or {})}


def test_rm0_keeps_step_containers_across_restart():
    d = Daemon(args=suite_args())
    d.start()
    try:
        d.import_busybox("busybox:latest")
        df = "FROM busybox\nRUN echo one > /one\nENV X=1\nRUN echo two > /two\n"
        st, msgs = build(d, tar_of({"Dockerfile": df}), "rm=0&nocache=1&t=apitest/rm0")
        assert st == 200 and "error" not in msgs[-1], msgs
        out = text(msgs)
        assert "Removing intermediate container" not in out
        ran = [line.split()[-1] for line in out.splitlines() if "Running in" in line]
        kept = _steps(d)
        assert len(kept) == 2 and {k[:12] for k in kept} == {ran[0], ran[-1]}, (kept, ran)
        assert all(c["State"] == "exited" for c in kept.values())
        # a failed step's container stays too with rm=0 ...
        st, msgs = build(d, tar_of({"Dockerfile": "FROM busybox\nRUN exit 7\n"}), "rm=0&nocache=1")
        assert error(msgs)["errorDetail"]["code"] == 7
        assert len(_steps(d)) == 3
        # ... and goes with forcerm=1
        st, msgs = build(d, tar_of({"Dockerfile": "FROM busybox\nRUN exit 8\n"}), "rm=0&forcerm=1&nocache=1")
        assert error(msgs)["errorDetail"]["code"] == 8
        assert len(_steps(d)) == 3
        # berthd's start-up sweep removes only containers of builds it did not finish
        d.stop()
        d.start()
        assert len(_steps(d)) == 3
        # default rm=1: nothing stays, on success or failure
        st, msgs = build(d, tar_of({"Dockerfile": "FROM busybox\nRUN echo ok\n"}), "nocache=1")
        assert "Removing intermediate container" in text(msgs)
        st, msgs = build(d, tar_of({"Dockerfile": "FROM busybox\nRUN exit 9\n"}), "nocache=1")
        assert error(msgs)["errorDetail"]["code"] == 9
        assert len(_steps(d)) == 3
    finally:
        d.cleanup()
