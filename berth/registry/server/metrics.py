"""Counters for ``/metrics`` in the Prometheus text format (version 0.0.4)."""

from __future__ import annotations

import bisect
from collections import Counter

UPLOAD_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()   # (method, status)
        self.bytes_in = 0
        self.bytes_out = 0
        self.upload_buckets = [0] * (len(UPLOAD_BUCKETS) + 1)
        self.upload_sum = 0.0
        self.upload_count = 0

    def request(self, method: str, status: int, bytes_in: int, bytes_out: int) -> None:
        self.requests[(method, status)] += 1
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out

    def upload_done(self, seconds: float) -> None:
        self.upload_buckets[bisect.bisect_left(UPLOAD_BUCKETS, seconds)] += 1
        self.upload_sum += seconds
        self.upload_count += 1

    def render(self) -> str:
        lines = [
            "# HELP berth_registry_http_requests_total HTTP requests by method and status.",
            "# TYPE berth_registry_http_requests_total counter",
        ]
        for (method, status), n in sorted(self.requests.items()):
            lines.append(f'berth_registry_http_requests_total{{method="{method}",'
                         f'code="{status}"}} {n}')
        lines += [
            "# HELP berth_registry_http_request_bytes_total Request body bytes received.",
            "# TYPE berth_registry_http_request_bytes_total counter",
            f"berth_registry_http_request_bytes_total {self.bytes_in}",
            "# HELP berth_registry_http_response_bytes_total Response body bytes sent.",
            "# TYPE berth_registry_http_response_bytes_total counter",
            f"berth_registry_http_response_bytes_total {self.bytes_out}",
            "# HELP berth_registry_blob_upload_duration_seconds From upload start to commit.",
            "# TYPE berth_registry_blob_upload_duration_seconds histogram",
        ]
        total = 0
        for bound, n in zip((*UPLOAD_BUCKETS, None), self.upload_buckets):
            total += n
            le = "+Inf" if bound is None else repr(bound)
            lines.append(f'berth_registry_blob_upload_duration_seconds_bucket{{le="{le}"}} {total}')
        lines += [
            f"berth_registry_blob_upload_duration_seconds_sum {self.upload_sum}",
            f"berth_registry_blob_upload_duration_seconds_count {self.upload_count}",
        ]
        return "\n".join(lines) + "\n"
