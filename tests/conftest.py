"""Test options shared by every suite: root-only tests run with --run-root as uid 0; tests
marked ``host_userns(reason)`` are skipped, with the reason, when BERTH_TEST_DAEMON_ARGS runs
the suite's berthd with user namespaces (``--userns-default auto``, ``--userns-remap``)."""

from __future__ import annotations

import os

import pytest

# The CRI tests hold a gRPC channel in this process, and the runtime tests fork it: gRPC's fork
# handlers aborted pytest there (os.fork() with gRPC threads busy). Off before grpc is imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-root", action="store_true", default=False,
                     help="run tests that need uid 0 and a real kernel (namespaces, cgroups, overlayfs)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "root: needs uid 0 and a real kernel (run with --run-root)")
    config.addinivalue_line("markers", "host_userns(reason): inherently needs the host's user namespace "
                                       "(skipped when the suite's berthd gives containers their own)")


def _suite_userns() -> bool:
    return "--userns" in os.environ.get("BERTH_TEST_DAEMON_ARGS", "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _suite_userns():
        for item in items:
            mark = item.get_closest_marker("host_userns")
            if mark is not None:
                item.add_marker(pytest.mark.skip(reason=f"user namespace: {mark.args[0]}"))
    if config.getoption("--run-root") and os.geteuid() == 0:
        return
    why = "needs --run-root as uid 0" if os.geteuid() == 0 else "needs uid 0"
    skip = pytest.mark.skip(reason=why)
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)
