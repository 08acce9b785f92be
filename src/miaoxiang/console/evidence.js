// Words for what an alarm's evidence, rule and devices carry: metric names with their units,
// evidence fields, rule codes (with the reason a suppressed alarm was kept quiet) and panel
// components (`uitd-889:1:1:131082`, a detector of the UITD `uitd-889`).

import { fmtTime, fmtValue, h } from "./dom.js";
import { knows, t, term } from "./i18n.js";

/** The unit each contract metric is reported in (CONTRACT §1). */
const UNITS = {
  battery_pct: "%", battery_mv: "mV", rsrp_dbm: "dBm", sinr_db: "dB", smoke_obscuration_pct_m: "%/m",
  temperature_c: "°C", gas_lel_pct: "%LEL", residual_current_ma: "mA", cable_temp_c: "°C", voltage_v: "V",
  current_a: "A", power_kw: "kW", pressure_mpa: "MPa", level_m: "m", rise_per_min: "°C/min", window_s: "s",
};
/** Evidence fields that are times (epoch ms). */
const TIMES = ["offline_since_ms", "last_seen_ms", "detected_ms", "alarm_started_ms"];
/** Evidence fields shown elsewhere or internal (`row`: the reading's place in its batch). */
const SHOWN = ["row", "device_id", "ts_ms", "ts", "at", "event", "type", "clock_skew", "metrics"];
/** Rule parts that mean the alarm is kept without telling anyone (CONTRACT §8 suppression). */
export const SUPPRESSING = ["suppressed.test", "suppressed.maintenance", "suppressed.muted", "transient"];

/** `烟雾浓度 4.2 %/m`: a metric's name, value and unit. */
export function metricText(name, value) {
  const label = knows("mname", name) ? term("mname", name) : knows("evfield", name) ? term("evfield", name) : name;
  return `${label} ${fmtValue(value)}${UNITS[name] ? ` ${UNITS[name]}` : ""}`;
}

/** The pairs of one evidence entry besides its time, device and event, in words. */
export function evidenceFields(entry) {
  return Object.entries(entry).filter(([k, v]) => !SHOWN.includes(k) && v !== null && v !== undefined)
    .map(([k, v]) => h("span", { class: "pair" }, TIMES.includes(k) ? `${term("evfield", k)} ${fmtTime(v)}`
      : k === "alarm_code" ? `${term("evfield", k)} ${fmtValue(v)}` : metricText(k, v)));
}

/** The evidence entry's time (epoch ms), or null. */
export function evidenceTime(entry) {
  for (const key of ["ts_ms", "ts", "at", "detected_ms"]) {
    const v = entry[key];
    if (typeof v === "number") return v;
    if (typeof v === "string" && !Number.isNaN(Date.parse(v))) return Date.parse(v);
  }
  return null;
}

/** A rule such as `smoke.single+unacked_60s` in words, each part translated. */
export function ruleText(rule) {
  return (rule ?? "").split("+").filter(Boolean).map((part) => term("rule", part)).join(" + ") || "—";
}

/** The rule parts that kept this alarm quiet, or [] when it is a real one. */
export function suppression(alarm) {
  if (alarm.response !== "none") return [];
  return (alarm.rule ?? "").split("+").filter((part) => SUPPRESSING.includes(part));
}

/** A panel component id (`uitd-889:1:1:131082`) as its UITD and its place; null for a device. */
export function component(id) {
  const m = /^([^:]+):(\d+):(\d+):(\d+)$/.exec(id ?? "");
  if (!m) return null;
  const address = Number(m[4]);
  // GB 26875.3: the 4-byte component address reads as zone (low 16 bits) and point (high 16 bits)
  return { uitd: m[1], system: m[2], systemAddr: m[3], address, zone: address % 65536, point: Math.floor(address / 65536) };
}

/** `系统 1-1 · 部件 131082（10区 2号）` for a component. */
export function componentText(c) {
  return t("device.component", { system: c.system, addr: c.systemAddr, zone: c.zone, point: c.point,
    address: c.address });
}

/** A location (free text, or `{building, floor, room, text, ...}`) as `1号楼 · 3层 · 302`; coordinates left out. */
export function placeText(location) {
  if (typeof location === "string") return location;
  if (!location || typeof location !== "object") return "";
  const order = ["building", "floor", "room", "text", "area", "description", "note"];
  const keys = [...order.filter((k) => k in location), ...Object.keys(location).filter((k) => !order.includes(k)
    && !["lat", "lon", "latitude", "longitude"].includes(k))];
  return keys.filter((k) => location[k] !== null && location[k] !== undefined && location[k] !== "")
    .map((k) => {
      const v = location[k];
      if (k === "floor") return /^-?\d+$/.test(String(v)) ? t("place.floor", { floor: v }) : String(v);
      return typeof v === "object" ? JSON.stringify(v) : String(v);
    }).join(" · ");
}
