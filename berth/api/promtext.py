"""The Prometheus text exposition format (version 0.0.4), written by hand.

berthd does not import ``prometheus_client`` (its start-up is on a budget, and the format is
small): a ``Family`` is one metric's ``# HELP`` / ``# TYPE`` header and its samples; a
``Histogram`` keeps cumulative bucket counts per label set.

    f = Family("berth_images", "gauge", "Images in the store")
    f.add(3)
    f.render() == '# HELP berth_images Images in the store\\n# TYPE berth_images gauge\\nberth_images 3\\n'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# prometheus_client's default buckets, in seconds
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


def escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def label_text(pairs: tuple[tuple[str, str], ...]) -> str:
    """``a="1",b="2"``: labels for ``Family.add_labelled``."""
    return ",".join(f'{k}="{escape(v)}"' for k, v in pairs)


def labels(pairs: tuple[tuple[str, str], ...]) -> str:
    """``{a="1",b="2"}``, or "" for no labels."""
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in pairs) + "}"


def number(v: float) -> str:
    if isinstance(v, int):
        return str(v)
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


@dataclass
class Family:
    """One metric family: a name, a type (counter, gauge, histogram) and its sample lines."""

    name: str
    type: str
    help: str
    lines: list[str] = field(default_factory=list)

    def add(self, value: float, pairs: tuple[tuple[str, str], ...] = (), suffix: str = "") -> None:
        self.lines.append(f"{self.name}{suffix}{labels(pairs)} {number(value)}")

    def add_labelled(self, inner: str, value: float) -> None:
        """A sample whose labels are already written (``label_text``, without the braces):
        a scrape of many containers writes each container's labels once."""
        self.lines.append(f"{self.name}{{{inner}}} {number(value)}")

    def render(self) -> str:
        head = f"# HELP {self.name} {self.help}\n# TYPE {self.name} {self.type}\n"
        return head + "".join(line + "\n" for line in self.lines)


class Histogram:
    """Observations per label set, as cumulative ``_bucket{le=...}``, ``_sum`` and ``_count``."""

    def __init__(self, name: str, help: str, buckets: tuple[float, ...] = LATENCY_BUCKETS):
        self.name = name
        self.help = help
        self.buckets = buckets
        self._series: dict[tuple[tuple[str, str], ...], list[float]] = {}  # counts per bucket, +Inf, sum

    def observe(self, pairs: tuple[tuple[str, str], ...], value: float) -> None:
        s = self._series.get(pairs)
        if s is None:
            s = self._series[pairs] = [0] * (len(self.buckets) + 1) + [0.0]
        for i, le in enumerate(self.buckets):
            if value <= le:
                s[i] += 1
                break
        else:
            s[len(self.buckets)] += 1
        s[-1] += value

    def family(self) -> Family:
        f = Family(self.name, "histogram", self.help)
        for pairs, s in self._series.items():
            total = 0
            for i, le in enumerate((*self.buckets, math.inf)):
                total += int(s[i])
                f.add(total, (*pairs, ("le", number(float(le)))), "_bucket")
            f.add(total, pairs, "_count")
            f.add(s[-1], pairs, "_sum")
        return f
