"""build_spec against the config.json files dockerd 20.10 generated (shared/reference/security)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from berth.errors import InvalidArgument
from berth.oci.spec import encode_spec
from berth.runtime.caps import ALL_CAPS
from berth.runtime.defaults import ANNOTATION_OVERLAY, ANNOTATION_USER, build_spec, merge_env

REF = Path("/work/shared/reference/security")
VARIANTS = REF / "docker-run-variants"


def _load(name: str) -> dict[str, Any]:
    path = REF / name if (REF / name).exists() else VARIANTS / name
    return json.loads(path.read_text())


def _kwargs_like(ref: dict[str, Any]) -> dict[str, Any]:
    """The ids and host paths of a reference file, so the outputs compare byte for byte."""
    mounts = {m["destination"]: m["source"] for m in ref["mounts"]}
    return dict(
        args=ref["process"]["args"], env=["PATH=/bin"], cwd="/", user="",
        hostname=ref["hostname"], rootfs=ref["root"]["path"], tty=False,
        hostname_file=mounts["/etc/hostname"], hosts_file=mounts["/etc/hosts"],
        resolv_file=mounts["/etc/resolv.conf"], cgroups_path=ref["linux"]["cgroupsPath"],
    )


def _built(seccomp: str = "unconfined", **kw: Any) -> dict[str, Any]:
    return json.loads(encode_spec(build_spec(seccomp=seccomp, **kw)))  # type: ignore[arg-type]


def _strip(ref: dict[str, Any]) -> dict[str, Any]:
    ref = json.loads(json.dumps(ref))
    ref.pop("hooks", None)  # libnetwork's prestart hook: berth omits it
    ref["linux"].pop("seccomp", None)  # compared separately (profile version)
    return ref


def test_default_busybox() -> None:
    ref = _load("docker-run-busybox.config.json")
    assert _built(**_kwargs_like(ref)) == _strip(ref)


VARIANT_FLAGS: dict[str, dict[str, Any]] = {
    "docker-run-busybox.cap-add-NET_ADMIN-SYS_PTRACE.cap-drop-CHOWN-NET_RAW.config.json":
        dict(cap_add=["NET_ADMIN", "SYS_PTRACE"], cap_drop=["CHOWN", "NET_RAW"]),
    "docker-run-busybox.cap-drop-ALL.cap-add-NET_BIND_SERVICE.config.json":
        dict(cap_drop=["ALL"], cap_add=["NET_BIND_SERVICE"]),
    "docker-run-busybox.read-only.config.json": dict(readonly_rootfs=True),
    "docker-run-busybox.user-1000.config.json": dict(user="1000:1000"),
    "docker-run-busybox.no-new-privileges.config.json": dict(no_new_privileges=True),
    "docker-run-busybox.limits.config.json":
        dict(memory=64 * 1024 * 1024, pids_limit=100, nano_cpus=500_000_000, ulimits=[("nofile", 1024, 2048)]),
    "docker-run-busybox.it-env-workdir-hostname.config.json":
        dict(tty=True, env=["PATH=/bin", "FOO=bar"], cwd="/tmp"),
}


@pytest.mark.parametrize("name", sorted(VARIANT_FLAGS), ids=lambda n: n.split(".")[1])
def test_variant(name: str) -> None:
    ref = _load(name)
    kw = _kwargs_like(ref) | VARIANT_FLAGS[name]
    assert _built(**kw) == _strip(ref)


def test_privileged() -> None:
    ref = _strip(_load("docker-run-busybox.privileged.config.json"))
    got = _built(**_kwargs_like(ref), privileged=True)
    # Differences on purpose: every cap up to CAP_CHECKPOINT_RESTORE (Docker >= 23, "every
    # capability the host has"), where 20.10 stopped at CAP_AUDIT_READ; and no linux.devices
    # (the list of host device nodes is the engine's to add, build_spec is pure).
    ref_caps = ref["process"]["capabilities"]
    assert ref_caps["bounding"] == list(ALL_CAPS[:38])
    for key in ("bounding", "effective", "permitted"):
        assert got["process"]["capabilities"][key] == list(ALL_CAPS)
        ref_caps[key] = list(ALL_CAPS)
    ref["linux"].pop("devices")
    assert got == ref


def test_seccomp_default_is_the_profile_for_the_caps() -> None:
    seccomp = pytest.importorskip("berth.runtime.seccomp")
    ref = _load("docker-run-busybox.config.json")
    got = _built(seccomp="default", **_kwargs_like(ref), cap_add=["SYS_PTRACE"])
    caps = got["process"]["capabilities"]["bounding"]
    assert got["linux"]["seccomp"] == json.loads(json.dumps(seccomp.profile_for(caps)))
    assert "seccomp" not in _built(seccomp="default", **_kwargs_like(ref), privileged=True)["linux"]


def test_named_user_goes_to_the_init() -> None:
    ref = _load("docker-run-busybox.config.json")
    got = _built(**_kwargs_like(ref) | dict(user="alice:staff"))
    assert got["annotations"] == {ANNOTATION_USER: "alice:staff"}
    assert got["process"]["capabilities"]["effective"]  # the init clears it for a non-root uid
    uid_only = _built(**_kwargs_like(ref) | dict(user="1000"))
    assert uid_only["annotations"] == {ANNOTATION_USER: "1000"}  # gid comes from /etc/passwd
    assert uid_only["process"]["user"]["uid"] == 1000
    assert "effective" not in uid_only["process"]["capabilities"]


def test_overlay_annotation_and_extra_annotations() -> None:
    ref = _load("docker-run-busybox.config.json")
    got = _built(**_kwargs_like(ref), overlay="lowerdir=/l,upperdir=/u,workdir=/w", annotations={"a": "b"})
    assert got["annotations"] == {"a": "b", ANNOTATION_OVERLAY: "lowerdir=/l,upperdir=/u,workdir=/w"}


def test_memory_swap_and_cpu_options() -> None:
    ref = _load("docker-run-busybox.config.json")
    res = _built(**_kwargs_like(ref), memory=100, memory_swap=-1, cpu_shares=512,
                 cpu_quota=20000, cpu_period=50000)["linux"]["resources"]
    assert res["memory"] == {"limit": 100, "swap": -1, "disableOOMKiller": False}
    assert res["cpu"] == {"shares": 512, "quota": 20000, "period": 50000}


def test_shm_size_and_cgroupns() -> None:
    ref = _load("docker-run-busybox.config.json")
    got = _built(**_kwargs_like(ref), shm_size=1024, cgroupns=True)
    shm = next(m for m in got["mounts"] if m["destination"] == "/dev/shm")
    assert shm["options"][-1] == "size=1024"
    assert got["linux"]["namespaces"][-1] == {"type": "cgroup"}


def test_unknown_capability() -> None:
    ref = _load("docker-run-busybox.config.json")
    with pytest.raises(InvalidArgument, match='unknown capability: "CAP_NOT_A_CAP"'):
        build_spec(**_kwargs_like(ref), cap_add=["NOT_A_CAP"], seccomp="unconfined")


def test_merge_env() -> None:
    assert merge_env(["FOO=1", "PATH=/x"], "h", True) == ["PATH=/x", "HOSTNAME=h", "TERM=xterm", "FOO=1"]
    assert merge_env([], "h", False)[0].startswith("PATH=/usr/local/sbin:")
