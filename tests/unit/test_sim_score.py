"""Scoring scenarios against alarm objects and the score table (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from simulators.fleet import build_fleet
from simulators.scenarios import SCENARIOS, Scenario
from simulators.score import ScoreRow, all_met, format_table, in_span, score, swept
from simulators.session import scenario_names

T0 = 1_795_341_600_000


@pytest.fixture(scope="module")
def fleet():
    return build_fleet(300, 7)


def _alarm(type_: str, response: str, first_seen_ms: int, *, devices: tuple[str, ...] = (), unit: str | None = None,
           severity: str = "major") -> dict[str, Any]:
    return {"type": type_, "response": response, "severity": severity, "first_seen": first_seen_ms,
            "device_ids": list(devices), "unit_id": unit}


def _smoke_heat(fleet) -> tuple[Scenario, str, int]:
    sc = SCENARIOS["smoke_heat"](fleet, 7, T0)
    (e,) = sc.expectations
    return sc, e.device_ids[0], e.after_ms


def test_a_matching_alarm_in_time_passes_with_its_decision_time(fleet) -> None:
    sc, dev, at = _smoke_heat(fleet)
    (row,) = score(sc, [_alarm("smoke", "immediate", at + 1500, devices=(dev,))])
    assert row.ok and row.found == "smoke/immediate" and row.decision_s == 1.5


def test_a_late_or_wrong_alarm_fails(fleet) -> None:
    sc, dev, at = _smoke_heat(fleet)
    (late,) = score(sc, [_alarm("smoke", "immediate", at + 6000, devices=(dev,))])
    (verify,) = score(sc, [_alarm("smoke", "verify", at, devices=(dev,))])
    (other,) = score(sc, [_alarm("smoke", "immediate", at, devices=("someone-else",))])
    assert not late.ok and late.detail == "1 matching, 0 in time"
    assert not verify.ok and verify.found == "-" and verify.decision_s is None
    assert not other.ok and other.detail == "no matching alarm"


def test_the_sweep_slack_applies_only_to_sweep_found_alarms(fleet) -> None:
    outage = SCENARIOS["cell_outage"](fleet, 7, T0)
    must = outage.expectations[0]
    assert swept(must) and not swept(_smoke_heat(fleet)[0].expectations[0])
    late = _alarm("network_outage", "verify", must.deadline_ms + 50_000, devices=must.device_ids[:1])
    assert not score(outage, [late])[0].ok
    assert score(outage, [late], sweep_slack_s=60)[0].ok
    sc, dev, at = _smoke_heat(fleet)
    assert not score(sc, [_alarm("smoke", "immediate", at + 6000, devices=(dev,))], sweep_slack_s=60)[0].ok


def test_alarms_after_a_scenario_ended_do_not_count_against_it(fleet) -> None:
    sc = SCENARIOS["power_cut_reregistration"](fleet, 7, T0)
    dev = next(iter(sc.device_ids()))
    during = _alarm("offline", "none", sc.end_ms - 1, devices=(dev,))
    after = _alarm("offline", "none", sc.end_ms + 1, devices=(dev,))
    assert in_span(sc, [during, after]) == [during]
    assert [r.ok for r in score(sc, [after]) if not r.expectation.must_fire] == [True, True, True]
    rows = [r for r in score(sc, [during]) if not r.expectation.must_fire]
    assert [r.ok for r in rows] == [True, True, False] and rows[2].found == "1× offline/none"


def test_the_table_has_a_row_per_expectation_and_counts_them(fleet) -> None:
    sc, dev, at = _smoke_heat(fleet)
    cooking = SCENARIOS["cooking_transient"](fleet, 7, T0)
    rows = score(sc, [_alarm("smoke", "immediate", at, devices=(dev,))]) + score(cooking, [])
    table = format_table(rows)
    lines = table.splitlines()
    assert lines[0].startswith("| scenario | expectation | result |")
    assert lines[2] == (
        "| smoke_heat | smoke immediate within 5 s | pass | smoke/immediate | 0.0 | 1 matching, 1 in time |"
    )
    assert "| cooking_transient | smoke none within 15 s | FAIL | - |  | no matching alarm |" in lines
    assert "| cooking_transient | no any immediate | pass | - |  | 0 matching (at most 0 allowed) |" in lines
    assert lines[-1] == "2/3 expectations met in 2 scenarios"
    assert not all_met(rows) and all_met(rows[:1]) and not all_met([])


def test_scenario_names_expand_all_and_refuse_unknown_ones() -> None:
    assert scenario_names([]) == tuple(SCENARIOS) == scenario_names(["muted", "all"])
    assert scenario_names(["muted", "gas_leak", "muted"]) == ("muted", "gas_leak")
    with pytest.raises(ValueError, match="unknown scenario 'fire'"):
        scenario_names(["fire"])


def _command(cmd: str, device_id: str, created_ms: int, *, state: str = "acked", actor: str = "linkage",
             port: int | None = None) -> dict[str, Any]:
    stamp = datetime.fromtimestamp(created_ms / 1000, UTC).isoformat()
    return {"cmd_id": "c1", "device_id": device_id, "cmd": cmd, "params": {} if port is None else {"port": port},
            "state": state, "actor": actor, "created_at": stamp}


def test_linkage_commands_are_scored_on_command_objects(fleet) -> None:
    sc = SCENARIOS["charger_overheat_smoke"](fleet, 7, T0)
    (e,) = [e for e in sc.expectations if e.command is not None]
    (device,) = e.device_ids
    assert sc.commanded() == {device}

    def row(*commands: dict[str, Any], slack: float = 0.0) -> ScoreRow:
        return next(r for r in score(sc, [], commands=commands, command_slack_s=slack) if r.expectation is e)

    good = _command("port_cutoff", device, e.after_ms + 800, port=e.port)
    assert row(good).ok and row(good).found == "port_cutoff/acked" and row(good).decision_s == 0.8
    assert not row().ok and row().detail == "no matching alarm"
    assert not row(_command("port_cutoff", device, e.after_ms + 800, port=e.port, state="timeout")).ok
    assert not row(_command("port_cutoff", device, e.after_ms + 800, port=e.port, actor="operator:ops")).ok
    assert not row(_command("port_cutoff", device, e.after_ms + 800, port=e.port % 10 + 1)).ok
    assert not row(_command("port_enable", device, e.after_ms + 800, port=e.port)).ok
    late = _command("port_cutoff", device, e.deadline_ms + 30_000, port=e.port)
    assert not row(late).ok and row(late, slack=60).ok
    # commands are not alarms, and a command slack does not loosen the alarm expectations
    assert not any(r.ok for r in score(sc, [good], command_slack_s=60) if r.expectation.must_fire
                   and r.expectation.command is None)
    assert "| linkage port_cutoff port" in format_table([row(good)])
