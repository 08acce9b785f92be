"""The whole scenario library, cast onto one simulated fleet, played at once against the real
service (PostgreSQL, MQTT broker, HTTP push, GB/T 26875 TCP) and scored with its ground truth.

The service runs on the simulator's `SimClock`: the minutes in which messages flow play at
`COMPRESSION`, then the clock runs at `IDLE_COMPRESSION` through the ~60 silent hours the
cell outage needs until its devices are overdue. The score table is printed (`pytest -s`) and
written to test-artifacts/scenario-scores.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from miaoxiang.settings import Settings
from simulators.clock import SimClock
from simulators.score import all_met, format_table
from simulators.session import COMMAND_REAL_S, Plan, Target, run_session
from tests.service import running_service

DEVICES, SEED = 300, 7
COMPRESSION = 30.0  # the busy ~12 scenario minutes take ~25 s
IDLE_COMPRESSION = 4000.0  # the silent ~60 scenario hours take ~55 s
SWEEP_S = 0.02


@pytest.mark.timeout(170)
async def test_every_scenario_meets_its_ground_truth(settings: Settings, artifacts: Path) -> None:
    settings = settings.model_copy(update={"sweep_interval_s": SWEEP_S, "gb26875_host": "127.0.0.1"})
    clock = SimClock.live(COMPRESSION)
    async with running_service(settings, clock=clock.now_ms) as svc:
        target = Target(
            base_url=svc.base_url, token="test-admin-token", mqtt_url=settings.mqtt_url or "",
            topic_root=settings.topic(), gb26875=("127.0.0.1", svc.app.state.services.gb26875.port),
            device_tz=settings.device_tz,
        )
        plan = Plan(devices=DEVICES, seed=SEED, rate=2000, compression=COMPRESSION,
                    idle_compression=IDLE_COMPRESSION, sweep_slack_s=SWEEP_S * IDLE_COMPRESSION,
                    command_slack_s=COMMAND_REAL_S * (COMPRESSION - 1))
        result = await run_session(target, plan, clock=clock)
    table = format_table(result.rows)
    (artifacts / "scenario-scores.md").write_text(
        f"# Scenario scores ({DEVICES} devices, seed {SEED})\n\n{table}\n", encoding="utf-8"
    )
    print("\n" + table)
    assert result.unavailable == []
    assert {r.scenario for r in result.rows} == set(plan.scenarios)
    assert result.stats.failed == 0, result.stats.errors
    assert result.stats.skipped == 0
    assert all_met(result.rows), table
