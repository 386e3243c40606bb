"""What berthd imports before it listens (docs/performance.md, "Daemon start"): the modules
`daemon.main` loads at import are the CPU of every cold start before `/_ping` answers. msgspec
(≈60 ms of CPU on this machine with its users' structs) came in through the daemon.json
checks: config_values -> engine.logdrivers -> logremote -> the shim protocol."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# Not before listening: what only the engine (imported in a thread after listening) needs.
LATER = ("msgspec", "berth.runtime.shim.protocol", "berth.engine.containers", "berth.api.app")


def test_daemon_main_imports_nothing_the_engine_alone_needs() -> None:
    code = ("import sys, berth.daemon.main\n"
            f"print(' '.join(m for m in {LATER!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


# Not before the early thread answers /_ping (berth.api.early): the event loop and its server,
# imported while the thread answers.
LOOP = ("asyncio", "ssl", "concurrent.futures", "berth.api.http", "berth.daemon.serving")


def test_the_early_ping_needs_no_asyncio() -> None:
    code = ("import sys, berth.daemon.main, berth.daemon.prelisten\n"
            f"print(' '.join(m for m in {LOOP!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_a_bad_log_opt_in_the_configuration_is_still_refused(tmp_path: Path) -> None:
    """The check itself stays before listening: only the remote drivers' struct is lazy."""
    from berth.daemon.config import load
    from berth.daemon.config_values import ConfigError
    (tmp_path / "daemon.json").write_text("{}")
    for opts in (["--log-driver", "syslog", "--log-opt", "syslog-format=nope"],
                 ["--log-opt", "max-size=ten"], ["--log-driver", "json-file", "--log-opt", "bogus=1"]):
        try:
            load(["--data-root", str(tmp_path), "--config-file", str(tmp_path / "daemon.json"), *opts])
        except ConfigError as e:
            assert "log" in str(e)
        else:
            raise AssertionError(f"{opts} accepted")


# Not before the first request that needs the engine (GET /containers/json): the wiring, which
# that request waits for, imports neither the build itself (the Dockerfile's parser and
# instructions) nor the build context's loaders (urllib, http.client, email); the first build
# imports them.
FIRST_BUILD = ("berth.build.builder", "berth.build.instructions", "berth.build.dockerfile", "berth.build.context",
               "urllib.request", "http.client")


def test_the_wiring_leaves_the_build_to_the_first_build() -> None:
    code = ("import sys, berth.daemon.wiring\n"
            f"print(' '.join(m for m in {FIRST_BUILD!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
