// Hidden-danger work orders (隐患整改, CONTRACT §11): a filtered list, CSV export, and one order
// with its history; operators assign, mark fixed or cancel. The alarm and device views open it
// filtered to their device or unit.

import { download, get, patch } from "./api.js";
import { fill, fmtShort, fmtTime, fmtValue, h } from "./dom.js";
import { t, term } from "./i18n.js";

const STATES = ["open", "assigned", "fixed", "verified", "cancelled"];
const KINDS = ["repair", "reconnect", "battery", "tamper", "false_alarms", "shielded", "hidden_danger"];

let view = { canAct: () => false, onShow: () => {}, onDevice: () => {}, onError: () => {} };
let query = {};
let cursor = null;
let listed = [];
let shown = null; // one order, as GET /work-orders/{id} answers it

const byId = (id) => document.querySelector(`[data-testid="${id}"]`);

/** Wire the filter form, "load more" and the CSV export. */
export function initWorkOrders(options) {
  view = { ...view, ...options };
  byId("wo-filter-form").addEventListener("submit", (e) => {
    e.preventDefault();
    search().catch(view.onError);
  });
  byId("wo-more").addEventListener("click", () => more().catch(view.onError));
  byId("wo-csv").addEventListener("click", () => {
    readForm();
    download("work-orders", { ...query, format: "csv" }, "work-orders.csv").catch(view.onError);
  });
  renderOptions();
}

function renderOptions() {
  for (const [testid, field, values] of [["wo-state", "wostate", STATES], ["wo-kind", "wokind", KINDS]]) {
    const select = byId(testid);
    const value = select.value;
    fill(select, h("option", { value: "" }, t("devices.any")), values.map((v) => h("option", { value: v }, term(field, v))));
    select.value = value;
  }
  const overdue = byId("wo-overdue");
  const value = overdue.value;
  fill(overdue, h("option", { value: "" }, t("devices.any")), h("option", { value: "true" }, t("wo.overdueOnly")),
    h("option", { value: "false" }, t("wo.notOverdue")));
  overdue.value = value;
}

function readForm() {
  query = {
    state: byId("wo-state").value, kind: byId("wo-kind").value, overdue: byId("wo-overdue").value,
    unit_id: byId("wo-unit").value.trim(), device_id: byId("wo-device").value.trim(),
  };
}

/** Show the work-order view filtered to a device or a unit (`{device_id}` or `{unit_id}`). */
export async function showWorkOrders(filter = {}) {
  byId("wo-state").value = "";
  byId("wo-kind").value = "";
  byId("wo-overdue").value = "";
  byId("wo-unit").value = filter.unit_id ?? "";
  byId("wo-device").value = filter.device_id ?? "";
  view.onShow();
  await search();
}

async function search() {
  readForm();
  listed = [];
  cursor = null;
  await more();
}

async function more() {
  const page = await get("work-orders", { ...query, cursor, limit: 100 });
  listed.push(...page.items);
  cursor = page.next_cursor;
  renderList();
}

function stateBadge(o) {
  return [h("span", { class: `badge wostate-${o.state}`, "data-state": o.state }, term("wostate", o.state)),
    o.overdue && [" ", h("span", { class: "badge overdue", testid: "wo-overdue-badge" }, t("wo.overdue"))]];
}

function renderList() {
  byId("wo-more").hidden = !cursor;
  fill(byId("wo-list"), listed.length === 0
    ? h("tr", {}, h("td", { colspan: 8, class: "empty" }, t("wo.empty")))
    : listed.map((o) => h("tr", { testid: "wo-row", "data-id": o.work_order_id },
      h("td", {}, h("button", { type: "button", class: "link", onclick: () => open(o.work_order_id).catch(view.onError) },
        `#${o.work_order_id}`)),
      h("td", {}, term("wokind", o.kind)),
      h("td", {}, o.reason),
      h("td", {}, stateBadge(o)),
      h("td", {}, o.unit_id ?? "—"),
      h("td", {}, o.device_ids.join(" ") || "—"),
      h("td", {}, o.assignee ?? "—"),
      h("td", {}, o.due))));
}

async function open(id) {
  shown = await get(`work-orders/${id}`);
  render();
  byId("wo-detail").querySelector("h2")?.focus();
}

async function change(body) {
  shown = await patch(`work-orders/${shown.work_order_id}`, body);
  const i = listed.findIndex((o) => o.work_order_id === shown.work_order_id);
  if (i >= 0) listed[i] = shown;
  render();
}

function actions(o) {
  if (!view.canAct() || o.state === "verified" || o.state === "cancelled") return null;
  const assignee = h("input", { testid: "wo-assignee", size: 12, value: o.assignee ?? "", "aria-label": t("wo.assignee") });
  const act = (body) => () => change(typeof body === "function" ? body() : body).catch(view.onError);
  return h("div", { class: "toolbar" },
    assignee,
    h("button", { type: "button", testid: "wo-assign", onclick: act(() => ({ assignee: assignee.value.trim() })) }, t("wo.assign")),
    o.state !== "fixed" && h("button", { type: "button", testid: "wo-fixed", onclick: act({ state: "fixed" }) }, t("wo.markFixed")),
    h("button", { type: "button", testid: "wo-cancel", onclick: act({ state: "cancelled" }) }, t("wo.cancel")));
}

/** Redraw the list and the detail pane (after a language switch, too). */
export function render() {
  renderOptions();
  renderList();
  const pane = byId("wo-detail");
  pane.hidden = shown === null;
  if (shown === null) return;
  const o = shown;
  const devices = o.device_ids.map((id) => h("button", { type: "button", class: "link", onclick: () => view.onDevice(id) }, id));
  const facts = [
    ["wo.kind", term("wokind", o.kind)], ["wo.state", stateBadge(o)], ["wo.reason", o.reason],
    ["alarm.unit", o.unit_id ?? "—"], ["alarm.region", o.region || "—"], ["alarm.devices", devices.length ? devices : "—"],
    ["wo.assignee", o.assignee ?? "—"], ["wo.due", o.due], ["wo.opened", `${fmtTime(o.created_at)} · ${o.opened_by}`],
  ];
  fill(pane,
    h("div", { class: "pane-head" },
      h("h2", { tabindex: "-1", testid: "wo-heading" }, t("wo.heading", { id: o.work_order_id })),
      h("button", { type: "button", class: "icon", "aria-label": t("app.close"), onclick: () => { shown = null; render(); } }, "×")),
    h("dl", { class: "facts" }, facts.map(([key, value]) => [h("dt", {}, t(key)), h("dd", {}, value)])),
    actions(o),
    h("h3", {}, t("wo.history")),
    h("ol", { class: "timeline", testid: "wo-history" }, (o.history ?? []).map((e) => h("li", {},
      h("span", { class: "time", title: fmtTime(e.at) }, fmtShort(e.at)), " ",
      h("strong", {}, term("woaction", e.action)), " · ", e.actor,
      Object.keys(e.detail ?? {}).length ? [" ", h("span", { class: "muted" }, fmtValue(e.detail))] : null))));
}
