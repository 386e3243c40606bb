"""SPDY port-forward: a request whose second stream never comes is dropped after the stream
creation timeout (the kubelet's 30 s; here berthd's --cri-stream-creation-timeout 1), the
kubelet's "timed out waiting for streams" written on the error stream when that is the one that
came, the lone stream closed; the session goes on serving other requests."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cri.conftest import Cri, own_cri, pb, pod_config
from tests.integration.cri.test_cri_spdy import SpdyClient

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def quick_cri() -> Iterator[Cri]:
    if os.geteuid() != 0:
        pytest.skip("needs uid 0")
    with own_cri("--cri-stream-creation-timeout", "1", busybox=False) as (_, c):
        yield c


def test_half_pair_times_out(quick_cri: Cri, tmp_path: Path) -> None:
    rt = quick_cri.runtime
    sid = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=pod_config(tmp_path, "pf-timeout"))).pod_sandbox_id
    try:
        c = SpdyClient(rt.PortForward(pb.PortForwardRequest(pod_sandbox_id=sid, port=[9])).url,
                       ["portforward.k8s.io"])
        try:
            t0 = time.monotonic()
            lone_err = c.open("error", port="9", requestid="1")
            lone_data = c.open("data", port="9", requestid="2")
            c.pump(lambda: {lone_err, lone_data} <= c.fin)
            took = time.monotonic() - t0
            assert 0.9 < took < 10, took
            assert b"request=1) timed out waiting for streams" in c.data[lone_err]
            assert c.data.get(lone_data, b"") == b""
            # the session still serves a whole pair (nothing listens on 9 in the pod: refused)
            err = c.open("error", port="9", requestid="3")
            data = c.open("data", port="9", requestid="3")
            c.pump(lambda: {err, data} <= c.fin)
            assert b"error forwarding port 9 to pod" in c.data[err] and b"refused" in c.data[err]
        finally:
            c.close()
    finally:
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
