// Device search (by ID or by kind, status, region, unit) and device detail with a readings chart.

import { get } from "./api.js";
import { chartableMetrics, readingsChart } from "./chart.js";
import { fill, fmtShort, fmtTime, fmtValue, h } from "./dom.js";
import { placeText } from "./evidence.js";
import { knows, t, term } from "./i18n.js";

const KINDS = ["smoke", "gas", "electrical", "uitd", "water"];
const STATUSES = ["online", "offline", "alarm", "fault", "unknown"];
const READINGS_SHOWN = 12;

let view = { onShow: () => {}, onWorkOrders: () => {}, onError: () => {} };
let query = {};
let cursor = null;
let listed = [];
let shown = null; // {device, readings, metric}

const byId = (id) => document.querySelector(`[data-testid="${id}"]`);

/** Fill the filter selects and wire the two search forms. */
export function initDevices(options) {
  view = { ...view, ...options };
  byId("device-open-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = byId("device-id-input").value.trim();
    if (id) showDevice(id).catch(view.onError);
  });
  byId("device-filter-form").addEventListener("submit", (e) => {
    e.preventDefault();
    search().catch(view.onError);
  });
  byId("device-more").addEventListener("click", () => more().catch(view.onError));
  renderOptions();
}

function renderOptions() {
  for (const [testid, field, values] of [["device-kind", "kind", KINDS], ["device-status", "devstatus", STATUSES]]) {
    const select = byId(testid);
    const value = select.value;
    fill(select, h("option", { value: "" }, t("devices.any")), values.map((v) => h("option", { value: v }, term(field, v))));
    select.value = value;
  }
}

/** List the devices the filter form asks for. */
async function search() {
  query = {
    kind: byId("device-kind").value, status: byId("device-status").value,
    region: byId("device-region").value.trim(), unit_id: byId("device-unit").value.trim(),
  };
  listed = [];
  cursor = null;
  await more();
}

async function more() {
  const page = await get("devices", { ...query, cursor, limit: 100 });
  listed.push(...page.items);
  cursor = page.next_cursor;
  renderList();
}


function statusBadge(status) {
  return h("span", { class: `badge devstatus-${status ?? "unknown"}` }, term("devstatus", status ?? "unknown"));
}

/** A device whose clock runs ahead (`clock_skew`: its readings are recorded at the receive time). */
function clockSkewBadge(skew) {
  return skew && h("span", { class: "badge clock-skew", testid: "clock-skew",
    title: t("clock.skewTitle", { s: fmtValue(skew.last_offset_s), since: fmtTime(skew.since) }) }, t("clock.skew"));
}

function renderList() {
  byId("device-more").hidden = !cursor;
  fill(byId("device-list"), listed.length === 0
    ? h("tr", {}, h("td", { colspan: 7, class: "empty" }, t("devices.empty")))
    : listed.map((d) => h("tr", { testid: "device-row", "data-device-id": d.device_id },
      h("td", {}, h("button", { type: "button", class: "link", onclick: () => showDevice(d.device_id).catch(view.onError) }, d.device_id)),
      h("td", {}, term("kind", d.kind)),
      h("td", {}, d.unit_name ?? d.unit_id ?? "—"),
      h("td", {}, statusBadge(d.status), " ", clockSkewBadge(d.clock_skew)),
      h("td", {}, fmtTime(d.last_seen)),
      h("td", { class: "num" }, fmtValue(d.battery_pct)),
      h("td", { class: "num" }, fmtValue(d.rsrp_dbm)))));
}

/** Fetch a device and its recent readings (newest first) and show them. */
export async function showDevice(deviceId) {
  const [device, readings] = await Promise.all([
    get(`devices/${encodeURIComponent(deviceId)}`),
    get(`devices/${encodeURIComponent(deviceId)}/readings`, { limit: 200 }),
  ]);
  const metrics = chartableMetrics(readings.items);
  shown = { device, readings: readings.items, metric: preferredMetric(device.kind, metrics) };
  view.onShow();
  render();
  byId("device-detail").querySelector("h2")?.focus();
}

/** The kind's headline metric when present, else the first numeric one. */
function preferredMetric(kind, metrics) {
  const headline = { smoke: "smoke_obscuration_pct_m", gas: "gas_lel_pct", electrical: "residual_current_ma", water: "pressure_mpa" };
  return metrics.includes(headline[kind]) ? headline[kind] : metrics[0] ?? null;
}

const metricName = (name) => (knows("metric", name) ? term("metric", name) : name);

