"""The suite's short fuzz run: every target gets its corpus (seeds and the crashes found so far,
kept as regression inputs) and a fixed number of seeded mutants; only the parser's documented
errors may come out. Long runs: tests/fuzz/run.py (atheris)."""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from tests.fuzz.mutate import CORPUS, inputs
from tests.fuzz.targets import targets

ROOT = Path(__file__).resolve().parents[2]
TARGETS = targets()
RUNS = {"layer": 150, "dockerfile": 600, "tar_guard": 1500}  # per target; the rest: DEFAULT
DEFAULT = 2000


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_survives_its_corpus_and_seeded_mutants(name: str) -> None:
    t = TARGETS[name]
    if t.root and os.geteuid() != 0:
        pytest.skip("needs uid 0 (whiteouts are device nodes)")
    for i, data in enumerate(inputs(name, RUNS.get(name, DEFAULT), seed=0)):
        try:
            t.run(data)
        except t.allowed:
            pass
        except Exception:
            pytest.fail(f"{name}: input #{i} {data[:200]!r} crashed:\n{traceback.format_exc()}")


def test_every_target_has_a_corpus() -> None:
    assert {p.name for p in CORPUS.iterdir()} == set(TARGETS)
    assert all(any((CORPUS / n).iterdir()) for n in TARGETS)


def test_atheris_runs_a_target() -> None:
    """The long-run script works: atheris (coverage-guided) on one target, briefly."""
    r = subprocess.run([sys.executable, str(ROOT / "tests/fuzz/run.py"), "--target", "dns", "--runs", "300"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "Done 300 runs" in r.stderr, r.stderr[-3000:]
