"""The per-region weekly report: rows -> CSV, rows -> a self-contained HTML page with SVG charts.

Pure functions, no I/O. The page has no script and no external resource (it opens from a file
or an e-mail and prints as shown): three small charts sharing the week axis, alarms (bars),
false-alarm rate and offline share (lines), then the table of figures.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from html import escape

import numpy as np

COLUMNS = ("week", "alarms", "false_alarms", "classified", "false_alarm_rate", "offline_devices", "devices",
           "offline_share")
#: the column titles of the exports: Chinese first, then the field name
TITLES = {
    "week": "周（周一）/ week", "alarms": "告警数 / alarms", "false_alarms": "误报 / false_alarms",
    "classified": "已定性 / classified", "false_alarm_rate": "误报率 / false_alarm_rate",
    "offline_devices": "离线设备 / offline_devices", "devices": "设备数 / devices",
    "offline_share": "离线占比 / offline_share",
}


def counts_note(tz: str) -> str:
    """What the report counts, and why it counts fewer alarms than the board (one line, both languages)."""
    return (f"说明：按首次报警时间归入 {tz} 时区的自然周（周一起）统计火警与隐患类告警，"
            f"不含设备健康告警（低电量、离线、断网、防拆、故障）和定性为测试的告警，因此少于告警看板的条数。"
            f" / Note: fire and hazard alarms by the "
            f"week ({tz}, from Monday) they were first seen; device-health alarms (low battery, offline, network "
            f"outage, tamper, faults) and alarms classified as tests are left out, so it counts fewer than the board.")


@dataclass(frozen=True, slots=True)
class ReportRow:
    week: str  # ISO date of the week's Monday (in the report's time zone)
    alarms: int  # alarms first seen that week (device-health types excluded)
    false_alarms: int  # of them, classified false_alarm
    classified: int  # of them, classified at all
    false_alarm_rate: float  # false_alarms / classified (0 when none is classified)
    offline_devices: int  # devices with an offline alarm open at some time that week
    devices: int  # devices registered in the region by the end of that week
    offline_share: float  # offline_devices / devices (0 without devices)


def report_rows(weeks: Sequence[date], alarms: np.ndarray, false_alarms: np.ndarray, classified: np.ndarray,
                offline_devices: np.ndarray, devices: np.ndarray) -> list[ReportRow]:
    """Rows from per-week columns; the rates are computed here, vectorized."""
    rate = np.divide(false_alarms, classified, out=np.zeros(len(weeks)), where=classified > 0)
    share = np.divide(offline_devices, devices, out=np.zeros(len(weeks)), where=devices > 0)
    return [
        ReportRow(w.isoformat(), int(alarms[i]), int(false_alarms[i]), int(classified[i]), round(float(rate[i]), 4),
                  int(offline_devices[i]), int(devices[i]), round(float(share[i]), 4))
        for i, w in enumerate(weeks)
    ]


def report_csv(rows: Sequence[ReportRow], tz: str) -> str:
    """A first line saying what is counted, the titles (Chinese / field name), one line per week."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow([counts_note(tz)])
    w.writerow([TITLES[c] for c in COLUMNS])
    w.writerows([asdict(r)[c] for c in COLUMNS] for r in rows)
    return out.getvalue()


WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 760, 150, 56, 16, 24, 26


def _nice_max(peak: float) -> float:
    """A round axis maximum >= peak (1, 2 or 5 times a power of ten)."""
    if peak <= 0:
        return 1.0
    mag = 10 ** np.floor(np.log10(peak))
    return float(next(m * mag for m in (1, 2, 5, 10) if m * mag >= peak))


