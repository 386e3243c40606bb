"""A pull nobody waits for is cancelled (issue 16): when the client hangs up during a pull from
a slow registry, berthd closes its upstream connection and leaves nothing half-done behind;
with two clients pulling the same image, the pull goes on until the last one leaves. Docker
cancels a pull the same way (its pulls are shared by reference and refcounted)."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from typing import Iterator

import pytest

from tests.integration.compat.lying_registry import make_image
from tests.integration.compat.slow_registry import SlowRegistry
from tests.integration.daemon import Daemon

pytestmark = pytest.mark.root


@pytest.fixture
def slow() -> Iterator[SlowRegistry]:
    r = SlowRegistry(interval=0.3)
    yield r
    r.close()


def _start_pull(d: Daemon, ref: str) -> socket.socket:
    """A client that asks for a pull and reads its first progress lines."""
    repo, _, tag = ref.rpartition(":")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(d.sock))
    s.sendall(f"POST /v1.41/images/create?fromImage={repo}&tag={tag} HTTP/1.1\r\nHost: x\r\n"
              "Content-Length: 0\r\n\r\n".encode())
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    return s


def _wait(cond, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def _leftovers(d: Daemon) -> list[str]:
    """Half-done pull state: ingests in the content store, staged layers."""
    out = []
    for sub in ("image/blobs/ingest", "image/tmp"):
        p = d.data_root / sub
        if p.is_dir():
            out += [f"{sub}/{n}" for n in os.listdir(p)]
    return out


def _image_exists(d: Daemon, ref: str) -> bool:
    return d.request("GET", f"/images/{ref}/json")[0] == 200


def _pull_now(d: Daemon, ref: str) -> list[dict]:
    repo, _, tag = ref.rpartition(":")
    status, body = d.request("POST", f"/images/create?fromImage={repo}&tag={tag}", timeout=30)
    assert status == 200, body
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def test_a_client_hanging_up_cancels_its_pull(berthd: Daemon, slow: SlowRegistry):
    ref = f"{slow.host}/slow/{uuid.uuid4().hex[:10]}:v1"
    slow.publish(ref.split("/", 1)[1].rpartition(":")[0], "v1", make_image(os.urandom(1500).hex()))
    client = _start_pull(berthd, ref)
    assert _wait(lambda: any(c.sent for c in slow.blob_conns)), "the layer download did not start"
    assert slow.open_conns()
    client.close()
    assert _wait(lambda: not slow.open_conns(), timeout=5), "berthd kept downloading for nobody"
    assert _wait(lambda: not _leftovers(berthd), timeout=5), _leftovers(berthd)
    assert not _image_exists(berthd, ref)
    sent = sum(c.sent for c in slow.blob_conns)
    time.sleep(1)
    assert sum(c.sent for c in slow.blob_conns) == sent and not slow.open_conns()

    slow.slow = False  # a later pull works, and finds nothing in its way
    try:
        lines = _pull_now(berthd, ref)
        assert not [m for m in lines if "error" in m], lines
        assert _image_exists(berthd, ref)
    finally:
        berthd.request("DELETE", f"/images/{ref}")


def test_a_shared_pull_goes_on_until_its_last_client_leaves(berthd: Daemon, slow: SlowRegistry):
    ref = f"{slow.host}/slow/{uuid.uuid4().hex[:10]}:v1"
    slow.publish(ref.split("/", 1)[1].rpartition(":")[0], "v1", make_image(os.urandom(1500).hex()))
    first = _start_pull(berthd, ref)
    assert _wait(lambda: any(c.sent for c in slow.blob_conns)), "the layer download did not start"
    second = _start_pull(berthd, ref)
    time.sleep(0.5)
    assert len(slow.blob_conns) == 1, "the second client did not join the first's pull"
    first.close()
    time.sleep(1.5)
    assert slow.open_conns(), "the pull stopped while a client still waited for it"
    before = slow.blob_conns[0].sent
    assert _wait(lambda: slow.blob_conns[0].sent > before)
    second.settimeout(0.2)
    try:  # the second client still gets the progress of the pull it joined
        assert b"Downloading" in second.recv(65536)
    finally:
        second.close()
    assert _wait(lambda: not slow.open_conns(), timeout=5), "berthd kept downloading for nobody"
    assert _wait(lambda: not _leftovers(berthd), timeout=5), _leftovers(berthd)
    assert not _image_exists(berthd, ref)
