"""Fixtures for remote access: test certificates (made once per session) and a free port."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.integration.remote.certs import Certs, make_certs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def certs() -> Iterator[Certs]:
    with tempfile.TemporaryDirectory(prefix="berth-certs-") as d:
        yield make_certs(Path(d))
