// What the alarm board shows where: its two lanes, its urgency order, incidents (a parent row with its
// children under it), and why a quiet row is quiet. Pure functions of alarm objects (CONTRACT §5); no DOM.

import { toMs } from "./dom.js";

export const OPEN = ["active_unack", "active_ack", "cleared_unack"];
export const UNACKED = new Set(["active_unack", "cleared_unack"]);
/** Device-health housekeeping: the second lane, away from fires and 秒响应. */
export const HEALTH_TYPES = new Set(["low_battery", "offline", "network_outage", "device_fault", "panel_fault"]);
export const LANES = ["urgent", "health"];

/** `urgent` (fires, hazards, 秒响应, tamper, missed duty checks) or `health`. */
export function laneOf(a) {
  return HEALTH_TYPES.has(a.type) && a.response !== "immediate" ? "health" : "urgent";
}

export const isImmediateUnacked = (a) => a.response === "immediate" && a.status === "active_unack";
const isOpen = (a) => OPEN.includes(a.status);

/**
 * Urgency rank, lowest first: active 秒响应 unacknowledged, other open 秒响应, unacknowledged
 * 待核实, other open 待核实, suppressed (response none) still open, then everything closed.
 */
export function rank(a) {
  if (!isOpen(a)) return 5;
  if (a.response === "immediate") return a.status === "active_unack" ? 0 : 1;
  if (a.response === "none") return 4;
  return UNACKED.has(a.status) ? 2 : 3;
}

const raisedMs = (a) => toMs(a.raised_at) ?? toMs(a.first_seen) ?? 0;

/** Most urgent first: by rank; within an open rank the most escalated, then the oldest raised;
 *  closed alarms newest first. Ties by alarm id, so the order is stable. */
export function byUrgency(a, b) {
  const ra = rank(a);
  return ra - rank(b)
    || (ra < 5 ? (b.escalation_level ?? 0) - (a.escalation_level ?? 0) || raisedMs(a) - raisedMs(b)
      : (toMs(b.last_seen) ?? 0) - (toMs(a.last_seen) ?? 0))
    || String(a.alarm_id).localeCompare(String(b.alarm_id));
}

/** The rows of their own among `list`: all but the children whose incident's parent is in it (those
 *  show under their parent). A child whose parent is not there (filtered out, not loaded) stands alone. */
export function topLevel(list) {
  const ids = new Set(list.map((a) => a.alarm_id));
  return list.filter((a) => !a.parent_id || !ids.has(a.parent_id));
}

/** The children of incident `parent` among `all` that pass `keep`, most urgent first. */
export function childrenOf(parent, all, keep = () => true) {
  return [...all].filter((c) => c.parent_id && c.parent_id === parent.alarm_id && keep(c)).sort(byUrgency);
}

/** The parts of an alarm's rule (`smoke.single+transient` -> `smoke.single`, `transient`). */
export function ruleParts(a) {
  return String(a.rule ?? "").split("+").filter(Boolean);
}

/** Whole-segment region prefix test (`江西省/赣州` does not match `江西省/赣州市`). */
export function inRegion(region, prefix) {
  if (!prefix) return true;
  const r = String(region ?? "");
  return r === prefix || r.startsWith(`${prefix}/`);
}
