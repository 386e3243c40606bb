"""berth.oci.spec: config.json round trips, unknown fields ignored, missing ones defaulted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from berth.oci.spec import Process, Spec, decode_spec, encode_spec

REF = Path("/work/shared/reference/security")
FILES = [REF / "docker-run-busybox.config.json", *sorted((REF / "docker-run-variants").glob("*.json"))]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_reference_round_trip(path: Path) -> None:
    raw = path.read_bytes()
    assert json.loads(encode_spec(decode_spec(raw))) == json.loads(raw)


def test_unknown_fields_ignored_missing_defaulted() -> None:
    spec = decode_spec(b'{"process": {"args": ["true"], "frobnicate": 1}, "vendorThing": {}}')
    assert spec.process is not None
    assert spec.process.args == ["true"]
    assert spec.process.cwd == "/"
    assert spec.process.user.uid == 0 and spec.process.user.gid == 0
    assert spec.ociVersion == "1.0.2-dev"
    assert spec.mounts == [] and spec.linux is None


def test_defaults_docker_always_writes_are_encoded() -> None:
    out = json.loads(encode_spec(Spec(process=Process(args=["x"]))))
    assert out["ociVersion"] == "1.0.2-dev"
    assert out["process"]["cwd"] == "/"
    assert "terminal" not in out["process"] and "noNewPrivileges" not in out["process"]
