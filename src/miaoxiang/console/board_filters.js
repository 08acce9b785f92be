// The alarm board's filters, kept in the page address (`?lane=health&type=smoke&region=...`) so a
// view can be shared: parsed from and written to the query string, turned into the list route's
// parameters (GET /api/v1/alarms), and applied to stream events the same way.

import { OPEN, inRegion, LANES } from "./board_order.js";
import { toMs } from "./dom.js";

export const STATUSES = ["active_unack", "active_ack", "cleared_unack", "cleared_ack", "resolved"];
export const TYPES = ["fire", "smoke", "gas_leak", "panel_fire", "residual_current", "cable_overheat", "arc_fault",
  "overvoltage", "water_pressure_low", "tamper", "duty_missed", "offline", "network_outage", "low_battery",
  "device_fault", "panel_fault"];
export const RESPONSES = ["immediate", "verify", "none"];
export const INDUSTRIES = ["religious", "elderly_care", "welfare", "hospital", "school", "nine_small", "shared_use",
  "rental_housing", "residential", "industrial", "commercial", "entertainment", "other"];
/** Time ranges: alarms seen within the last ... */
export const RANGES = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };

const CHOICES = { status: ["open", "all", ...STATUSES], type: TYPES, response: RESPONSES, industry: INDUSTRIES,
  time: Object.keys(RANGES), lane: LANES };
export const DEFAULTS = { lane: "urgent", status: "open", type: "", response: "", region: "", industry: "", time: "" };

/** Filters from a query string; unknown values fall back to their defaults. */
export function fromQuery(search) {
  const q = new URLSearchParams(search);
  const f = { ...DEFAULTS };
  for (const name of Object.keys(DEFAULTS)) {
    const value = (q.get(name) ?? "").trim();
    if (value && (name === "region" || CHOICES[name].includes(value))) f[name] = value.replace(/\/+$/, "");
  }
  return f;
}

/** The query string of `f` (defaults left out), other parameters of `search` kept. */
export function toQuery(f, search = "") {
  const q = new URLSearchParams(search);
  for (const [name, value] of Object.entries(f)) {
    if (value && value !== DEFAULTS[name]) q.set(name, value);
    else q.delete(name);
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

/** The list route's parameters for `f` at time `nowMs`. */
export function apiQuery(f, nowMs) {
  return {
    status: f.status === "open" ? OPEN.join(",") : f.status === "all" ? undefined : f.status,
    type: f.type || undefined,
    response: f.response || undefined,
    region: f.region || undefined,
    industry: f.industry || undefined,
    since: f.time ? new Date(nowMs - RANGES[f.time]).toISOString() : undefined,
  };
}

/** Whether alarm `a` (from the list or the stream) passes `f` at time `nowMs` (the lane aside). */
export function matches(f, a, nowMs) {
  if (f.status === "open" && !OPEN.includes(a.status)) return false;
  if (f.status !== "open" && f.status !== "all" && a.status !== f.status) return false;
  if (f.type && a.type !== f.type) return false;
  if (f.response && a.response !== f.response) return false;
  if (!inRegion(a.region, f.region)) return false;
  if (f.industry && a.unit !== undefined && a.unit?.industry !== f.industry) return false;
  if (f.time && (toMs(a.last_seen) ?? 0) < nowMs - RANGES[f.time]) return false;
  return true;
}
