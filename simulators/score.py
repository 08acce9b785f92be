"""Scoring played scenarios against the service's alarms, and the score table (pure, no I/O).

Each scenario is scored on the alarms first seen before its end (plus the sweep slack): its
ground truth speaks about its own span, and a fleet whose telemetry stops after the run may
raise offline alarms later that no scenario is about.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from alerting.model import AlarmType
from simulators.scenarios import Expectation, Scenario, first_seen_ms

Alarm = Mapping[str, Any]
SWEPT = frozenset({AlarmType.offline, AlarmType.network_outage})


@dataclass(frozen=True, slots=True)
class ScoreRow:
    """One expectation of one scenario: whether it held, what was found, how soon."""

    scenario: str
    expectation: Expectation
    ok: bool
    detail: str
    found: str  # type/response of the earliest matching alarm, or a count per type/response
    decision_s: float | None  # scenario seconds from the triggering reading to the alarm (must_fire only)


def _label(item: Alarm) -> str:
    """An alarm's type/response, a command's cmd/state."""
    if "cmd" in item:
        return f"{item.get('cmd')}/{item.get('state')}"
    return f"{item.get('type')}/{item.get('response')}"


def in_span(scenario: Scenario, alarms: Iterable[Alarm], slack_s: float = 0.0) -> list[Alarm]:
    """The alarms first seen no later than the scenario's end plus `slack_s` (or without a time)."""
    until = scenario.end_ms + slack_s * 1000
    return [a for a in alarms if (seen := first_seen_ms(a)) is None or seen <= until]


def swept(e: Expectation) -> bool:
    """Whether the alarms `e` is about are found by the service's offline sweep (not by a reading)."""
    return bool(e.types) and set(e.types) <= SWEPT


def score(
    scenario: Scenario, alarms: Iterable[Alarm], *, commands: Iterable[Alarm] = (), sweep_slack_s: float = 0.0,
    command_slack_s: float = 0.0,
) -> list[ScoreRow]:
    """One row per expectation of `scenario`, judged by `Scenario.evaluate` on its span's alarms
    (and commands, `GET /api/v1/devices/{id}/commands` objects of `scenario.commanded()`).
    `sweep_slack_s` (scenario seconds) is how late sweep-found alarms may be, `command_slack_s`
    how late linkage commands may be; others get none."""
    alarms = in_span(scenario, alarms, sweep_slack_s)
    commands = in_span(scenario, commands, command_slack_s)
    rows = []
    for e in scenario.expectations:
        slack = command_slack_s if e.command is not None else sweep_slack_s if swept(e) else 0.0
        (verdict,) = replace(scenario, expectations=(e,)).evaluate(alarms, commands=commands, slack_s=slack)
        matching = [a for a in (commands if e.command is not None else alarms) if e.matches(a)]
        decision_s = None
        if e.must_fire and matching:
            earliest = min(matching, key=lambda a: first_seen_ms(a) or 0)
            found = _label(earliest)
            seen = first_seen_ms(earliest)
            decision_s = None if seen is None else (seen - e.after_ms) / 1000
        else:
            found = ", ".join(f"{n}× {label}" for label, n in sorted(Counter(map(_label, matching)).items())) or "-"
        rows.append(ScoreRow(scenario.name, e, verdict.ok, verdict.detail, found, decision_s))
    return rows


def _expected(e: Expectation) -> str:
    if e.command is not None:
        port = "" if e.port is None else f" port {e.port}"
        return f"linkage {e.command}{port} acked within {e.within_s:g} s"
    what = "/".join(t.name for t in e.types) or "any"
    if e.responses:
        what += " " + "/".join(r.name for r in e.responses)
    if e.severity is not None:
        what += f" {e.severity.name}"
    if e.must_fire:
        return f"{what} within {e.within_s:g} s"
    return f"no {what}" if e.max_matches == 0 else f"≤{e.max_matches} {what}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def format_table(rows: Sequence[ScoreRow]) -> str:
    """A Markdown table of the rows and a last line counting the expectations met."""
    lines = [
        "| scenario | expectation | result | found | decision s | detail |",
        "|---|---|---|---|---:|---|",
    ]
    for r in rows:
        decision = "" if r.decision_s is None else f"{r.decision_s:.1f}"
        lines.append(
            f"| {r.scenario} | {_cell(_expected(r.expectation))} | {'pass' if r.ok else 'FAIL'} | {_cell(r.found)} "
            f"| {decision} | {_cell(r.detail)} |"
        )
    passed = sum(r.ok for r in rows)
    lines.append("")
    lines.append(f"{passed}/{len(rows)} expectations met in {len({r.scenario for r in rows})} scenarios")
    return "\n".join(lines)


def all_met(rows: Sequence[ScoreRow]) -> bool:
    return bool(rows) and all(r.ok for r in rows)
