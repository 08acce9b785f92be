"""The alarm service's two halves when correlation is partitioned (docs/scale-out.md).

- `PartitionAlarms` (a worker): correlates the readings of its own partition against its fleet,
  exactly like the single process, but runs no offline sweep: a worker hears only its
  partition, and a network outage groups the devices of one NB cell across units.
- `FleetAlarms` (the fleet/API process): follows every partition, so its fleet is complete; it
  applies the readings without correlating them, and owns what needs the whole fleet: the
  offline sweep, `network_outage` per cell and the clearing of offline alarms of devices heard
  again.

Both write through the same `AlarmLifecycle`: one open alarm per (key, type) is enforced by
PostgreSQL, whatever process writes.
"""

from __future__ import annotations

from alerting.service import AlarmService, enrich, received_times
from devices.batch import ReadingColumns
from devices.reading import Reading


class PartitionAlarms(AlarmService):
    async def sweep(self, now_ms: int) -> None:
        """The fleet process sweeps; a worker's fleet never declares a device offline."""


class FleetAlarms(AlarmService):
    async def on_batch(self, readings: list[Reading], columns: ReadingColumns) -> None:
        """Apply to the complete fleet; clear the offline alarms of devices heard again."""
        applied = self.fleet.apply(columns)
        if len(applied.came_online):
            decisions = self.correlator.came_online(applied.came_online, self.fleet, self.clock())
            if decisions:
                enrich(decisions, readings)
                await self.lifecycle.handle(decisions, received_times(decisions, readings))
