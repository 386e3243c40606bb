"""The engine returns typed records and the API writes Docker's JSON from them: the health log
of inspect and docker cp's path stat header."""

from __future__ import annotations

import base64
import json

import msgspec

from berth.api.containers_io import _stat_header
from berth.api.containers_shape import health_json
from berth.engine.archive import PathStat
from berth.engine.health import Health, Probe


def test_health_log_entries_are_dockerd_objects() -> None:
    h = Health("unhealthy", 3, [Probe("2024-01-01T00:00:00Z", "2024-01-01T00:00:01Z", 1, "boom")])
    assert health_json(h) == {"Status": "unhealthy", "FailingStreak": 3, "Log": [
        {"Start": "2024-01-01T00:00:00Z", "End": "2024-01-01T00:00:01Z", "ExitCode": 1, "Output": "boom"}]}


def test_path_stat_round_trips_the_helpers_json_into_dockers_header() -> None:
    helper = b'{"name":"ln","size":3,"mode":134218239,"mtime":"2024-01-01T00:00:00Z","linkTarget":"/etc"}'
    st = msgspec.json.decode(helper, type=PathStat)
    assert st.link_target == "/etc"
    header = _stat_header(st)["X-Docker-Container-Path-Stat"]
    assert json.loads(base64.b64decode(header)) == json.loads(helper)
    assert list(json.loads(base64.b64decode(header))) == ["name", "size", "mode", "mtime", "linkTarget"]
