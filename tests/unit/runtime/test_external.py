"""berth's annotations as standard OCI fields for runc and crun (runtime/external.py), on a
rootfs in tmp_path; and the runtimes an engine knows by name (engine/runtimes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth.engine.runtimes import Runtimes
from berth.errors import InvalidArgument, RuntimeFailure
from berth.oci import spec as oci
from berth.runtime import external
from berth.runtime.defaults import ANNOTATION_GROUPS, ANNOTATION_USER, build_spec
from berth.state.paths import ExecRoot


def _rootfs(tmp_path: Path) -> str:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:100:app:/home/app:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\nusers:x:100:\nstaff:x:50:app\naudio:x:29:\n")
    return str(tmp_path)


def _spec(user: str, group_add: list[str] | None = None) -> oci.Spec:
    return build_spec(args=["sh"], env=[], cwd="/", user=user, hostname="h", rootfs="/r", tty=False,
                      hostname_file="", hosts_file="", resolv_file="", cgroups_path="/berth/x", group_add=group_add)


def test_a_named_user_becomes_ids_and_loses_capabilities(tmp_path: Path) -> None:
    s = _spec("app", ["audio"])
    assert s.process is not None and s.annotations and ANNOTATION_USER in s.annotations
    p = external.resolve_process(s.process, _rootfs(tmp_path), dict(s.annotations))
    assert (p.user.uid, p.user.gid, p.user.additionalGids) == (1000, 100, [100, 50, 29])
    assert p.capabilities is not None and p.capabilities.effective is None and p.capabilities.permitted is None
    assert p.capabilities.bounding and "CAP_CHOWN" in p.capabilities.bounding


def test_root_by_name_keeps_its_capabilities_and_unknown_names_are_refused(tmp_path: Path) -> None:
    root = _rootfs(tmp_path)
    s = _spec("root")
    assert s.process is not None
    p = external.resolve_process(s.process, root, dict(s.annotations or {}))
    assert p.user.uid == 0 and p.capabilities is not None and p.capabilities.effective
    with pytest.raises(RuntimeFailure, match="unable to find user nosuch: no matching entries in passwd file"):
        external.resolve_process(s.process, root, {ANNOTATION_USER: "nosuch"})
    with pytest.raises(RuntimeFailure, match="Unable to find group nogroup"):
        external.resolve_process(s.process, root, {ANNOTATION_GROUPS: "nogroup"})


def test_numeric_users_need_no_rootfs_and_privileged_keeps_only_the_hosts_caps(tmp_path: Path) -> None:
    s = build_spec(args=["sh"], env=[], cwd="/", user="1000:1000", hostname="h", rootfs="/r", tty=False,
                   hostname_file="", hosts_file="", resolv_file="", cgroups_path="", privileged=True)
    assert s.process is not None and not s.annotations
    p = external.resolve_process(s.process, str(tmp_path / "none"), {})
    assert (p.user.uid, p.user.gid) == (1000, 1000)
    have = int(next(line for line in open("/proc/self/status") if line.startswith("CapBnd:")).split()[1], 16)
    assert p.capabilities is not None and p.capabilities.bounding
    assert all(have >> external.capmod.CAP_NUMBER[c] & 1 for c in p.capabilities.bounding)


def test_crun_errors_in_runc_words() -> None:
    log = (b'{"msg": "executable file `nosuch` not found in $PATH: No such file or directory", "level": "error"}\n')
    assert external._last_error(log) == 'exec: "nosuch": executable file not found in $PATH'
    runc = b'{"level":"error","msg":"exec failed: unable to start container process: exec: \\"x\\": permission denied"}'
    assert external._last_error(runc) == 'exec: "x": permission denied'


def test_runtimes_by_name(tmp_path: Path) -> None:
    rts = Runtimes(configured={"crun": {"path": "/usr/bin/crun", "runtimeArgs": ["--debug"]}},
                   exec_root=ExecRoot(tmp_path))
    assert rts.check("") == "berth" and rts.oci("berth") is None
    rt = rts.oci("crun")
    assert rt is not None and rt.argv("state", "x") == ["/usr/bin/crun", "--root", str(tmp_path / "runtimes" / "crun"),
                                                       "--debug", "state", "x"]
    with pytest.raises(InvalidArgument, match="^unknown or invalid runtime name: runc$"):
        rts.check("runc")
    assert set(rts.info()) == {"berth", "crun"}


def test_a_docker_hosts_default_runc_without_runc_falls_back_to_berth(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from berth.daemon import config, settings
    monkeypatch.setenv("PATH", str(tmp_path))  # no runc here
    (tmp_path / "daemon.json").write_text("{}")
    args = config.load(["--config-file", str(tmp_path / "daemon.json"), "--default-runtime", "runc",
                        "--exec-root", str(tmp_path / "run")])
    rts = settings.runtimes(args)
    assert (rts.default, rts.names()) == ("berth", ["berth"])
    (tmp_path / "runc").write_text("#!/bin/sh\n")
    (tmp_path / "runc").chmod(0o755)
    rts = settings.runtimes(args)
    assert rts.default == "runc" and rts.configured == {"runc": {"path": str(tmp_path / "runc")}}