function kv(obj) {
  const entries = Object.entries(obj ?? {});
  if (entries.length === 0) return "—";
  return h("dl", { class: "kv" }, entries.map(([k, v]) => [h("dt", {}, metricName(k)), h("dd", {}, fmtValue(v))]));
}

/** The live values `{name: {value, ts}}`, each with the time it was reported. */
function liveValues(values) {
  const entries = Object.entries(values ?? {});
  if (entries.length === 0) return "—";
  return h("dl", { class: "kv", testid: "device-values" }, entries.map(([k, v]) => [
    h("dt", {}, metricName(k)),
    h("dd", { title: fmtTime(v?.ts) }, fmtValue(v?.value), " ", h("span", { class: "muted" }, fmtShort(v?.ts)))]));
}

/** Redraw the list and the detail pane (after a language switch, too). */
export function render() {
  renderOptions();
  renderList();
  const pane = byId("device-detail");
  pane.hidden = shown === null;
  if (shown === null) return;
  const { device: d, readings, metric } = shown;
  const facts = [
    ["devices.kind", term("kind", d.kind)],
    ["alarm.unit", d.unit_name ? `${d.unit_name} (${d.unit_id})` : d.unit_id ?? "—"],
    ["alarm.region", d.region || "—"],
    ["devices.status", [statusBadge(d.status), " ", clockSkewBadge(d.clock_skew)]],
    ["devices.last_seen", fmtTime(d.last_seen)],
    ["devices.battery", d.battery_pct === null || d.battery_pct === undefined ? "—" : `${fmtValue(d.battery_pct)} %`],
    ["devices.signal", d.rsrp_dbm === null || d.rsrp_dbm === undefined ? "—"
      : `${fmtValue(d.rsrp_dbm)} dBm${d.sinr_db === null || d.sinr_db === undefined ? "" : ` · SINR ${fmtValue(d.sinr_db)} dB`}`],
    ["devices.cell", d.cell_id ?? "—"],
    ["devices.heartbeat", d.heartbeat_s ? `${d.heartbeat_s} s` : "—"],
    ["devices.profile", d.profile ?? "—"],
    ["devices.location", placeText(d.location) || "—"],
    ["devices.thresholds", kv(d.thresholds)],
    ["devices.maintenance", d.maintenance_until ? t("devices.maintenanceUntil", { until: fmtTime(d.maintenance_until),
      by: d.maintenance_by ?? "—", reason: d.maintenance_reason ?? "" }) : d.in_maintenance ? "✓" : "—"],
    ["wo.link", h("button", { type: "button", class: "link", testid: "device-work-orders",
      onclick: () => view.onWorkOrders({ device_id: d.device_id }) }, t("wo.link"))],
  ];
  const metrics = chartableMetrics(readings);
  const select = h("select", { id: "chart-metric", testid: "chart-metric", onchange: (e) => { shown.metric = e.target.value; render(); } },
    metrics.map((m) => h("option", { value: m, selected: m === metric }, metricName(m))));
  const chart = metric && readingsChart(readings, metric, t("devices.chartLabel", { metric: metricName(metric), n: readings.length }));
  fill(pane,
    h("div", { class: "pane-head" },
      h("h2", { tabindex: "-1", testid: "device-heading" }, d.device_id),
      h("button", { type: "button", class: "icon", "aria-label": t("app.close"), onclick: () => { shown = null; render(); } }, "×")),
    h("dl", { class: "facts" }, facts.map(([key, value]) => [h("dt", {}, t(key)), h("dd", {}, value)])),
    h("h3", {}, t("devices.readings")),
    metrics.length === 0 ? h("p", { class: "muted" }, t("devices.noReadings")) : [
      h("p", {}, h("label", { for: "chart-metric" }, t("devices.metric"), " "), select,
        " ", h("span", { class: "legend-alarm" }, t("devices.alarmMark"))),
      chart,
    ],
    readings.length > 0 && h("table", { class: "readings", testid: "readings-table" },
      h("tbody", {}, readings.slice(0, READINGS_SHOWN).map((r) => h("tr", { class: `event-${r.event}` },
        h("td", { class: "time", title: fmtTime(r.ts) }, fmtShort(r.ts)),
        h("td", {}, term("event", r.event)),
        h("td", { class: "num" }, metric ? fmtValue(r.metrics?.[metric]) : ""))))),
    h("h3", {}, t("devices.lastValues")),
    liveValues(d.values));
}
