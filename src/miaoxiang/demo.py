"""`miaoxiang demo`: the service (embedded PostgreSQL and MQTT broker unless URLs are set), its
console, and a simulated fleet sending background telemetry with the scenario library replayed
every few minutes, so alarms keep appearing, and simulated responders (a contact per unit, grid
workers, micro fire stations) who open their links and acknowledge, arrive and give feedback
after seeded delays. Runs until interrupted."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import sys

import httpx
from pydantic import SecretStr

from miaoxiang.embedded import free_port
from miaoxiang.server import serving
from miaoxiang.settings import Settings
from simulators.background import background, merge_steps
from simulators.clock import SimClock
from simulators.fleet import SimFleet, build_fleet
from simulators.publish import play
from simulators.scenarios import SCENARIOS, Scenario, ScenarioUnavailable
from simulators.score import score
from simulators.session import (
    Route,
    Target,
    apply_linkage,
    configure_push_sources,
    fetch_alarms,
    fetch_commands,
    publishers,
    register_fleet,
    say,
    simulated_actuators,
    simulated_responders,
)

#: A new round of scenarios starts this often (seconds); each scenario of a round starts STAGGER_S after the previous.
ROUND_S = 240.0
STAGGER_S = 12.0
#: Quickest alarms first. cell_outage needs ~60 hours of silence: it is for compressed runs, not a live demo.
DEMO_SCENARIOS = ("panel_fire", "cooking_transient", "smoke_heat", "fire_spread", "gas_leak", "muted", "test_button",
                  "hydrant_opened", "gas_valve_linkage", "arc_breaker_trip", "panel_mains_failure", "co_poisoning",
                  "water_leak",
                  "electrical_then_smoke", "charger_overheat_smoke", "pyrolysis_cabinet_fire", "flapping",
                  "power_cut_reregistration")


def demo_round(fleet: SimFleet, seed: int, start_ms: int) -> list[Scenario]:
    """The demo scenarios for one round, cast with `seed`, started `STAGGER_S` apart."""
    played = []
    for i, name in enumerate(DEMO_SCENARIOS):
        try:
            played.append(SCENARIOS[name](fleet, seed, start_ms + round(i * STAGGER_S * 1000)))
        except ScenarioUnavailable:
            continue
    return played


async def _play_round(
    number: int, played: list[Scenario], route: Route, clock: SimClock, http: httpx.AsyncClient, target: Target,
    fleet: SimFleet,
) -> None:
    """Play one round (its units' linkage set, the actuators it commands answering), then log how
    the service scored on it."""
    await apply_linkage(http, played)
    async with simulated_actuators(target, fleet, played, clock):
        await play(merge_steps(*(s.steps for s in played)), route, clock=clock)
        await clock.sleep_until(max(s.end_ms for s in played))
    alarms = await fetch_alarms(http)
    commands = await fetch_commands(http, (d for s in played for d in s.commanded()))
    rows = [row for s in played for row in score(s, alarms, commands=commands)]
    say(f"round {number}: {sum(r.ok for r in rows)}/{len(rows)} expectations met")


async def _rounds(
    fleet: SimFleet, seed: int, route: Route, clock: SimClock, http: httpx.AsyncClient, target: Target
) -> None:
    async with asyncio.TaskGroup() as tg:
        for number in itertools.count(1):
            played = demo_round(fleet, seed * 1000 + number, clock.now_ms())
            say(f"round {number}: {', '.join(s.name for s in played)}")
            tg.create_task(_play_round(number, played, route, clock, http, target, fleet))
            await asyncio.sleep(ROUND_S)


async def run_demo(settings: Settings, *, devices: int, seed: int) -> None:
    """Serve, print the console URL and token, register the fleet, then play until cancelled.
    SIGTERM or SIGINT cancels it (miaoxiang.shutdown): the contexts unwind innermost first, so the
    simulated fleet stops before the publishers, the HTTP client and the service it talks to."""
    token = settings.admin_token.get_secret_value() if settings.admin_token else secrets.token_urlsafe(18)
    port = settings.http_port or free_port()
    # the simulated responders' webhooks listen on loopback; their links lead to this service
    settings = settings.model_copy(update={
        "admin_token": SecretStr(token), "http_port": port,
        "public_url": settings.public_url or f"http://{settings.http_host}:{port}",
        "outbound_allow": [*settings.outbound_allow, "127.0.0.1"],
    })
    async with serving(settings) as (app, base):
        print(f"\n秒响 Miaoxiang demo\n  console:     {base}/#token={token}\n  admin token: {token}\n"
              f"  (the link signs you in; Ctrl-C stops the demo)\n", file=sys.stderr, flush=True)
        gb = app.state.services.gb26875
        target = Target(
            base_url=base, token=token, mqtt_url=app.state.services.mqtt_url, topic_root=settings.topic(),
            gb26875=("127.0.0.1", gb.port) if gb is not None else None, device_tz=settings.device_tz,
            mqtt_protocol=app.state.services.mqtt_protocol,
        )
        fleet = build_fleet(devices, seed)
        async with httpx.AsyncClient(base_url=base, timeout=30, headers={"Authorization": f"Bearer {token}"}) as http:
            await register_fleet(http, fleet)
            targets = await configure_push_sources(http, "demo")
            say(f"registered {len(fleet.units)} units and {len(fleet.devices)} devices")
            clock = SimClock.live()
            async with (simulated_responders(http, fleet, clock, seed=seed),
                        publishers(target, fleet, http, targets) as route, asyncio.TaskGroup() as tg):
                tg.create_task(play(background(fleet, seed, clock.now_ms()), route, clock=clock))
                tg.create_task(_rounds(fleet, seed, route, clock, http, target))
