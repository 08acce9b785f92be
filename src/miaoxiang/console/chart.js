// A line chart of recent readings in inline SVG: one line per channel, alarm events marked.

import { fmtClock, fmtValue, s, toMs } from "./dom.js";

const W = 420, H = 200;
const PAD = { left: 52, right: 12, top: 12, bottom: 28 };
const ALARM_EVENTS = new Set(["alarm", "fault", "tamper", "breaker_tripped", "power_fail"]);

/** The numeric metrics present in `readings` (a list-valued metric counts when its items are numbers). */
export function chartableMetrics(readings) {
  const names = new Set();
  for (const r of readings) {
    for (const [name, value] of Object.entries(r.metrics ?? {})) {
      if (typeof value === "number" || (Array.isArray(value) && value.some((v) => typeof v === "number"))) names.add(name);
    }
  }
  return [...names];
}

/** [{ms, values: [number|null, ...]}] oldest first, for one metric. */
function points(readings, metric) {
  const out = [];
  for (const r of readings) {
    const ms = toMs(r.ts);
    const raw = r.metrics?.[metric];
    if (ms === null || raw === undefined || raw === null) continue;
    const values = (Array.isArray(raw) ? raw : [raw]).map((v) => (typeof v === "number" ? v : null));
    out.push({ ms, values });
  }
  return out.sort((a, b) => a.ms - b.ms);
}

/** Round, readable tick values spanning [lo, hi]. */
function ticks(lo, hi, count = 4) {
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((v) => v >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** The chart as an <svg>, or null when no reading carries `metric`. `label` describes it for screen readers. */
export function readingsChart(readings, metric, label) {
  const pts = points(readings, metric);
  if (pts.length === 0) return null;
  const channels = Math.max(...pts.map((p) => p.values.length));
  const all = pts.flatMap((p) => p.values).filter((v) => v !== null);
  let lo = Math.min(...all), hi = Math.max(...all);
  if (lo === hi) { lo -= Math.abs(lo) * 0.1 || 1; hi += Math.abs(hi) * 0.1 || 1; }
  const t0 = pts[0].ms, t1 = Math.max(pts[pts.length - 1].ms, t0 + 1);
  const x = (ms) => PAD.left + ((ms - t0) / (t1 - t0)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - ((v - lo) / (hi - lo)) * (H - PAD.top - PAD.bottom);

  const grid = ticks(lo, hi).filter((v) => v >= lo && v <= hi).map((v) => [
    s("line", { class: "grid", x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }),
    s("text", { class: "axis", x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end" }, fmtValue(v)),
  ]);
  const times = [t0, (t0 + t1) / 2, t1].map((ms, i) =>
    s("text", { class: "axis", x: x(ms), y: H - 8, "text-anchor": ["start", "middle", "end"][i] }, fmtClock(ms)));
  const marks = readings.filter((r) => ALARM_EVENTS.has(r.event) && toMs(r.ts) !== null).map((r) => {
    const mx = x(Math.min(Math.max(toMs(r.ts), t0), t1));
    return s("line", { class: "alarm-mark", x1: mx, x2: mx, y1: PAD.top, y2: H - PAD.bottom },
      s("title", {}, `${r.event} ${new Date(toMs(r.ts)).toLocaleString()}`));
  });
  const lines = [];
  for (let c = 0; c < channels; c++) {
    const seq = pts.filter((p) => p.values[c] !== null && p.values[c] !== undefined);
    const path = seq.map((p, i) => `${i ? "L" : "M"}${x(p.ms).toFixed(1)},${y(p.values[c]).toFixed(1)}`).join("");
    const last = seq[seq.length - 1];
    lines.push(
      s("path", { class: `series series-${c % 4}`, d: path }),
      last && s("circle", { class: `dot series-${c % 4}`, cx: x(last.ms), cy: y(last.values[c]), r: 3 },
        s("title", {}, fmtValue(last.values[c]))),
    );
  }
  return s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, testid: "readings-chart" },
    s("title", {}, label), ...grid, ...times, ...marks, ...lines);
}
