"""contrib/systemd and `make install-systemd`: the units land under DESTDIR with PREFIX's berthd,
pass `systemd-analyze verify` without a word, keep an operator's daemon.json, and bring the
completions along."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def install(destdir: Path, prefix: Path) -> Path:
    subprocess.run(["make", "-s", "-C", str(ROOT), "install-systemd", f"DESTDIR={destdir}", f"PREFIX={prefix}"],
                   check=True, capture_output=True)
    return destdir / "etc/systemd/system"


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    p = tmp_path / "prefix"
    (p / "bin").mkdir(parents=True)
    (p / "bin/berthd").write_text("#!/bin/sh\n")  # what `pip install` puts there
    (p / "bin/berthd").chmod(0o755)
    return p


def test_install_puts_units_config_and_completions(tmp_path: Path, prefix: Path) -> None:
    units = install(tmp_path / "root", prefix)
    service = (units / "berth.service").read_text()
    assert f"ExecStart={prefix}/bin/berthd -H fd://\n" in service
    for line in ("Delegate=yes", "KillMode=process", "Requires=berth.socket", "Type=notify"):
        assert f"\n{line}\n" in service
    assert "ListenStream=/run/berth/berth.sock" in (units / "berth.socket").read_text()
    assert json.loads((tmp_path / "root/etc/berth/daemon.json").read_text())["live-restore"] is True
    for rel in ("share/bash-completion/completions/berth", "share/zsh/site-functions/_berth",
                "share/fish/vendor_completions.d/berth.fish"):
        assert (tmp_path / "root" / str(prefix).lstrip("/") / rel).is_file()


def test_install_keeps_an_existing_daemon_json(tmp_path: Path, prefix: Path) -> None:
    conf = tmp_path / "root/etc/berth/daemon.json"
    conf.parent.mkdir(parents=True)
    conf.write_text('{"debug": true}\n')
    install(tmp_path / "root", prefix)
    assert conf.read_text() == '{"debug": true}\n'


def test_units_pass_systemd_analyze_verify(tmp_path: Path, prefix: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is not installed (.ci/run installs systemd)")
    units = install(tmp_path / "root", prefix)
    r = subprocess.run(["systemd-analyze", "verify", str(units / "berth.socket"), str(units / "berth.service")],
                       capture_output=True, text=True)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


def test_the_user_unit_passes_systemd_analyze_verify(tmp_path: Path, prefix: Path) -> None:
    """contrib/systemd/user/berth.service, with berthd's path put in as its comment says."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("needs systemd-analyze (systemd)")
    text = (ROOT / "contrib/systemd/user/berth.service").read_text()
    assert "ExecStart=@BERTHD@\n" in text and "\nDelegate=yes\n" in text and "\nNotifyAccess=all\n" in text
    unit = tmp_path / "berth.service"
    unit.write_text(text.replace("@BERTHD@", f"{prefix}/bin/berthd"))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
