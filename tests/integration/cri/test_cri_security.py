"""The container security context over the CRI, read from inside the running container:
run-as user and group with supplemental groups, read-only rootfs, capabilities added and
dropped, privileged, no_new_privs, seccomp (RuntimeDefault, Unconfined, Localhost from a profile
file, a missing profile), masked and read-only paths (the kubelet's lists, or Docker's when
none are given)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.integration.cri.conftest import Cri, container_config, pb, pod_config

pytestmark = pytest.mark.root
SEC = pb.SecurityProfile.ProfileType


@pytest.fixture(scope="module")
def pod(cri: Cri, busybox: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    cfg = pod_config(tmp_path_factory.mktemp("sec"), "secpod")
    sid = cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
    yield sid, cfg
    cri.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))


def _run(cri: Cri, pod: tuple[str, Any], name: str, **sc: Any) -> str:
    sid, cfg = pod
    config = container_config(name, "busybox:latest", ["sleep", "1000"],
                              linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(**sc)))
    cid = cri.runtime.CreateContainer(pb.CreateContainerRequest(
        pod_sandbox_id=sid, sandbox_config=cfg, config=config)).container_id
    cri.runtime.StartContainer(pb.StartContainerRequest(container_id=cid))
    return cid


def _sh(cri: Cri, cid: str, script: str) -> tuple[int, str]:
    r = cri.runtime.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["sh", "-c", script], timeout=20))
    return r.exit_code, (r.stdout + r.stderr).decode()


def _status(cri: Cri, cid: str, key: str) -> str:
    code, out = _sh(cri, cid, f"grep '^{key}:' /proc/self/status")
    assert code == 0, out
    return out.split(":", 1)[1].strip()


def test_user_groups_readonly_rootfs(cri: Cri, pod: tuple[str, Any]) -> None:
    cid = _run(cri, pod, "user", run_as_user=pb.Int64Value(value=1234), run_as_group=pb.Int64Value(value=2345),
               supplemental_groups=[3456, 4567], readonly_rootfs=True)
    assert _sh(cri, cid, "id -u; id -g; id -G") == (0, "1234\n2345\n2345 3456 4567\n")
    code, out = _sh(cri, cid, "touch /made-here")
    assert code != 0 and "Read-only file system" in out


def test_capabilities_and_no_new_privs(cri: Cri, pod: tuple[str, Any]) -> None:
    default = int(_status(cri, _run(cri, pod, "plain"), "CapEff"), 16)
    cid = _run(cri, pod, "caps", capabilities=pb.Capability(add_capabilities=["NET_ADMIN"],
                                                            drop_capabilities=["CHOWN"]), no_new_privs=True)
    assert int(_status(cri, cid, "CapEff"), 16) == (default | 1 << 12) & ~1   # +CAP_NET_ADMIN -CAP_CHOWN
    assert _status(cri, cid, "NoNewPrivs") == "1"
    assert _status(cri, _run(cri, pod, "nnp-off"), "NoNewPrivs") == "0"
    priv = _run(cri, pod, "priv", privileged=True)
    assert int(_status(cri, priv, "CapEff"), 16) == int(Path("/proc/self/status").read_text().split("CapBnd:")[1]
                                                        .split()[0], 16)
    assert _status(cri, priv, "Seccomp") == "0"
    assert _sh(cri, priv, "wc -c < /proc/timer_list")[1].strip() != "0"   # nothing masked


def test_seccomp_profiles(cri: Cri, pod: tuple[str, Any], tmp_path: Path) -> None:
    assert _status(cri, _run(cri, pod, "sc-default", seccomp=pb.SecurityProfile(profile_type=SEC.RuntimeDefault)),
                   "Seccomp") == "2"
    assert _status(cri, _run(cri, pod, "sc-unconfined", seccomp=pb.SecurityProfile(profile_type=SEC.Unconfined)),
                   "Seccomp") == "0"
    assert _status(cri, _run(cri, pod, "sc-legacy", seccomp_profile_path="unconfined"), "Seccomp") == "0"
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    cid = _run(cri, pod, "sc-local", seccomp=pb.SecurityProfile(profile_type=SEC.Localhost, localhost_ref=str(profile)))
    assert _status(cri, cid, "Seccomp") == "2"
    code, out = _sh(cri, cid, "mkdir /tmp/d")
    assert code != 0 and "Operation not permitted" in out
    assert _sh(cri, cid, "touch /tmp/f && echo ok") == (0, "ok\n")   # only mkdir is denied
    with pytest.raises(grpc.RpcError) as e:
        _run(cri, pod, "sc-missing", seccomp=pb.SecurityProfile(profile_type=SEC.Localhost,
                                                                localhost_ref=str(tmp_path / "nope.json")))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "failed to load seccomp profile" in (e.value.details() or "")


def test_masked_and_readonly_paths(cri: Cri, pod: tuple[str, Any]) -> None:
    dflt = _run(cri, pod, "paths-default")
    assert _sh(cri, dflt, "wc -c < /proc/timer_list") == (0, "0\n")       # Docker's masked list
    assert _sh(cri, dflt, "wc -c < /proc/version")[1].strip() != "0"
    cid = _run(cri, pod, "paths", masked_paths=["/proc/version"], readonly_paths=["/etc"])
    assert _sh(cri, cid, "wc -c < /proc/version") == (0, "0\n")
    assert _sh(cri, cid, "wc -c < /proc/timer_list")[1].strip() != "0"   # the kubelet's list replaces Docker's
    code, out = _sh(cri, cid, "touch /etc/x")
    assert code != 0 and "Read-only file system" in out
