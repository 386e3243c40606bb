"""A slice of the integration suite under ``userns-default: auto`` (issue 17), in the normal
run: the suite's own tests of run, exec, a tty, volumes (the image's content copied up),
networks (published ports, a shared netns, the MAC through sysfs), build RUN with cache and
secret mounts, cp into a stopped container's volume, commit and --pid=container:, each
against a berthd whose every container has a user namespace of its own
(``BERTH_TEST_DAEMON_ARGS``). The whole suite runs the same way by hand:

    BERTH_TEST_DAEMON_ARGS="--userns-default auto" pytest --run-root tests/integration/...
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root
ROOT = Path(__file__).resolve().parents[2]

SLICE = [
    "tests/integration/test_docker_cli.py::test_env_workdir_user",
    "tests/integration/test_docker_cli.py::test_kill_signal_wait_restart_rename_top",
    "tests/integration/compat/test_exec_streams.py::test_exec_run_demux_splits_streams",
    "tests/integration/compat/test_exec_streams.py::test_attach_logs_replay_reaches_docker_py",
    "tests/integration/network/test_volume_mounts.py::test_image_volume_gets_the_image_content",
    "tests/integration/network/test_network_bridge.py::test_published_port_reachable_from_another_container",
    "tests/integration/network/test_network_bridge.py::test_container_mode_shares_the_namespace",
    "tests/integration/network/test_network_bridge.py::test_mac_address_through_the_api",
    "tests/integration/build/test_api.py::test_heredoc_cache_mount_secret",
    "tests/integration/compat/test_archive_states.py::test_put_archive_into_stopped_container_volume_lands_in_volume",
    "tests/integration/compat/test_commit.py::test_commit_container_config",
    "tests/integration/compat/test_hostconfig_applied.py::test_pid_container_joins_that_container",
]
EXPECTED = len(SLICE) + 1  # the tty test runs with and without a tty


def test_suite_slice_under_userns_default_auto(tmp_path: Path) -> None:
    env = {**os.environ, "BERTH_TEST_DAEMON_ARGS": "--userns-default auto", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "--run-root", "-p", "no:cacheprovider",
                        "-p", "no:randomly", "--basetemp", str(tmp_path / "t"), *SLICE],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    tail = r.stdout[-3000:]
    assert r.returncode == 0, tail
    assert f"{EXPECTED} passed" in tail and "skipped" not in tail, tail
