"""``/_ping`` (HEAD and GET) headers as dockerd 28 (API 1.50) sends them: the 20.10 set of the
wire traces (04-version-negotiation, 42-inspect: Api-Version, Docker-Experimental, Ostype,
Cache-Control, Pragma, Content-Type) plus ``Swarm`` and ``Builder-Version`` (API 1.42
changelog). Builder-Version is "1", dockerd's answer when BuildKit is off: berth builds with
the classic builder only.
"""

from __future__ import annotations

import http.client
import socket

import pytest

pytestmark = pytest.mark.root


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=10)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.unix_path)


def _ping(berthd, method: str) -> tuple[dict[str, str], bytes]:
    c = _Unix(str(berthd.sock))
    try:
        c.request(method, "/_ping")
        r = c.getresponse()
        assert r.status == 200
        return dict(r.getheaders()), r.read()
    finally:
        c.close()


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_ping_headers(berthd, method):
    """Docker 28, API 1.50: the ping's headers and values."""
    headers, body = _ping(berthd, method)
    want = {"Api-Version": "1.50", "Builder-Version": "1", "Docker-Experimental": "false", "Ostype": "linux",
            "Swarm": "inactive", "Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache",
            "Content-Type": "text/plain; charset=utf-8"}
    assert {k: headers.get(k) for k in want} == want
    assert headers["Server"].endswith("(linux)")
    assert (body, headers["Content-Length"]) == ((b"OK", "2") if method == "GET" else (b"", "0"))

