"""The monthly report as one self-contained HTML page: inline SVG charts and tables, an inline
style sheet, no script and nothing loaded from elsewhere (it opens from a file or an e-mail and
passes a CSP without `script-src`). Column names in Chinese with English; times are local."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from alerting.reports.monthly import CLASSIFICATIONS, MonthlyReport, report_rows

WIDTH, ROW_H, LABEL_W, RIGHT = 640, 22, 170, 70
COLOURS = {"green": "#27ae60", "yellow": "#f1c40f", "orange": "#e67e22", "red": "#c0392b"}
STYLE = ("body{font:14px system-ui,sans-serif;margin:24px;color:#222}svg{display:block;margin:8px 0 20px}"
         ".l{font-size:12px;fill:#333}.v{font-size:12px;fill:#555}h2{font-size:16px;margin-top:28px}"
         "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
         "td.n{text-align:right}")
SECTIONS = {
    "month": "报告 / report", "alarms": "告警 / alarms", "alarms_by_type": "按类型告警 / alarms by type",
    "alarms_by_classification": "按定性告警 / alarms by classification", "false_alarms": "误报 / false alarms",
    "response_times": "响应时间（秒）/ response times (s)", "online": "联网率 / online rate",
    "work_orders": "隐患整改工单 / work orders", "risk_colours": "四色分级单位数 / units per risk colour",
}


def bar_chart(title: str, items: Sequence[tuple[str, float]], *, colours: Sequence[str] | None = None,
              fmt: str = "{:.0f}") -> str:
    """Horizontal bars, one per item, scaled to the largest value."""
    peak = max((v for _, v in items), default=0.0) or 1.0
    h = ROW_H * max(len(items), 1) + 24
    span = WIDTH - LABEL_W - RIGHT
    parts = [f'<text x="0" y="14" class="l">{escape(title)}</text>']
    for i, (label, v) in enumerate(items):
        y = 24 + i * ROW_H
        fill = colours[i] if colours else "#2e86c1"
        parts.append(f'<text x="{LABEL_W - 6}" y="{y + 15}" class="l" text-anchor="end">{escape(label)}</text>'
                     f'<rect x="{LABEL_W}" y="{y + 3}" width="{max(v / peak * span, 1 if v else 0):.1f}"'
                     f' height="{ROW_H - 6}" fill="{fill}"><title>{escape(label)}: {escape(fmt.format(v))}</title>'
                     f'</rect><text x="{LABEL_W + v / peak * span + 4:.1f}" y="{y + 15}" class="v">'
                     f"{escape(fmt.format(v))}</text>")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{h}" viewBox="0 0 {WIDTH} {h}" '
            f'role="img" aria-label="{escape(title)}">{"".join(parts)}</svg>')


def line_chart(title: str, points: Sequence[tuple[str, float]]) -> str:
    """A 0-100 % line over the days of the month."""
    h, top, bottom, left = 150, 24, 22, 40
    plot_w, plot_h = WIDTH - left - 10, h - top - bottom
    step = plot_w / max(len(points), 1)
    parts = [f'<text x="0" y="14" class="l">{escape(title)}</text>']
    for frac in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{WIDTH - 10}" y2="{y:.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" class="v" text-anchor="end">{frac:.0%}</text>')
    xy = [(left + (i + 0.5) * step, top + plot_h * (1 - v)) for i, (_, v) in enumerate(points)]
    if xy:
        parts.append('<polyline fill="none" stroke="#2c3e50" stroke-width="2" points="'
                     + " ".join(f"{x:.1f},{y:.1f}" for x, y in xy) + '"/>')
    for (day, v), (x, y) in zip(points, xy, strict=True):
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="#2c3e50"><title>{escape(day)}: {v:.1%}</title>'
                     f'</circle>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{h}" viewBox="0 0 {WIDTH} {h}" '
            f'role="img" aria-label="{escape(title)}">{"".join(parts)}</svg>')


def report_html(rep: MonthlyReport) -> str:
    """The page: headline figures, charts, then every figure in tables by section."""
    by_type = sorted(((t, float(sum(by.values()))) for t, by in rep.by_type.items()), key=lambda x: -x[1])
    by_class = [(c, float(sum(by.get(c, 0) for by in rep.by_type.values()))) for c in CLASSIFICATIONS]
    charts = [
        bar_chart("按类型告警 / alarms by type", by_type),
        bar_chart("按定性告警 / alarms by classification", by_class),
        bar_chart("四色分级单位数 / units per risk colour", [(c, float(n)) for c, n in rep.colours.items()],
                  colours=[COLOURS.get(c, "#888") for c in rep.colours]),
    ]
    if rep.daily:
        charts.append(line_chart("每日联网率 / daily online rate", [(d, o / r if r else 0.0) for d, r, o in rep.daily]))
    tables: dict[str, list[str]] = {}
    for section, item, value in report_rows(rep):
        cls = ' class="n"' if isinstance(value, int | float) else ""
        tables.setdefault(section, []).append(f"<tr><td>{escape(item)}</td><td{cls}>{escape(str(value))}</td></tr>")
    body = "".join(
        f"<h2>{escape(SECTIONS.get(s, s))}</h2><table><thead><tr><th>项目 / item</th><th>数值 / value</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        for s, rows in tables.items()
    )
    rate = "—" if rep.false_alarm_rate is None else f"{rep.false_alarm_rate:.1%}"
    online = "—" if rep.online_rate_at_end is None else f"{rep.online_rate_at_end:.1%}"
    where = escape(rep.region or "全部区域 / all regions") + (f" · {escape(rep.industry)}" if rep.industry else "")
    title = f"{escape(rep.month)} 月报 / monthly report · {where}"
    return (f'<!doctype html><html lang="zh-CN"><meta charset="utf-8"><title>{title}</title><style>{STYLE}</style>'
            f"<h1>{title}</h1><p>告警 / alarms {rep.alarms} · 误报率 / false-alarm rate {rate} · "
            f"月末联网率 / online at month end {online} · 生成于 / generated {escape(rep.generated)}</p>"
            f'{"".join(charts)}{body}</html>')
