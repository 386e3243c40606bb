"""``python -m berth.runtime.nsexec``: build berth-nsexec for this source (make venv, .ci/run)."""

from berth.runtime.nsexec import build

built = build()
print(built if built is not None else "berth-nsexec: not built (no C compiler): execs take the Python path")
