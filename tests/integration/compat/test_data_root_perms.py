"""The data root keeps host users out of image layers and containers' writable layers, as
dockerd does since 20.10.9 (CVE-2021-41091): a setuid file in an image is not a setuid file
that any host user can reach.

berthd runs here on a root whose parent is 0755 (as /var/lib is), so only the data root's own
modes stand between a host user and the layer store. The host user is ``nobody`` through
``setpriv``.
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.integration.daemon import Daemon

pytestmark = pytest.mark.root

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
BUSYBOX = Path("/bin/busybox")


def _rootfs_tar() -> bytes:
    """busybox, plus ``/bin/id`` a setuid-root copy of it."""
    data = BUSYBOX.read_bytes()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, mode in (("bin/busybox", 0o755), ("bin/id", 0o4755)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
        sh = tarfile.TarInfo("bin/sh")
        sh.type, sh.linkname = tarfile.SYMTYPE, "busybox"
        tar.addfile(sh)
    return out.getvalue()


def _start(d: Daemon) -> None:
    d.base.chmod(0o755)
    d.start()


@pytest.fixture(scope="module")
def daemon():
    if os.geteuid() != 0:
        pytest.skip("needs uid 0")
    if not BUSYBOX.exists():
        pytest.fail("needs /bin/busybox (.ci/run installs busybox-static)")
    d = Daemon()
    _start(d)
    try:
        status, body = d.request("POST", "/images/create?fromSrc=-&repo=suid&tag=latest", _rootfs_tar())
        assert status == 200, body
        yield d
    finally:
        d.cleanup()


def _as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NOBODY, *argv], capture_output=True, text=True, timeout=30)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _setuid_in_layers(d: Daemon) -> Path:
    found = [p for p in (d.data_root / "image" / "layers").glob("*/diff/bin/id") if p.stat().st_mode & stat.S_ISUID]
    assert found, "the setuid file is not in the layer store"
    return found[0]


def test_data_root_is_not_listable(daemon):
    """Docker 20.10.9+, API 1.41: the data root is traversable but not readable by other users
    (dockerd makes /var/lib/docker 0711; berth 0701)."""
    assert _mode(daemon.data_root) in (0o701, 0o710)


def test_containers_dir_mode(daemon):
    """Docker 20.10.9+, API 1.41: ``containers/`` is 0710 (CVE-2021-41091)."""
    assert _mode(daemon.data_root / "containers") == 0o710


def test_layer_store_dir_mode(daemon):
    """Docker 20.10.9+, API 1.41: the layer store (dockerd's ``overlay2/``) is 0710."""
    assert _mode(daemon.data_root / "image" / "layers") == 0o710


def test_each_layer_dir_mode(daemon):
    """Docker 20.10.9+, API 1.41: each layer directory (dockerd's ``overlay2/<id>``) is 0701."""
    layers = list((daemon.data_root / "image" / "layers").iterdir())
    assert layers and all(_mode(p) == 0o701 for p in layers), {p.name: oct(_mode(p)) for p in layers}


def test_setuid_file_in_image_cannot_be_stat_by_host_user(daemon):
    """Docker 20.10.9+, API 1.41: a host user cannot reach a setuid file of an image through
    the layer store."""
    r = _as_nobody("stat", str(_setuid_in_layers(daemon)))
    assert r.returncode != 0
    assert "Permission denied" in r.stderr


def test_setuid_file_in_image_cannot_be_run_by_host_user(daemon):
    """Docker 20.10.9+, API 1.41: a host user cannot execute a setuid-root binary of an image
    from the layer store."""
    # Through a shell: setpriv's own execvp still holds root's capabilities while it looks
    # the path up (they go at execve), so it would prove nothing.
    r = _as_nobody("/bin/sh", "-c", '"$0" -u', str(_setuid_in_layers(daemon)))
    assert r.returncode != 0, f"ran as euid {r.stdout.strip()}"
    assert "Permission denied" in r.stderr


def test_setuid_file_in_container_layer_unreachable(daemon):
    """Docker 20.10.9+, API 1.41: a setuid file a container made in its writable layer is out of
    a host user's reach (``containers/`` is 0710)."""
    spec = {"Image": "suid:latest", "Cmd": ["/bin/sh", "-c", "cp /bin/busybox /made && chmod 4755 /made"]}
    status, body = daemon.request("POST", "/containers/create", json.dumps(spec).encode(),
                                  {"Content-Type": "application/json"})
    assert status == 201, body
    cid = json.loads(body)["Id"]
    try:
        assert daemon.request("POST", f"/containers/{cid}/start")[0] == 204
        status, body = daemon.request("POST", f"/containers/{cid}/wait", timeout=60)
        assert json.loads(body)["StatusCode"] == 0, body
        made = daemon.data_root / "containers" / cid / "upper" / "made"
        assert made.stat().st_mode & stat.S_ISUID
        r = _as_nobody("stat", str(made))
        assert r.returncode != 0 and "Permission denied" in r.stderr
    finally:
        daemon.request("DELETE", f"/containers/{cid}?force=1")


def test_metadata_db_not_readable_by_host_user(daemon):
    """Docker 20.10.9+, API 1.41: container configs (their Env included) are root's alone; here
    they live in ``berth.db``, which is 0600."""
    db = daemon.data_root / "berth.db"
    assert _mode(db) == 0o600
    r = _as_nobody("head", "-c", "16", str(db))
    assert r.returncode != 0


def test_existing_data_root_modes_fixed_at_start():
    """Docker 20.10.9+, API 1.41: dockerd chmods an existing data root and its ``containers/``
    and layer directories at start, so a root made by an older version is fixed too."""
    d = Daemon()
    try:
        _start(d)
        status, body = d.request("POST", "/images/create?fromSrc=-&repo=suid&tag=latest", _rootfs_tar())
        assert status == 200, body
        d.stop()
        loose = [d.data_root, d.data_root / "image", d.data_root / "image" / "layers", d.data_root / "containers",
                 *(d.data_root / "image" / "layers").iterdir()]
        for p in loose:
            p.chmod(0o755)
        (d.data_root / "berth.db").chmod(0o644)
        time.sleep(0.1)
        d.start()
        assert _mode(d.data_root) in (0o701, 0o710)
        assert [_mode(p) for p in loose[1:4]] == [0o710, 0o710, 0o710]
        assert all(_mode(p) == 0o701 for p in loose[4:])
        assert _mode(d.data_root / "berth.db") == 0o600
    finally:
        d.cleanup()
