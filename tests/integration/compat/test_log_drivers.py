"""Log drivers as dockerd has them: json-file (default, with rotation), local and none."""

from __future__ import annotations

import json
import uuid

import docker
import pytest

pytestmark = pytest.mark.root
LINES = "for i in $(seq 1 300); do echo line-$i; done"


@pytest.fixture
def name(berthd, busybox):
    n = "ld-" + uuid.uuid4().hex[:8]
    yield n
    berthd.request("DELETE", f"/containers/{n}?force=1")


def _create(berthd, log_config: dict) -> tuple[int, dict]:
    body = json.dumps({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"LogConfig": log_config}}).encode()
    status, out = berthd.request("POST", "/containers/create", body, {"Content-Type": "application/json"})
    doc = json.loads(out)
    if status == 201:
        berthd.request("DELETE", f"/containers/{doc['Id']}?force=1")
    return status, doc


def test_default_log_config_is_json_file(docker, name):
    """Docker 1.13+, API 1.25: inspect shows HostConfig.LogConfig {"Type": "json-file", "Config": {}}."""
    assert docker("create", "--name", name, "busybox").returncode == 0
    r = docker("inspect", "-f", "{{json .HostConfig.LogConfig}}", name)
    assert json.loads(r.stdout) == {"Type": "json-file", "Config": {}}


def test_unknown_log_driver_is_refused_at_create(berthd, busybox):
    """Docker 17.05+, API 1.29: an unknown driver is a 400 at create, in logger's words."""
    status, doc = _create(berthd, {"Type": "foo", "Config": {}})
    assert (status, doc["message"]) == (400, "logger: no log driver named 'foo' is registered")


def test_bad_max_size_is_refused_at_create(berthd, busybox):
    """Docker 20.10+, API 1.41: json-file's max-size must be a size (go-units' message)."""
    status, doc = _create(berthd, {"Type": "json-file", "Config": {"max-size": "abc"}})
    assert (status, doc["message"]) == (400, "invalid size: 'abc'")


def test_unknown_log_opt_is_refused_at_create(berthd, busybox):
    """Docker 20.10+, API 1.41: json-file refuses an option it does not know."""
    status, doc = _create(berthd, {"Type": "json-file", "Config": {"bogus": "1"}})
    assert (status, doc["message"]) == (400, "unknown log opt 'bogus' for json-file log driver")


def test_compress_needs_rotation(berthd, busybox):
    """Docker 20.10+, API 1.41: compress=true without max-size and max-file > 1 is refused."""
    status, doc = _create(berthd, {"Type": "json-file", "Config": {"compress": "true"}})
    assert status == 400
    assert doc["message"] == "compress cannot be true when max-file is less than 2 or max-size is not set"


def test_none_driver_logs_are_refused(docker, name):
    """Docker 20.10+, API 1.41: `docker logs` with the none driver fails (exit status 1)."""
    assert docker("run", "--name", name, "--log-driver", "none", "busybox", "echo", "hi").stdout == "hi\n"
    r = docker("logs", name)
    assert r.returncode == 1
    assert "configured logging driver does not support reading" in r.stderr


def test_none_driver_writes_no_log_file(berthd, docker, name):
    """Docker 20.10+, API 1.41: the none driver keeps no log (LogPath is empty)."""
    assert docker("run", "--name", name, "--log-driver", "none", "busybox", "echo", "hi").returncode == 0
    cid = docker("inspect", "-f", "{{.Id}}", name).stdout.strip()
    assert docker("inspect", "-f", "{{.LogPath}}", name).stdout.strip() == ""
    assert not any(p.name.endswith("-json.log") for p in (berthd.data_root / "containers" / cid).iterdir())


def test_json_file_rotation_keeps_max_file_files(berthd, docker, name):
    """Docker 1.8+, API 1.20: max-size/max-file rotate the json log; at most max-file files."""
    r = docker("run", "--name", name, "--log-opt", "max-size=1k", "--log-opt", "max-file=3", "busybox", "sh", "-c",
               LINES)
    assert r.returncode == 0, r.stderr
    cid = docker("inspect", "-f", "{{.Id}}", name).stdout.strip()
    logs = [p for p in (berthd.data_root / "containers" / cid).iterdir() if "-json.log" in p.name]
    assert len(logs) == 3
    assert all(p.stat().st_size < 2048 for p in logs)


def test_docker_logs_reads_across_rotated_files(berthd, docker, name):
    """Docker 20.10+, API 1.41: `docker logs` reads the rotated files in order, then the live one."""
    r = docker("run", "--name", name, "--log-opt", "max-size=1k", "--log-opt", "max-file=100", "busybox", "sh",
               "-c", LINES)
    assert r.returncode == 0, r.stderr
    cid = docker("inspect", "-f", "{{.Id}}", name).stdout.strip()
    assert len([p for p in (berthd.data_root / "containers" / cid).iterdir() if "-json.log." in p.name]) > 2
    assert docker("logs", name).stdout == "".join(f"line-{i}\n" for i in range(1, 301))
    assert docker("logs", "--tail", "2", name).stdout == "line-299\nline-300\n"


def test_docker_logs_reads_compressed_rotated_files(berthd, docker, name):
    """Docker 18.06+, API 1.38: with compress=true rotated files are .gz and still read in order."""
    r = docker("run", "--name", name, "--log-opt", "max-size=1k", "--log-opt", "max-file=100",
               "--log-opt", "compress=true", "busybox", "sh", "-c", LINES)
    assert r.returncode == 0, r.stderr
    assert docker("logs", name).stdout == "".join(f"line-{i}\n" for i in range(1, 301))
    cid = docker("inspect", "-f", "{{.Id}}", name).stdout.strip()
    assert any(p.name.endswith(".gz") for p in (berthd.data_root / "containers" / cid).iterdir())


def test_local_driver_logs(berthd, busybox, name):
    """Docker 18.09+, API 1.39: the local driver is accepted and `logs` reads it."""
    c = docker.DockerClient(base_url=berthd.host, timeout=60)
    try:
        ct = c.containers.run("busybox", ["sh", "-c", "echo one; echo two >&2"], name=name, detach=True,
                              log_config={"Type": "local", "Config": {}})
        ct.wait()
        assert ct.logs() == b"one\ntwo\n"
        assert ct.attrs["HostConfig"]["LogConfig"]["Type"] == "local"
        assert ct.attrs["LogPath"] == ""  # dockerd sets LogPath for json-file only
    finally:
        c.close()
