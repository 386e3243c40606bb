"""Create-time validation: dockerd refuses bad Config/HostConfig values with 400 and its own
message, before anything is recorded; and JSON endpoints refuse another Content-Type.

The docker CLI checks some of these itself (port specs, seccomp files), so most tests speak
the raw API, as docker-py's low-level client and other SDKs do.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.root


def _create(berthd, body: dict[str, Any], version: str = "v1.41", name: str | None = None,
            content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
    q = f"?name={name}" if name else ""
    status, raw = berthd.request("POST", f"/{version}/containers/create{q}", json.dumps(body).encode(),
                                 {"Content-Type": content_type})
    out = json.loads(raw) if raw.strip() else {}
    if status == 201:
        berthd.request("DELETE", f"/containers/{out['Id']}?force=1")
    return status, out


def _refused(berthd, busybox: str, host_config: dict[str, Any] | None = None, **config: Any) -> str:
    body = {"Image": busybox, "Cmd": ["true"], **config}
    if host_config is not None:
        body["HostConfig"] = host_config
    status, out = _create(berthd, body)
    assert status == 400, out
    return str(out["message"])


def _count(berthd) -> int:
    return len(json.loads(berthd.request("GET", "/containers/json?all=1")[1]))


# -- ports --------------------------------------------------------------------------------

def test_port_binding_key_not_a_number(berthd, busybox):
    """Docker 20.10+, API 1.41: PortBindings {"abc/tcp": ...} -> 400 invalid port specification."""
    before = _count(berthd)
    msg = _refused(berthd, busybox, {"PortBindings": {"abc/tcp": [{"HostPort": "8080"}]}})
    assert msg == 'invalid port specification: "abc"'
    assert _count(berthd) == before


def test_port_binding_host_port_not_a_number(berthd, busybox):
    """Docker 20.10+, API 1.41: a HostPort that is not a number -> 400 with that HostPort."""
    msg = _refused(berthd, busybox, {"PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "http"}]}},
                   ExposedPorts={"80/tcp": {}})
    assert msg == 'invalid port specification: "http"'


def test_exposed_port_not_a_number(berthd, busybox):
    """Docker 25+ (typed ports), API 1.41: ExposedPorts {"abc/tcp": {}} is refused at create."""
    msg = _refused(berthd, busybox, {}, ExposedPorts={"abc/tcp": {}})
    assert msg == 'invalid port specification: "abc"'


def test_docker_py_low_level_port_error(berthd, busybox):
    """Docker 20.10+, API 1.41: docker-py's APIClient gets APIError 400 for a bad HostPort."""
    import docker

    api = docker.APIClient(base_url=berthd.host, version="1.41")
    hc = {"PortBindings": {"80/tcp": [{"HostPort": "99999"}]}}
    with pytest.raises(docker.errors.APIError) as e:
        api.create_container(busybox, "true", host_config=hc, ports=[80])
    assert e.value.status_code == 400
    assert 'invalid port specification: "99999"' in str(e.value.explanation)


# -- capabilities, security options --------------------------------------------------------

def test_unknown_cap_add(berthd, busybox):
    """Docker 20.10+, API 1.41: CapAdd ["FOO"] -> 400 `invalid CapAdd: unknown capability: "CAP_FOO"`."""
    msg = _refused(berthd, busybox, {"CapAdd": ["FOO"]})
    assert msg == 'invalid CapAdd: unknown capability: "CAP_FOO"'


def test_unknown_cap_drop_cli(docker):
    """Docker 20.10+, API 1.41: `docker run --cap-drop CAP_FOO` fails at create, exit 125."""
    r = docker("run", "--rm", "--cap-drop", "CAP_FOO", "busybox", "true")
    assert r.returncode == 125, r
    assert 'invalid CapDrop: unknown capability: "CAP_FOO"' in r.stderr


def test_security_opt_without_value(berthd, busybox):
    """Docker 20.10+, API 1.41: SecurityOpt ["foo"] -> 400 `invalid --security-opt 1: "foo"`."""
    assert _refused(berthd, busybox, {"SecurityOpt": ["foo"]}) == 'invalid --security-opt 1: "foo"'


def test_security_opt_unknown_key(docker):
    """Docker 20.10+, API 1.41: `--security-opt foo=bar` -> `invalid --security-opt 2: "foo=bar"`."""
    r = docker("run", "--rm", "--security-opt", "foo=bar", "busybox", "true")
    assert r.returncode == 125, r
    assert 'invalid --security-opt 2: "foo=bar"' in r.stderr


def test_security_opt_bad_no_new_privileges(berthd, busybox):
    """Docker 20.10+, API 1.41: no-new-privileges=maybe is not a Go bool -> option 2 error."""
    msg = _refused(berthd, busybox, {"SecurityOpt": ["no-new-privileges=maybe"]})
    assert msg == 'invalid --security-opt 2: "no-new-privileges=maybe"'


def test_seccomp_profile_not_json(berthd, busybox):
    """Docker 20.10+, API 1.41: seccomp=<not JSON> -> 400 `Decoding seccomp profile failed: ...`."""
    msg = _refused(berthd, busybox, {"SecurityOpt": ["seccomp={not json"]})
    assert msg.startswith("Decoding seccomp profile failed: ")


