// Region drill-down (江西省/赣州市/章贡区/...) with four-colour risk badges, the region's trend
// warnings and report export, and unit detail with its risk score (docs/risk.md).

import { download, get, getAll } from "./api.js";
import { contactList } from "./contacts.js";
import { unitPlans } from "./floorplan.js";
import { fill, fmtTime, fmtValue, h } from "./dom.js";
import { t, term } from "./i18n.js";

const COLOURS = ["red", "orange", "yellow", "green"];
const UNITS_SHOWN = 300;

let view = { canAct: () => false, onAlarm: () => {}, onDevice: () => {}, onError: () => {} };
let region = "";
let units = [];
let truncated = false;
let unit = null; // {unit, devices, alarms, risk}
let trends = { region: [], industry: [] }; // trend warnings under the open region
let duty = { checks: [], shift: null }; // the region's latest 查岗 and the latest shift handover
const PARTS = ["alarms", "history", "health", "coverage", "upkeep"];
const MAX_DEPTH = 6;

const byId = (id) => document.querySelector(`[data-testid="${id}"]`);
const colourOf = (u) => (COLOURS.includes(u.risk_colour) ? u.risk_colour : "none");
const within = (path, prefix) => prefix === "" || path === prefix || path.startsWith(`${prefix}/`);

export function initUnits(options) {
  view = { ...view, ...options };
}

/** A four-colour risk badge (grey when the unit is not rated); the word is there, not only the colour. */
export function riskBadge(colour) {
  const c = COLOURS.includes(colour) ? colour : "none";
  return h("span", { class: `badge risk risk-${c}`, testid: "risk-badge", "data-colour": c }, term("risk", c));
}

/** Show the units under `path` (a region prefix; "" for all). */
export async function openRegion(path) {
  const depth = path === "" ? 1 : Math.min(path.split("/").length + 1, MAX_DEPTH);
  const none = () => ({ items: [] }); // trends are extra: the units still show without them
  const [page, byRegion, byIndustry, checks, shifts] = await Promise.all([
    getAll("units", { region: path || undefined }),
    get("risk/trends", { by: "region", region: path || undefined, depth }).catch(none),
    get("risk/trends", { by: "industry", region: path || undefined }).catch(none),
    get("duty-checks", { region: path || undefined, limit: 20 }).catch(none),
    get("shifts", { limit: 1 }).catch(none),
  ]);
  duty = { checks: checks.items, shift: shifts.items[0] ?? null };
  region = path;
  units = page.items.filter((u) => within(u.region ?? "", path));
  truncated = page.truncated;
  trends = { region: byRegion.items, industry: byIndustry.items };
  unit = null;
  render();
}

async function openUnit(unitId) {
  const [detail, devices, alarms, risk] = await Promise.all([
    get(`units/${encodeURIComponent(unitId)}`),
    get("devices", { unit_id: unitId, limit: 200 }),
    get("alarms", { unit_id: unitId, limit: 50 }),
    get(`risk/units/${encodeURIComponent(unitId)}`).catch(() => null),
  ]);
  unit = { unit: detail, devices: devices.items, alarms: alarms.items, risk };
  render();
  byId("unit-detail").querySelector("h2")?.focus();
}

/** The next path segment below `region` of each unit, with its units' colour counts. */
function subregions() {
  const depth = region === "" ? 0 : region.split("/").length;
  const groups = new Map();
  for (const u of units) {
    const parts = (u.region ?? "").split("/").filter(Boolean);
    if (parts.length <= depth) continue;
    const path = parts.slice(0, depth + 1).join("/");
    const g = groups.get(path) ?? { path, name: parts[depth], total: 0, red: 0, orange: 0, yellow: 0, green: 0, none: 0 };
    g.total += 1;
    g[colourOf(u)] += 1;
    groups.set(path, g);
  }
  return [...groups.values()].sort((a, b) => a.path.localeCompare(b.path, "zh-CN"));
}

function breadcrumb() {
  const parts = region.split("/").filter(Boolean);
  const crumbs = [h("li", {}, h("button", { type: "button", class: "link", onclick: () => go("") }, t("units.root")))];
  parts.forEach((name, i) => {
    const path = parts.slice(0, i + 1).join("/");
    crumbs.push(h("li", {}, i === parts.length - 1
      ? h("span", { "aria-current": "page" }, name)
      : h("button", { type: "button", class: "link", onclick: () => go(path) }, name)));
  });
  return h("nav", { "aria-label": t("units.heading") }, h("ol", { class: "crumbs", testid: "region-crumbs" }, crumbs));
}

