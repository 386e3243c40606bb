

def test_a_docker_hosts_default_runc_without_runc_falls_back_to_berth(tmp_path: Path, monkeypatch) -> None:
    from berth.daemon import config, settings
    monkeypatch.setenv("PATH", str(tmp_path))  # no runc here
    args = config.parse(["--default-runtime", "runc", "--exec-root", str(tmp_path / "run")])
    rts = settings.runtimes(args)
    assert (rts.default, rts.names()) == ("berth", ["berth"])
    (tmp_path / "runc").write_text("#!/bin/sh\n")
    (tmp_path / "runc").chmod(0o755)
    rts = settings.runtimes(args)
    assert rts.default == "runc" and rts.configured == {"runc": {"path": str(tmp_path / "runc")}}
