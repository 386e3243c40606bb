"""The container lifecycle tests of berth's own runtime, run again with runc and crun as the
default runtime (``conftest``): run, exit codes, logs, -it terminals, exec, stop/kill,
restart, rm, cgroup limits, env/user/workdir. The functions are the existing tests, imported;
only the daemon under them changes."""

from __future__ import annotations

import pytest

from tests.integration.interactive.test_interactive_terminal import (  # noqa: F401 (fixtures, tests)
    name, test_exec_it_shell, test_exec_joins_namespaces_and_cgroup, test_exec_on_paused_and_stopped,
    test_exec_processes_cleaned_up_on_stop, test_exec_user_privileged_env_workdir, test_run_it_shell_prompt_resize_exit_code,
    test_stdin_piped_into_run_i_and_exec_i)
from tests.integration.test_docker_cli import (  # noqa: F401
    test_command_not_found_is_127, test_cpu_and_memory_limits_in_cgroup, test_create_start_prefix_ps,
    test_env_workdir_user, test_exit_code_propagates, test_kill_signal_wait_restart_rename_top,
    test_logs_tail_timestamps_follow, test_memory_limit_oom_kills_container_not_daemon, test_not_executable_is_126,
    test_pid1_hostname_and_no_host_processes, test_pids_limit_stops_fork_bomb, test_run_rm_echo,
    test_run_streams_stdout_and_stderr_apart, test_stop_sleep_exits_137_in_about_a_second)

pytestmark = pytest.mark.root


def test_the_runtime_ran_it(docker, berthd):
    """The cases above really ran under the external runtime: it knows the container."""
    r = docker("run", "-d", "busybox", "sleep", "30")
    cid = r.stdout.strip()
    try:
        rt = docker("inspect", "-f", "{{.HostConfig.Runtime}}", cid).stdout.strip()
        assert rt in ("runc", "crun")
        assert (berthd.exec_root / "runtimes" / rt / cid / "state.json").exists() or \
            (berthd.exec_root / "runtimes" / rt / cid / "status").exists()
    finally:
        docker("rm", "-f", cid)