function go(path) {
  openRegion(path).catch(view.onError);
}

function regionCard(g) {
  const worst = COLOURS.find((c) => g[c] > 0) ?? "none";
  return h("li", {},
    h("button", { type: "button", class: `region-card risk-edge-${worst}`, testid: "region-card", "data-region": g.path, onclick: () => go(g.path) },
      h("strong", {}, g.name),
      h("span", { class: "muted" }, t("units.count", { n: g.total })),
      h("span", { class: "colour-counts" }, [...COLOURS, "none"].filter((c) => g[c] > 0)
        .map((c) => h("span", { class: `badge risk risk-${c}` }, `${term("risk", c)} ${g[c]}`)))));
}

/** One `warning` trend alert: the group, and why in words. */
function trendItem(a, by) {
  const relative = region !== "" && a.group.startsWith(`${region}/`) ? a.group.slice(region.length + 1) : a.group.split("/").pop();
  const name = by === "region" ? relative : a.group;
  return h("li", { class: "trend", testid: "trend-alert", "data-group": a.group, "data-by": by },
    h("span", { class: "badge severity-warning" }, term("severity", a.severity)), " ",
    h("strong", {}, name), " ",
    h("span", { class: "muted", title: `p = ${Number(a.p_value).toPrecision(2)}` }, t("risk.trendWhy", {
      count: a.count, baseline: Number(a.baseline).toFixed(1), weeks: a.weeks, chance: chanceInWords(Number(a.p_value)),
    })));
}

/** How likely such a jump is by chance alone, in words (the Poisson tail probability stays in the title). */
function chanceInWords(p) {
  if (p < 1e-6) return t("risk.chanceNone");
  if (p < 1e-3) return t("risk.chanceThousand");
  if (p < 1e-2) return t("risk.chanceHundred");
  return t("risk.chancePct", { pct: Math.max(1, Math.round(p * 100)) });
}

function trendSection() {
  const items = [...trends.region.map((a) => trendItem(a, "region")), ...trends.industry.map((a) => trendItem(a, "industry"))];
  return [
    h("h3", {}, t("risk.trends")),
    items.length === 0 ? h("p", { class: "muted", testid: "trends-empty" }, t("risk.trendsNone"))
      : h("ul", { class: "plain trends", testid: "trends" }, items),
  ];
}

function exportBar() {
  const save = (format) => () => {
    download("risk/report", { region: region || undefined, format }, `risk-report.${format}`).catch(view.onError);
  };
  return h("div", { class: "toolbar export" },
    h("span", {}, t("risk.export")),
    h("button", { type: "button", testid: "report-csv", onclick: save("csv") }, t("risk.exportCsv")),
    h("button", { type: "button", testid: "report-html", onclick: save("html") }, t("risk.exportChart")),
    monthlyReport());
}

/** The monthly report (CONTRACT §11) of a chosen month, of the selected region, as CSV or a page. */
function monthlyReport() {
  const last = new Date(new Date().getFullYear(), new Date().getMonth() - 1, 1);
  const input = h("input", { type: "month", testid: "monthly-month", "aria-label": t("report.month"),
    value: `${last.getFullYear()}-${String(last.getMonth() + 1).padStart(2, "0")}` });
  const save = (format) => () => {
    const month = input.value;
    download("reports/monthly", { month, region: region || undefined, format }, `monthly-report-${month}.${format}`)
      .catch(view.onError);
  };
  return h("span", { class: "monthly" },
    h("span", {}, t("report.monthly")), input,
    h("button", { type: "button", testid: "monthly-csv", onclick: save("csv") }, t("risk.exportCsv")),
    h("button", { type: "button", testid: "monthly-html", onclick: save("html") }, t("risk.exportChart")));
}

/** The latest duty checks (查岗) under the region and the last shift handover note (CONTRACT §11). */
function dutySection() {
  const shift = duty.shift;
  return [
    h("h3", {}, t("duty.title")),
    duty.checks.length === 0 ? h("p", { class: "muted", testid: "duty-empty" }, t("duty.none"))
      : h("ul", { class: "plain", testid: "duty-checks" }, duty.checks.map((c) => h("li", { "data-state": c.state },
        h("span", { class: `badge duty-${c.state}` }, term("duty", c.state)), " ", c.device_id, " ",
        h("span", { class: "muted" }, fmtTime(c.sent_at))))),
    shift && h("p", { testid: "last-shift" }, t("duty.shift", {
      by: shift.closed_by, at: fmtTime(shift.closed_at), alarms: shift.open_alarms.length,
      orders: shift.open_work_orders.length,
    }), " ", h("q", {}, shift.note)),
  ];
}

