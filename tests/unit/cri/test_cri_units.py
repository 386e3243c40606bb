"""CRI pieces without a daemon: the CRI log lines, berth's pause program (run for real), the
label encoding, timestamps, and the error -> gRPC code table."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from berth import errors
from berth.runtime.shim.logfile import encode_cri

import grpc  # noqa: E402  (the cri extra, part of the test extra)


def test_cri_log_lines() -> None:
    assert encode_cri(b"a\nb\n", "stdout", "T") == b"T stdout F a\nT stdout F b\n"
    assert encode_cri(b"a\nlong", "stderr", "T") == b"T stderr F a\nT stderr P long\n"
    assert encode_cri(b"\n", "stdout", "T") == b"T stdout F \n"


def test_pause_sleeps_until_killed(tmp_path: Path) -> None:
    from berth.cri.pause import elf
    if os.uname().machine != "x86_64":
        pytest.skip("berth's pause is x86-64 code")
    exe = tmp_path / "pause"
    exe.write_bytes(elf())
    exe.chmod(0o755)
    p = subprocess.Popen([str(exe)])
    try:
        time.sleep(0.2)
        assert p.poll() is None
        state = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert state == "S"  # asleep in pause(2), not spinning
        assert int(Path(f"/proc/{p.pid}/statm").read_text().split()[1]) <= 4  # resident pages: code, stack, vdso
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert p.returncode == -signal.SIGKILL


def test_pause_layer_is_one_executable() -> None:
    import io
    import tarfile
    from berth.cri.pause import layer
    with tarfile.open(fileobj=io.BytesIO(layer())) as t:
        (m,) = t.getmembers()
    assert (m.name, m.mode, m.uid) == ("pause", 0o755, 0)


def test_labels_round_trip() -> None:
    from berth.cri import meta
    docker = meta.encode(meta.CONTAINER, {"app": "x"}, {"a/b": "1"}, {meta.ATTEMPT: "2", meta.POD_NAME: "p"})
    assert docker[meta.TYPE] == "container"
    assert meta.user_labels(docker) == {"app": "x", meta.POD_NAME: "p"}
    assert meta.annotations_of(docker) == {"a/b": "1"}
    assert meta.selected(docker, {"app": "x"}) and not meta.selected(docker, {"app": "y"})


def test_nanos() -> None:
    from berth.cri.meta import nanos
    assert nanos("0001-01-01T00:00:00Z") == 0
    assert nanos("1970-01-01T00:00:01.000000005Z") == 1_000_000_005
    assert nanos("2024-01-02T03:04:05.5Z") == 1704164645_500000000


def test_every_error_kind_has_a_code() -> None:
    from berth.cri.errors import DeadlineExceeded, code_of
    kinds = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.BerthError)
             and c is not errors.BerthError]
    assert all(code_of(k("x")) != grpc.StatusCode.UNKNOWN or k is errors.RuntimeFailure for k in kinds)
    assert code_of(errors.NotFound("x")) == grpc.StatusCode.NOT_FOUND
    assert code_of(errors.AlreadyExists("x")) == grpc.StatusCode.ALREADY_EXISTS
    assert code_of(errors.InvalidArgument("x")) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(DeadlineExceeded("x")) == grpc.StatusCode.DEADLINE_EXCEEDED
