"""The long schemathesis run (issue 16): many cases of every single-host Engine API operation
against a fresh berthd in its own network namespace; prints each case that misses the bar and
a summary (cases, problems, canaries, whether berthd lived). As root, from the tree's root:

    python -m tests.fuzz.api_long --examples 200 [--seed N] [--only /containers]

Exit status 0 when nothing missed the bar."""

from __future__ import annotations

import argparse
import collections
import sys
import time

from tests.fuzz import api_schema as fz
from tests.integration.daemon import Daemon


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=200, help="cases per operation")
    p.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: derandomized)")
    p.add_argument("--only", default="", help="only the operations whose path starts with this")
    args = p.parse_args()
    spec = fz.spec_path()
    if spec is None:
        print(f"no {fz.SPEC_NAME} under {fz.SPECS}", file=sys.stderr)
        return 2
    ns_gen = fz.netns()
    d = Daemon(netns=next(ns_gen))
    problems: list[fz.Verdict] = []
    statuses: collections.Counter[int] = collections.Counter()
    spent: collections.Counter[str] = collections.Counter()
    sent, t0 = 0, time.monotonic()
    try:
        d.start()
        d.import_busybox("busybox:latest")
        sock = str(d.sock)
        fz.make_canaries(sock)
        before = fz.snapshot(sock)

        def report(v: fz.Verdict) -> None:
            statuses[v.answer.status] += 1
            spent[f"{v.method} {v.path}"] += v.answer.total_s
            if v.problems:
                problems.append(v)
                print(f"{v.method} {v.url[:300]}: {v.problems}", flush=True)

        for op in fz.operations(spec):
            if not op.path.startswith(args.only):
                continue
            sent += fz.run_operation(sock, op, args.examples, args.seed, report)
            assert d.proc is not None
            if d.proc.poll() is not None:
                print(f"berthd died during {op.method.upper()} {op.path}", flush=True)
                return 1
        after = fz.snapshot(sock)
        changed = before != after
        print(f"cases {sent} in {time.monotonic() - t0:.0f} s; problems {len(problems)}; "
              f"statuses {dict(sorted(statuses.items()))}; canaries {'CHANGED' if changed else 'unchanged'}; "
              "berthd alive")
        print("slowest: " + ", ".join(f"{k} {t:.1f} s" for k, t in spent.most_common(6)))
        if changed:
            print(f"before: {before}\nafter:  {after}")
        return 1 if problems or changed else 0
    finally:
        d.cleanup()
        ns_gen.close()


if __name__ == "__main__":
    sys.exit(main())