def _panel(title: str, rows: Sequence[ReportRow], values: list[float], *, bars: bool, colour: str,
           fmt: Callable[[float], str], top: float | None = None) -> str:
    n = max(len(rows), 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    ymax = top if top is not None else _nice_max(max(values, default=0.0))
    step = plot_w / n

    def y(v: float) -> float:
        return TOP + plot_h - (v / ymax) * plot_h

    parts = [f'<text x="{LEFT}" y="{TOP - 8}" class="t">{escape(title)}</text>']
    for frac in (0.0, 0.5, 1.0):
        yy = y(frac * ymax)
        parts.append(f'<line x1="{LEFT}" y1="{yy:.1f}" x2="{WIDTH - RIGHT}" y2="{yy:.1f}" class="g"/>'
                     f'<text x="{LEFT - 6}" y="{yy + 4:.1f}" class="a" text-anchor="end">'
                     f'{escape(fmt(frac * ymax))}</text>')
    if bars:
        for i, (r, v) in enumerate(zip(rows, values, strict=True)):
            parts.append(f'<rect x="{LEFT + i * step + 1:.1f}" y="{y(v):.1f}" width="{max(step - 2, 1):.1f}" '
                         f'height="{TOP + plot_h - y(v):.1f}" fill="{colour}">'
                         f'<title>{r.week}: {escape(fmt(v))}</title></rect>')
    elif rows:
        points = " ".join(f"{LEFT + (i + 0.5) * step:.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts += [f'<circle cx="{LEFT + (i + 0.5) * step:.1f}" cy="{y(v):.1f}" r="3" fill="{colour}">'
                  f"<title>{r.week}: {escape(fmt(v))}</title></circle>"
                  for i, (r, v) in enumerate(zip(rows, values, strict=True))]
    every = max(1, int(np.ceil(len(rows) / 8)))
    parts += [f'<text x="{LEFT + (i + 0.5) * step:.1f}" y="{HEIGHT - 8}" class="a" text-anchor="middle">'
              f'{r.week[5:]}</text>'
              for i, r in enumerate(rows) if i % every == 0]
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'role="img" aria-label="{escape(title)}">{"".join(parts)}</svg>')


STYLE = ("body{font:14px system-ui,sans-serif;margin:24px;color:#222}svg{display:block;margin:8px 0}"
         ".t{font-weight:600;font-size:13px}.a{font-size:11px;fill:#555}.g{stroke:#ddd}"
         "table{border-collapse:collapse;margin-top:16px}"
         "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;white-space:nowrap}")


def report_html(region: str, rows: Sequence[ReportRow], generated: str, tz: str) -> str:
    """The report page for `region` (rows oldest first); `generated` is shown as the report time,
    weeks and times are in time zone `tz`."""
    pct = lambda v: f"{v:.0%}"  # noqa: E731
    pct2 = lambda v: f"{v:.1%}"  # noqa: E731
    charts = [
        _panel("告警数 / alarms per week", rows, [float(r.alarms) for r in rows], bars=True, colour="#c0392b",
               fmt=lambda v: f"{v:.0f}"),
        _panel("误报率 / false-alarm rate (of classified alarms)", rows, [r.false_alarm_rate for r in rows], bars=False,
               colour="#d68910", fmt=pct, top=1.0),
        _panel("离线占比 / offline share of devices", rows, [r.offline_share for r in rows], bars=False,
               colour="#2c3e50", fmt=pct2, top=_nice_max(max([r.offline_share for r in rows], default=0.0))),
    ]
    head = "".join(f"<th>{escape(TITLES[c])}</th>" for c in COLUMNS)
    body = "".join(
        f"<tr><td>{r.week}</td><td>{r.alarms}</td><td>{r.false_alarms}</td><td>{r.classified}</td>"
        f"<td>{r.false_alarm_rate:.1%}</td><td>{r.offline_devices}</td><td>{r.devices}</td><td>{r.offline_share:.2%}</td></tr>"
        for r in rows
    )
    title = f"{escape(region or '全部区域 / all regions')} 火灾风险周报 / weekly risk report"
    return (f'<!doctype html><html lang="zh-CN"><meta charset="utf-8"><title>{title}</title><style>{STYLE}</style>'
            f"<h1>{title}</h1><p>{len(rows)} 周 / weeks · 生成于 / generated {escape(generated)}</p>"
            f"<p>{escape(counts_note(tz))}</p>"
            f'{"".join(charts)}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></html>')
