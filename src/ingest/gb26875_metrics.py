"""The GB/T 26875.3 listener's counters on /metrics, read when Prometheus scrapes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ingest.transports.gb26875_tcp import GB26875Server


class GB26875Collector:
    """`mx_gb26875_<counter>_total` for every field of `Counters`, and the open sessions."""

    def __init__(self, server: GB26875Server) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        counters = self.server.counters
        for f in dataclasses.fields(counters):
            yield CounterMetricFamily(f"mx_gb26875_{f.name}", f"GB/T 26875.3 listener: {f.name.replace('_', ' ')}",
                                      value=getattr(counters, f.name))
        yield GaugeMetricFamily(
            "mx_gb26875_sessions", "GB/T 26875.3 device sessions open", value=len(self.server.sessions)
        )
