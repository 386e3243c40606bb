"""network.cni running real plugin programs (shell scripts in tmp_path that log their calls): a
plugin that cannot be executed is a CniError and the plugins that ran are DELed; a cancelled
call leaves no plugin process behind, and DELs the plugins that ran, as a failure does."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from berth.network import cni

RESULT = {"cniVersion": "1.0.0", "ips": [{"address": "10.9.0.2/24"}]}


def _plugin(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def _setup(tmp_path: Path, second: str) -> tuple[cni.Cni, cni.Network, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    _plugin(bin_dir, "ok", f'echo "$CNI_COMMAND" >> {calls}\ncat >/dev/null\necho \'{json.dumps(RESULT)}\'\n')
    _plugin(bin_dir, "second", second)
    net = cni.Network("pods", "1.0.0", [{"type": "ok"}, {"type": "second"}])
    return cni.Cni(str(tmp_path / "conf"), [str(bin_dir)], tmp_path / "cache"), net, calls


def test_a_plugin_that_cannot_run_is_a_cni_error_and_the_chain_is_undone(tmp_path: Path) -> None:
    c, net, calls = _setup(tmp_path, "")
    (tmp_path / "bin" / "second").write_bytes(b"\x7fELF not really")  # executable, but exec fails (ENOEXEC)
    with pytest.raises(cni.CniError, match='plugin type="second" could not be run \\(add\\): .*second: exec format error'):
        asyncio.run(c.add(net, cni.Attachment("cid", "/proc/1/ns/net")))
    assert calls.read_text().split() == ["ADD", "DEL"]
    assert c.cached("cid") is None


def test_a_cancelled_add_kills_its_plugin(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    c, net, _ = _setup(tmp_path, f'[ "$CNI_COMMAND" = ADD ] || exit 0\necho $$ > {pid_file}\nexec sleep 60\n')

    async def cancel_midway() -> None:
        task = asyncio.ensure_future(c.add(net, cni.Attachment("cid", "/proc/1/ns/net")))
        while not pid_file.exists() or not pid_file.read_text().strip():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    asyncio.run(cancel_midway())
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(pid), "the plugin outlived the cancelled ADD"


def _alive(pid: int) -> bool:
    """Running, not reaped or a zombie."""
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def test_a_cancelled_add_undoes_the_plugins_that_ran(tmp_path: Path) -> None:
    """The RunPodSandbox cancelled (its client gone, its deadline) while the second plugin runs:
    both are called with DEL, in reverse order, the first one's result as prevResult."""
    pid_file = tmp_path / "pid"
    calls = tmp_path / "calls"
    c, net, _ = _setup(tmp_path, f'echo "second $CNI_COMMAND" >> {calls}\ncat > {tmp_path}/stdin-$CNI_COMMAND\n'
                                 f'[ "$CNI_COMMAND" = ADD ] || exit 0\necho $$ > {pid_file}\nexec sleep 60\n')

    async def cancel_midway() -> None:
        task = asyncio.ensure_future(c.add(net, cni.Attachment("cid", "/proc/1/ns/net"), cache=False))
        while not pid_file.exists() or not pid_file.read_text().strip():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    asyncio.run(cancel_midway())
    assert calls.read_text().splitlines() == ["ADD", "second ADD", "second DEL", "DEL"]
    assert json.loads((tmp_path / "stdin-DEL").read_text())["prevResult"] == RESULT
    assert c.cached("cid") is None
