"""The suite's berthds read a CNI config dir of their own (``Daemon.cni_conf_dir``, empty
unless the test writes one), never the host's /etc/cni/net.d: a host with podman's or another
CNI config would change what the tests see. berthd's own default stays /etc/cni/net.d."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from berth.daemon import config
from tests.integration.cri.conftest import own_cri, pb, pod_config
from tests.integration.daemon import Daemon

pytestmark = pytest.mark.root


def _cmdline_value(pid: int, flag: str) -> str:
    args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return args[args.index(flag) + 1]


def test_session_berthd_has_a_cni_dir_of_its_own(berthd: Daemon) -> None:
    assert berthd.proc is not None
    assert _cmdline_value(berthd.proc.pid, "--cni-conf-dir") == str(berthd.cni_conf_dir)
    assert berthd.cni_conf_dir.is_relative_to(berthd.base) and berthd.cni_conf_dir.is_dir()


def test_own_berthd_reads_what_the_test_writes_there(tmp_path: Path) -> None:
    with own_cri() as (d, cri):
        assert d.proc is not None and _cmdline_value(d.proc.pid, "--cni-conf-dir") == str(d.cni_conf_dir)
        sid = cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=pod_config(tmp_path, "plain"))).pod_sandbox_id
        cri.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))   # no CNI config: the bridge
        doc = {"cniVersion": "1.0.0", "name": "own", "plugins": [{"type": "berth-test-no-such-plugin"}]}
        (d.cni_conf_dir / "10-own.conflist").write_text(json.dumps(doc))
        with pytest.raises(grpc.RpcError) as e:
            cri.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=pod_config(tmp_path, "cni")))
        assert 'failed to find plugin "berth-test-no-such-plugin"' in (e.value.details() or "")
        assert not cri.runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items


def test_berthd_default_is_still_etc_cni_net_d(tmp_path: Path) -> None:
    args = config.load([], default_file=str(tmp_path / "no-daemon.json"))
    assert (args.cni_conf_dir, args.cni_bin_dir) == ("/etc/cni/net.d", "/usr/lib/cni")
    # and an explicit one is kept by the suite's daemons
    d = Daemon(args=["--cni-conf-dir", str(tmp_path)])
    assert d._own_cni() == []
    d.base.rmdir()