/** The unit's score and its four parts, as the risk API explains them. */
function riskFacts(risk) {
  if (!risk) return null;
  return [
    h("h3", {}, t("risk.score"), " ", h("span", { testid: "risk-score" }, fmtValue(risk.score))),
    risk.override
      ? h("p", { class: "muted", testid: "risk-override" }, t("risk.overridden", { colour: term("risk", risk.override) }))
      : null,
    h("dl", { class: "facts", testid: "risk-parts" },
      PARTS.map((p) => [h("dt", {}, term("risk.part", p)), h("dd", {}, fmtValue(risk.parts?.[p] ?? 0))])),
  ];
}

function unitsTable() {
  const rank = (u) => [...COLOURS, "none"].indexOf(colourOf(u));
  const rows = [...units].sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name, "zh-CN")).slice(0, UNITS_SHOWN);
  if (rows.length === 0) return h("p", { class: "muted" }, t("units.empty"));
  return h("table", { class: "grid-table" },
    h("thead", {}, h("tr", {}, ["units.risk", "units.name", "alarm.region", "units.address", "units.industry"]
      .map((k) => h("th", { scope: "col" }, t(k))))),
    h("tbody", {}, rows.map((u) => h("tr", { testid: "unit-row", "data-unit-id": u.unit_id },
      h("td", {}, riskBadge(u.risk_colour)),
      h("td", {}, h("button", { type: "button", class: "link", onclick: () => openUnit(u.unit_id).catch(view.onError) }, u.name)),
      h("td", { class: "muted" }, u.region || "—"),
      h("td", {}, u.address || "—"),
      h("td", {}, term("industry", u.industry))))));
}

function unitDetail() {
  const { unit: u, devices, alarms } = unit;
  return [
    h("div", { class: "pane-head" },
      h("h2", { tabindex: "-1" }, u.name, " ", riskBadge(u.risk_colour)),
      h("button", { type: "button", class: "icon", "aria-label": t("app.close"), onclick: () => { unit = null; render(); } }, "×")),
    h("dl", { class: "facts" },
      [["units.address", u.address || "—"], ["alarm.region", u.region || "—"], ["units.industry", term("industry", u.industry)],
        ["units.contacts", contactList(u.contacts)]].map(([k, v]) => [h("dt", {}, t(k)), h("dd", {}, v)])),
    riskFacts(unit.risk),
    h("h3", {}, t("units.devices")),
    devices.length === 0 ? h("p", { class: "muted" }, t("devices.empty")) : h("ul", { class: "chips" }, devices.map((d) =>
      h("li", {}, h("button", { type: "button", class: `chip devstatus-${d.status ?? "unknown"}`, onclick: () => view.onDevice(d.device_id) },
        `${d.device_id} · ${term("kind", d.kind)} · ${term("devstatus", d.status ?? "unknown")}`)))),
    unitPlans(u.unit_id, devices, { canAct: view.canAct, onError: view.onError }),
    h("h3", {}, t("units.alarms")),
    alarms.length === 0 ? h("p", { class: "muted" }, t("board.empty")) : h("ul", { class: "plain" }, alarms.map((a) =>
      h("li", {}, h("button", { type: "button", class: "link", onclick: () => view.onAlarm(a.alarm_id) },
        `${fmtTime(a.last_seen)} · ${term("type", a.type)} · ${term("status", a.status)} · ×${fmtValue(a.count)}`)))),
  ];
}

/** Redraw (after a language switch, too). */
export function render() {
  const groups = subregions();
  fill(byId("units-body"),
    breadcrumb(),
    exportBar(),
    trendSection(),
    dutySection(),
    groups.length > 0 && [h("h3", {}, t("units.subregions")), h("ul", { class: "region-cards" }, groups.map(regionCard))],
    h("h3", {}, t("units.units"), " ", h("span", { class: "muted" }, t("units.count", { n: units.length }))),
    truncated && h("p", { class: "muted" }, t("units.truncated", { n: units.length })),
    unitsTable());
  const pane = byId("unit-detail");
  pane.hidden = unit === null;
  fill(pane, unit && unitDetail());
}
