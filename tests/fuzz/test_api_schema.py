"""The suite's short schemathesis run (issue 16): a few cases of every single-host operation in
Docker's swagger against a real berthd; see api_schema.py for what is sent and the bar.
Long runs: tests/fuzz/api_long.py."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from tests.fuzz import api_schema as fz
from tests.integration.daemon import Daemon

pytestmark = pytest.mark.root
EXAMPLES = 4  # per operation, 59 operations: ~230 cases


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[Daemon]:
    spec = fz.spec_path()
    if os.geteuid() != 0:
        pytest.skip("needs uid 0")
    if spec is None:
        pytest.fail(f"no {fz.SPEC_NAME} under {fz.SPECS}")
    pytest.importorskip("schemathesis")
    ns_gen = fz.netns()
    ns = next(ns_gen)
    d = Daemon(netns=ns)
    try:
        d.start()
        d.import_busybox("busybox:latest")
        yield d
    finally:
        d.cleanup()
        ns_gen.close()


def test_every_operation_meets_the_bar_and_the_canaries_are_untouched(fuzzed: Daemon) -> None:
    spec = fz.spec_path()
    assert spec is not None
    sock = str(fuzzed.sock)
    fz.make_canaries(sock)
    before = fz.snapshot(sock)
    bad: list[fz.Verdict] = []
    sent = 0
    ops = fz.operations(spec)
    assert len(ops) == 59, [f"{o.method} {o.path}" for o in ops]  # 107 less the excluded 48
    for op in ops:
        sent += fz.run_operation(sock, op, EXAMPLES, None, lambda v: bad.append(v) if v.problems else None)
        assert fuzzed.proc is not None and fuzzed.proc.poll() is None, f"berthd died during {op.method} {op.path}"
    assert sent >= 2 * len(ops)
    assert not bad, "\n".join(f"{v.method} {v.url}: {v.problems}" for v in bad[:20])
    assert fz.snapshot(sock) == before