def test_custom_seccomp_profile_is_applied(docker, tmp_path):
    """Docker 20.10+, API 1.41: a valid seccomp profile file is used: a denied syscall fails."""
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}
    f = tmp_path / "profile.json"
    f.write_text(json.dumps(profile))
    r = docker("run", "--rm", "--security-opt", f"seccomp={f}", "busybox", "mkdir", "/tmp/x")
    assert r.returncode != 0, r
    assert "Operation not permitted" in r.stderr


# -- the rest of the family ----------------------------------------------------------------

@pytest.mark.parametrize("host_config, message", [
    ({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 3}},
     "invalid restart policy: maximum retry count can only be used with 'on-failure'"),
    ({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": -1}},
     "invalid restart policy: maximum retry count cannot be negative"),
    ({"OomScoreAdj": 1001}, "Invalid value 1001, range for oom score adj is [-1000, 1000]"),
    ({"ShmSize": -1}, "SHM size can not be less than 0"),
    ({"MemorySwappiness": 101}, "Invalid value: 101, valid memory swappiness range is 0-100"),
    ({"MemoryReservation": 1024}, "Minimum memory reservation allowed is 6MB"),
    ({"Isolation": "hyperv"}, "invalid isolation 'hyperv' on linux"),
    ({"Runtime": "nosuch"}, "unknown or invalid runtime name: nosuch"),
    ({"IpcMode": "bogus"}, "invalid IPC mode: bogus"),
    ({"PidMode": "bogus"}, "invalid PID mode: bogus"),
    ({"ExtraHosts": ["db:not-an-ip"]}, 'invalid IP address in add-host: "not-an-ip"'),
    ({"ExtraHosts": ["justaname"]}, 'bad format for add-host: "justaname"'),
    ({"NetworkMode": "container:"}, "Invalid network mode: invalid container format container:<name|id>"),
    ({"CpusetCpus": "abc"}, "Invalid value abc for cpuset cpus: invalid format: abc"),
    ({"CpusetCpus": "0,4095"}, "Requested CPUs are not available - requested 0,4095, available: "
                               + open("/sys/devices/system/cpu/online").read().strip()),
])
def test_host_config_refused(berthd, busybox, host_config, message):
    """Docker 24+ (restart policy wording), 20.10+ otherwise, API 1.41: 400 with dockerd's message."""
    assert _refused(berthd, busybox, host_config) == message


@pytest.mark.parametrize("config, message", [
    ({"WorkingDir": "relative/dir"}, "the working directory 'relative/dir' is invalid, it needs to be an absolute path"),
    ({"Env": ["=foo"]}, "invalid environment variable: =foo"),
    ({"StopSignal": "SIGFOO"}, "Invalid signal: SIGFOO"),
    ({"Healthcheck": {"Test": ["CMD", "true"], "Interval": 1000}}, "Interval in Healthcheck cannot be less than 1ms"),
    ({"Healthcheck": {"Test": ["CMD", "true"], "Retries": -1}}, "Retries in Healthcheck cannot be negative"),
])
def test_config_refused(berthd, busybox, config, message):
    """Docker 25+ (working dir wording), 20.10+ otherwise, API 1.41: 400 with dockerd's message."""
    assert _refused(berthd, busybox, {}, **config) == message


# -- Content-Type --------------------------------------------------------------------------

def test_create_with_text_plain_is_refused(berthd, busybox):
    """Docker 20.10+, API 1.41: create with Content-Type text/plain -> 400 and dockerd's message."""
    status, out = _create(berthd, {"Image": busybox, "Cmd": ["true"]}, content_type="text/plain")
    assert status == 400
    assert out["message"] == "Content-Type specified (text/plain) must be 'application/json'"


@pytest.mark.parametrize("path, body", [
    ("/v1.41/networks/create", {"Name": "ct-net"}),
    ("/v1.41/volumes/create", {"Name": "ct-vol"}),
    ("/v1.41/commit?container=nosuch", {}),
])
def test_other_json_endpoints_check_content_type(berthd, path, body):
    """Docker 20.10+, API 1.41: networks/create, volumes/create and commit check it too."""
    status, raw = berthd.request("POST", path, json.dumps(body).encode(), {"Content-Type": "text/plain"})
    assert status == 400, raw
    assert json.loads(raw)["message"] == "Content-Type specified (text/plain) must be 'application/json'"


def test_exec_create_checks_content_type(berthd, busybox, docker):
    """Docker 20.10+, API 1.41: POST /containers/{id}/exec with text/plain -> 400."""
    name = f"ct-{uuid.uuid4().hex[:8]}"
    assert docker("run", "-d", "--name", name, busybox, "sleep", "60").returncode == 0
    try:
        status, raw = berthd.request("POST", f"/v1.41/containers/{name}/exec",
                                     json.dumps({"Cmd": ["true"]}).encode(), {"Content-Type": "text/plain"})
        assert status == 400, raw
        assert json.loads(raw)["message"] == "Content-Type specified (text/plain) must be 'application/json'"
    finally:
        docker("rm", "-f", name)

