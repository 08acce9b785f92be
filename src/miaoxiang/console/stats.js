// Fleet health counters from GET /api/v1/stats/overview: devices in all, offline, active and
// unacknowledged alarms as tiles; devices by status and active alarms by severity as groups in the
// header strip; devices by kind above the device search.

import { get } from "./api.js";
import { fill, h } from "./dom.js";
import { t, term } from "./i18n.js";

let overview = null;

/** Fetch the overview and redraw. */
export async function refreshStats() {
  overview = await get("stats/overview");
  render();
}

function tile(testid, n, label, tone = "") {
  if (typeof n !== "number") return null;
  return h("div", { class: `tile ${tone}`, testid },
    h("span", { class: "tile-n" }, String(n)), h("span", { class: "tile-label" }, label));
}

function group(testid, label, counts, field, badgeField) {
  const entries = Object.entries(counts ?? {}).filter(([, n]) => n > 0);
  if (entries.length === 0) return null;
  return h("div", { class: "stat-group", testid },
    h("span", { class: "tile-label" }, label),
    h("ul", {}, entries.map(([k, n]) => h("li", { class: `badge ${badgeField}-${k}` }, `${term(field, k)} ${n}`))));
}

export function render() {
  const el = document.querySelector("[data-testid='stats']");
  const kinds = document.querySelector("[data-testid='stats-kinds']");
  if (overview === null) return [fill(el), fill(kinds)];
  const o = overview;
  fill(kinds, group("stat-by-kind", t("stats.by_kind"), o.by_kind, "kind", "kind"));
  const alarms = o.active_alarms ?? {};
  fill(el,
    tile("stat-total", o.total, t("stats.devices")),
    tile("stat-offline", o.offline, t("stats.offline_devices"), o.offline > 0 ? "warn" : ""),
    tile("stat-active-alarms", alarms.total, t("stats.active_alarms"), alarms.total > 0 ? "alarm" : ""),
    tile("stat-unacked", alarms.unacknowledged, t("stats.unacknowledged"), alarms.unacknowledged > 0 ? "alarm" : ""),
    group("stat-by-status", t("stats.by_status"), o.by_status, "devstatus", "devstatus"),
    group("stat-by-severity", t("stats.by_severity"), alarms.by_severity, "severity", "severity"));
}
