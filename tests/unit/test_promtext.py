"""promtext writes what prometheus_client's parser reads back: escaped label values, integer
and float values, histograms with cumulative buckets."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from berth.api.promtext import Family, Histogram


def test_label_values_round_trip_through_the_parser() -> None:
    f = Family("x_total", "counter", "things")
    odd = 'a "quoted" back\\slash\nnewline'
    f.add(3, (("name", odd), ("route", "/containers/{id}/json")))
    f.add(0.25, (("name", "plain"),))
    [fam] = text_string_to_metric_families(f.render())
    assert fam.name == "x" and fam.type == "counter"
    got = {s.labels["name"]: (s.labels.get("route"), s.value) for s in fam.samples}
    assert got == {odd: ("/containers/{id}/json", 3.0), "plain": (None, 0.25)}


def test_histogram_buckets_are_cumulative() -> None:
    h = Histogram("lat_seconds", "latency", buckets=(0.1, 1.0))
    for v in (0.05, 0.5, 0.5, 7.0):
        h.observe((("route", "/x"),), v)
    [fam] = text_string_to_metric_families(h.family().render())
    assert fam.type == "histogram"
    by = {(s.name, s.labels.get("le")): s.value for s in fam.samples}
    assert by[("lat_seconds_bucket", "0.1")] == 1
    assert by[("lat_seconds_bucket", "1.0")] == 3
    assert by[("lat_seconds_bucket", "+Inf")] == 4 == by[("lat_seconds_count", None)]
    assert by[("lat_seconds_sum", None)] == 8.05
