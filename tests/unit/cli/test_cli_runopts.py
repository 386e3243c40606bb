"""``run``/``create`` flags -> the create body, compared with what docker CLI 28 sends."""

import json
import re
from pathlib import Path

import pytest

from berth.cli._containeropts import build_create_body
from berth.cli._flags import UsageError
from berth.cli.cmd_run import exit_status, familiar_ref, spec_create, spec_run

WIRE = Path("/work/shared/reference/wire")


def wire_create_body(name: str) -> dict:
    text = (WIRE / name).read_text()
    start = text.index("POST /v1.41/containers/create HTTP/1.1")
    block = re.search(r"```json\n(.*?)\n```", text[start:], re.S)
    assert block is not None
    return json.loads(block.group(1))


def body_for(argv: list[str], **kw) -> dict:
    opts, args = spec_run().parse(argv)
    return build_create_body(opts, args, detach=opts["detach"], **kw)


def test_run_echo_matches_wire() -> None:
    if not WIRE.exists():
        pytest.skip("wire captures not available")
    assert body_for(["busybox", "echo", "hello"]) == wire_create_body("34-run-echo.md")


def test_run_rm_matches_wire() -> None:
    if not WIRE.exists():
        pytest.skip("wire captures not available")
    assert body_for(["--rm", "busybox", "echo", "hi"]) == wire_create_body("45-run-rm.md")


def test_run_d_matches_wire() -> None:
    if not WIRE.exists():
        pytest.skip("wire captures not available")
    assert body_for(["-d", "busybox", "sleep", "1000"]) == wire_create_body("36-run-d.md")


def test_create_it_matches_wire() -> None:
    if not WIRE.exists():
        pytest.skip("wire captures not available")
    opts, args = spec_create().parse(["-it", "busybox"])
    assert build_create_body(opts, args) == wire_create_body("30-create-start.md")


def test_resources_and_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FROM_HOST", "yes")
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFILE=1\nFROM_HOST\n\n")
    body = body_for([
        "--name", "n", "-e", "A=1", "-e", "FROM_HOST", "-e", "UNSET_VAR_XYZ",
        "--env-file", str(env_file), "-w", "/tmp", "-u", "1000:1000", "--entrypoint", "/bin/sh",
        "-h", "host1", "-m", "64m", "--memory-swap", "-1", "--cpus", "1.5", "--cpu-shares", "512",
        "--pids-limit", "10", "-l", "a=b", "--label", "c", "--stop-signal", "SIGINT",
        "--stop-timeout", "3", "-it", "busybox", "-c", "echo hi",
    ])
    assert body["Env"] == ["FILE=1", "FROM_HOST=yes", "A=1", "FROM_HOST=yes"]
    assert body["Cmd"] == ["-c", "echo hi"]
    assert body["Entrypoint"] == ["/bin/sh"]
    assert body["WorkingDir"] == "/tmp"
    assert body["User"] == "1000:1000"
    assert body["Hostname"] == "host1"
    assert body["Labels"] == {"a": "b", "c": ""}
    assert body["StopSignal"] == "SIGINT"
    assert body["StopTimeout"] == 3
    assert body["Tty"] is True and body["OpenStdin"] is True and body["StdinOnce"] is True
    assert body["AttachStdin"] is True
    host = body["HostConfig"]
    assert host["Memory"] == 64 << 20
    assert host["MemorySwap"] == -1
    assert host["NanoCpus"] == 1_500_000_000
    assert host["CpuShares"] == 512
    assert host["PidsLimit"] == 10


def test_cpu_quota_period_and_explicit_empty_entrypoint() -> None:
    body = body_for(["--cpu-quota", "50000", "--cpu-period", "100000", "--entrypoint", "",
                     "busybox"])
    assert body["HostConfig"]["CpuQuota"] == 50000
    assert body["HostConfig"]["CpuPeriod"] == 100000
    assert body["Entrypoint"] == [""]
    assert body["Cmd"] is None
    assert "StopTimeout" not in body


def test_detach_clears_attach() -> None:
    body = body_for(["-d", "-i", "busybox"])
    assert body["AttachStdin"] is False and body["AttachStdout"] is False
    assert body["StdinOnce"] is False and body["OpenStdin"] is True


def test_flags_stop_at_image() -> None:
    body = body_for(["busybox", "ls", "-l", "--rm"])
    assert body["Cmd"] == ["ls", "-l", "--rm"]
    assert body["HostConfig"]["AutoRemove"] is False


def test_network_keys_endpoint() -> None:
    body = body_for(["--network", "host", "busybox"])
    assert body["HostConfig"]["NetworkMode"] == "host"
    assert list(body["NetworkingConfig"]["EndpointsConfig"]) == ["host"]


def test_publish() -> None:
    body = body_for(["-p", "127.0.0.1:8080:80", "-p", "53/udp", "busybox"])
    assert body["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert body["HostConfig"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
        "53/udp": [{"HostIp": "", "HostPort": ""}]}


@pytest.mark.parametrize("argv, message", [
    (["--cpus", "abc", "busybox"], 'invalid argument "abc" for "--cpus" flag'),
    (["-m", "1x", "busybox"], 'invalid argument "1x" for "-m, --memory" flag: invalid suffix'),
    (["--nosuchflag", "busybox"], "unknown flag: --nosuchflag"),
    (["--pids-limit"], "flag needs an argument: --pids-limit"),
])
def test_flag_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)) as info:
        spec_run().parse(argv)
    assert info.value.flag_error


def test_missing_image_is_argument_error() -> None:
    with pytest.raises(UsageError) as info:
        spec_run().parse([])
    assert not info.value.flag_error
    assert "requires at least 1 argument" in info.value.message


def test_restart_and_memory_checks() -> None:
    with pytest.raises(UsageError):
        body_for(["--restart", "sometimes", "busybox"])
    with pytest.raises(UsageError):
        body_for(["-m", "64m", "--memory-swap", "32m", "busybox"])
    assert body_for(["--restart", "on-failure:3", "busybox"])["HostConfig"]["RestartPolicy"] == {
        "Name": "on-failure", "MaximumRetryCount": 3}


@pytest.mark.parametrize("message, code", [
    ('exec: "nosuchcmd": executable file not found in $PATH: unknown', 127),
    ("open /x: no such file or directory", 127),
    ('exec: "/etc": permission denied: unknown', 126),
    ("read /etc: is a directory", 126),
    ("No such image: x", 125),
])
def test_exit_status(message: str, code: int) -> None:
    assert exit_status(message) == code


def test_familiar_ref() -> None:
    assert familiar_ref("busybox") == "busybox:latest"
    assert familiar_ref("127.0.0.1:5000/built") == "127.0.0.1:5000/built:latest"
    assert familiar_ref("127.0.0.1:5000/built:v1") == "127.0.0.1:5000/built:v1"
    assert familiar_ref("busybox@sha256:abc") == "busybox@sha256:abc"


def test_key_value_flags_map() -> None:
    body = body_for(["--log-opt", "max-size=1m", "--log-opt", "tag={{.Name}}", "--sysctl", "net.core.somaxconn=64",
                     "--sysctl", "kernel.msgmax=1=2", "busybox"])
    host = body["HostConfig"]
    assert host["LogConfig"]["Config"] == {"max-size": "1m", "tag": "{{.Name}}"}
    assert host["Sysctls"] == {"net.core.somaxconn": "64", "kernel.msgmax": "1=2"}
