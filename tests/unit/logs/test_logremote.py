"""The syslog and journald options as dockerd reads them: tag templates, addresses (default
port 514), facilities by name or number; the journal fields of a container."""

from __future__ import annotations

import pytest

from berth.engine import logdrivers, logremote
from berth.errors import InvalidArgument

INFO = logremote.Info("0123456789abcdef" * 4, "web", "sha256:" + "fedcba9876543210" * 4, "nginx:1")


def test_tag_templates() -> None:
    assert logremote.tag("", INFO) == "0123456789ab"
    assert logremote.tag("{{.Name}}/{{ .ID }}", INFO) == "web/0123456789ab"
    assert logremote.tag("{{.ImageName}} {{.ImageID}} {{.FullID}}", INFO) == \
        f"nginx:1 fedcba987654 {INFO.id}"
    with pytest.raises(InvalidArgument, match="can't evaluate field Bogus"):
        logremote.tag("{{.Bogus}}", INFO)


@pytest.mark.parametrize("given, want", [
    ("", ""), ("udp://127.0.0.1", "udp://127.0.0.1:514"), ("tcp://127.0.0.1:6514", "tcp://127.0.0.1:6514"),
    ("tcp://[::1]", "tcp://[::1]:514"), ("udp://[::1]:99", "udp://[::1]:99"),
])
def test_addresses(given: str, want: str) -> None:
    assert logremote.address(given) == want


def test_bad_addresses() -> None:
    with pytest.raises(InvalidArgument, match="unsupported scheme: 'http'"):
        logremote.address("http://x")
    with pytest.raises(InvalidArgument, match="no such file"):
        logremote.address("unix:///nonexistent/sock")
    assert logremote.address("tcp+tls://127.0.0.1") == "tcp+tls://127.0.0.1:514"


def test_facilities() -> None:
    assert logremote.facility("") == 3 and logremote.facility("local7") == 23 and logremote.facility("4") == 4
    for bad in ("24", "-1", "nope"):
        with pytest.raises(InvalidArgument, match="invalid syslog facility"):
            logremote.facility(bad)


def test_journald_fields_and_normalize() -> None:
    r = logremote.resolve("journald", {"tag": "t-{{.Name}}"}, INFO, "/j.sock")
    assert r.address == "/j.sock" and r.fields == {
        "CONTAINER_ID": INFO.id[:12], "CONTAINER_ID_FULL": INFO.id, "CONTAINER_NAME": "web",
        "CONTAINER_TAG": "t-web", "IMAGE_NAME": "nginx:1", "SYSLOG_IDENTIFIER": "t-web"}
    assert logdrivers.normalize("journald", {"tag": "x"}) == ("journald", {"tag": "x"})
    with pytest.raises(InvalidArgument, match="unknown log opt 'max-size' for journald log driver"):
        logdrivers.normalize("journald", {"max-size": "1m"})
