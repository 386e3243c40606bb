#!/usr/bin/env python3
"""Long fuzz runs: ``tests/fuzz/run.py --target X --seconds N`` (or ``--runs N``).

atheris (coverage-guided libFuzzer, with berth's modules instrumented) runs one target of
tests/fuzz/targets.py over its corpus, tests/fuzz/corpus/<target>/. New inputs go to a
scratch directory unless ``--grow`` (then into the corpus). A crash (an exception outside the
target's documented errors) stops the run, and libFuzzer writes the input as
``tests/fuzz/crashes/crash-<sha1>``: keep it in the corpus once fixed, as a regression input.
``--engine random`` runs the suite's seeded mutator instead (no coverage feedback).
``--target all`` runs every target in turn, ``--seconds`` each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))


def _atheris(name: str, seconds: int, runs: int, seed: int, grow: bool) -> int:
    import atheris
    with atheris.instrument_imports(include=["berth"]):
        from tests.fuzz.targets import targets
        t = targets()[name]
        try:
            t.run(b"")  # imports the parser's modules inside the block, so they are instrumented
        except Exception:
            pass

    def one(data: bytes) -> None:
        try:
            t.run(data)
        except t.allowed:
            pass

    corpus = HERE / "corpus" / name
    crashes = HERE / "crashes"
    crashes.mkdir(exist_ok=True)
    out = corpus if grow else Path(tempfile.mkdtemp(prefix=f"berth-fuzz-{name}-"))
    args = [sys.argv[0], f"-seed={seed}", f"-artifact_prefix={crashes}/", "-timeout=20", "-rss_limit_mb=4096",
            "-print_final_stats=1"]
    args += [f"-runs={runs}"] if runs else [f"-max_total_time={seconds}"]
    args += [str(out)] + ([] if grow else [str(corpus)])
    atheris.Setup(args, one)
    atheris.Fuzz()  # exits the process
    return 0


def _random(name: str, seconds: int, runs: int, seed: int) -> int:
    from tests.fuzz.mutate import inputs
    from tests.fuzz.targets import targets
    t = targets()[name]
    end = time.monotonic() + seconds
    n = 0
    for data in inputs(name, runs or 10**12, seed):
        if not runs and time.monotonic() > end:
            break
        n += 1
        try:
            t.run(data)
        except t.allowed:
            pass
        except Exception:
            path = HERE / "crashes" / f"crash-{name}-{seed}-{n}"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)
            print(f"{name}: crash on input {n}, saved as {path}\n{traceback.format_exc()}", file=sys.stderr)
            return 1
    print(f"{name}: Done {n} runs (random engine, seed {seed})", file=sys.stderr)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", required=True, help="a name from tests/fuzz/targets.py, or all")
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--runs", type=int, default=0, help="stop after this many inputs (instead of --seconds)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--engine", choices=("atheris", "random"), default="atheris")
    ap.add_argument("--grow", action="store_true", help="keep new interesting inputs in the corpus")
    a = ap.parse_args()
    if a.target == "all":  # one process per target: atheris.Fuzz() ends its process
        from tests.fuzz.targets import targets
        failed = 0
        for name in sorted(targets()):
            cmd = [sys.executable, __file__, "--target", name, "--seconds", str(a.seconds), "--seed", str(a.seed),
                   "--engine", a.engine] + (["--runs", str(a.runs)] if a.runs else []) + (["--grow"] if a.grow else [])
            failed |= subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)}).returncode != 0
        return int(failed)
    if a.engine == "random":
        return _random(a.target, a.seconds, a.runs, a.seed)
    if os.environ.get("BERTH_FUZZ_CHILD"):
        return _atheris(a.target, a.seconds, a.runs, a.seed, a.grow)
    # atheris.Fuzz() ends the process without Python's exit handlers: the run goes to a child
    # whose scratch files (its TMPDIR) this process removes afterwards
    scratch = tempfile.mkdtemp(prefix=f"berth-fuzz-{a.target}-")
    try:
        env = {**os.environ, "BERTH_FUZZ_CHILD": "1", "TMPDIR": scratch, "PYTHONPATH": str(ROOT)}
        return subprocess.run([sys.executable, __file__, *sys.argv[1:]], env=env).returncode
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
