"""metrics-addr (issue 13) against a real berthd: /metrics is scraped over TCP and parsed with
prometheus_client's own text parser; the container, engine, API and process families carry
the values the test caused (a busy container, a 404, an image, a created container)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from typing import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.integration.daemon import Daemon

DOCKER = "/usr/local/bin/docker"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs uid 0")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    d = Daemon(args=["--metrics-addr", f"127.0.0.1:{_free_port()}"])
    d.start()
    try:
        d.import_busybox()
        yield d
    finally:
        d.cleanup()


def _addr(d: Daemon) -> str:
    return d.extra_args[d.extra_args.index("--metrics-addr") + 1]


def scrape(d: Daemon) -> tuple[str, dict[str, list[Sample]]]:
    with urllib.request.urlopen(f"http://{_addr(d)}/metrics", timeout=10) as r:
        ctype = r.headers["Content-Type"]
        text = r.read().decode()
    fams = {f.name: f.samples for f in text_string_to_metric_families(text)}
    return ctype, fams


def value(samples: list[Sample], metric: str, /, **labels: str) -> float:
    hits = [s.value for s in samples if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(hits) == 1, (metric, labels, [s for s in samples if s.name == metric])
    return hits[0]


def docker(d: Daemon, *args: str) -> str:
    r = subprocess.run([DOCKER, *args], env=d.env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_scrape_parses_with_every_family(daemon: Daemon) -> None:
    cid = docker(daemon, "run", "-d", "--name", "busy", "-m", "64m", "busybox", "sh", "-c",
                 "dd if=/dev/zero of=/tmp/f bs=1M count=16; i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; sleep 600")
    created = docker(daemon, "create", "--name", "idle", "busybox", "true")
    try:
        assert daemon.request("GET", "/containers/nosuch/json")[0] == 404
        assert daemon.request("GET", "/v1.45/containers/json?all=1")[0] == 200
        time.sleep(1.5)  # some CPU time for the busy loop
        ctype, fams = scrape(daemon)
        assert ctype.startswith("text/plain; version=0.0.4")

        # the engine
        states = fams["engine_daemon_container_states_containers"]
        assert value(states, "engine_daemon_container_states_containers", state="running") == 1
        assert value(states, "engine_daemon_container_states_containers", state="stopped") == 1
        assert value(fams["berth_images"], "berth_images") == 1
        assert value(fams["berth_builds"], "berth_builds_total", outcome="success") == 0
        assert value(fams["engine_daemon_events"], "engine_daemon_events_total", type="container",
                     action="create") == 2

        # the API: route patterns, statuses, latency histograms
        req = fams["berth_api_requests"]
        assert value(req, "berth_api_requests_total", method="GET", route="/containers/{id}/json",
                     status="404") == 1
        assert value(req, "berth_api_requests_total", method="POST", route="/containers/create",
                     status="201") == 2
        lat = fams["berth_api_request_duration_seconds"]
        n = value(lat, "berth_api_request_duration_seconds_count", method="GET", route="/containers/json")
        assert n >= 1
        assert value(lat, "berth_api_request_duration_seconds_bucket", method="GET", route="/containers/json",
                     le="+Inf") == n
        assert value(lat, "berth_api_request_duration_seconds_sum", method="GET", route="/containers/json") > 0

        # the busy container (and only it: the created one does not run)
        who = {"id": cid, "name": "busy"}
        assert value(fams["berth_container_cpu_usage_seconds"], "berth_container_cpu_usage_seconds_total", **who) > 0.05
        assert value(fams["berth_container_memory_usage_bytes"], "berth_container_memory_usage_bytes", **who) > 1 << 20
        assert value(fams["berth_container_memory_limit_bytes"], "berth_container_memory_limit_bytes",
                     **who) == 64 << 20
        assert value(fams["berth_container_pids"], "berth_container_pids", **who) >= 1
        assert not [s for s in fams["berth_container_pids"] if s.labels["id"] == created]
        net = fams["berth_container_network_transmit_bytes"]
        assert [s for s in net if s.labels["id"] == cid and s.labels["interface"] == "eth0"]
        assert "berth_container_blkio_write_bytes" in fams  # the family is there (tmpfs/overlay may write none)

        # the process: berthd's own, with prometheus_client's names
        pid = daemon.proc.pid if daemon.proc else 0
        start = value(fams["process_start_time_seconds"], "process_start_time_seconds")
        assert abs(start - os.stat(f"/proc/{pid}").st_mtime) < 120 and start <= time.time()
        rss = value(fams["process_resident_memory_bytes"], "process_resident_memory_bytes")
        with open(f"/proc/{pid}/status") as f:
            vmrss = int(next(line for line in f if line.startswith("VmRSS:")).split()[1]) * 1024
        assert abs(rss - vmrss) < 16 << 20
        assert value(fams["process_open_fds"], "process_open_fds") == pytest.approx(len(os.listdir(f"/proc/{pid}/fd")), abs=8)
        assert value(fams["process_cpu_seconds"], "process_cpu_seconds_total") > 0
        assert not [name for name in fams if name.startswith("go_")]
    finally:
        docker(daemon, "rm", "-f", "busy", "idle")


def test_metrics_listener_only_serves_metrics(daemon: Daemon) -> None:
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://{_addr(daemon)}/containers/json", timeout=10)
    assert e.value.code == 404
    # the Engine API socket does not serve /metrics either (dockerd: only on metrics-addr)
    status, body = daemon.request("GET", "/metrics")
    assert status == 404 and json.loads(body)["message"] == "page not found"


def test_metrics_addr_in_use_stops_berthd_naming_it() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        addr = f"127.0.0.1:{s.getsockname()[1]}"
        d = Daemon(args=["--metrics-addr", addr])
        try:
            with pytest.raises(RuntimeError) as e:
                d.start()
            assert f"failed to listen on metrics-addr {addr}: Address already in use" in str(e.value)
        finally:
            d.cleanup()
