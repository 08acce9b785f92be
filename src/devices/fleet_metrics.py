"""The fleet's live state on /metrics, counted when Prometheus scrapes (one vectorized pass)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from prometheus_client.core import GaugeMetricFamily, Metric

from devices.fleet import OFFLINE, ONLINE, Fleet
from devices.fleet_query import STATUS_NAMES, live_flags, status_codes


class FleetCollector:
    """`mx_fleet_devices{status}` as the API counts statuses (alarm > fault > offline > online >
    unknown), and reachability whatever status shows first: `mx_fleet_online_devices` (heard
    from within 2.5 heartbeats), `mx_fleet_offline_devices` (declared offline by the sweep).
    A uitd component counts as its transmission device's reachability."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def collect(self) -> Iterator[Metric]:
        fleet = self.fleet
        by_status = np.bincount(status_codes(fleet), minlength=len(STATUS_NAMES))
        devices = GaugeMetricFamily("mx_fleet_devices", "Devices by status as the API shows it", labels=["status"])
        for name, n in zip(STATUS_NAMES, by_status.tolist(), strict=True):
            devices.add_metric([name], n)
        yield devices
        flags = live_flags(fleet, slice(0, fleet.size))
        yield GaugeMetricFamily("mx_fleet_online_devices", "Devices heard from within 2.5 heartbeat intervals",
                                value=int(((flags & ONLINE) != 0).sum()))
        yield GaugeMetricFamily("mx_fleet_offline_devices", "Devices declared offline (silent for 2.5 heartbeats)",
                                value=int(((flags & OFFLINE) != 0).sum()))
