// One alarm: its facts, the acknowledge and resolve actions, and one timeline merging the
// evidence (contributing readings), the lifecycle events and the notification attempts.

import { acknowledge, resolve } from "./alarms.js";
import { get } from "./api.js";
import { fill, fmtTime, fmtValue, h, toMs } from "./dom.js";
import { knows, t, term } from "./i18n.js";

const CLASSIFICATIONS = ["fire", "false_alarm", "test", "fault", "other"];
const TIME_KEYS = ["ts", "at", "time", "received_at"];

let shown = null; // the alarm object on screen, with `timeline` and `notifications`
let view = { canAct: () => false, onDevice: () => {}, onWorkOrders: () => {}, onError: () => {} };
const pane = () => document.querySelector("[data-testid='alarm-detail']");

export function initDetail(options) {
  view = { ...view, ...options };
}

/** Fetch and show one alarm; focus its heading so keyboard and screen-reader users land on it. */
export async function showAlarm(alarmId) {
  shown = await get(`alarms/${alarmId}`);
  render();
  pane().querySelector("h2")?.focus();
}

/** Refresh the pane when `alarm` (from the stream) is the one on screen. */
export function alarmChanged(alarm) {
  if (shown && alarm.alarm_id === shown.alarm_id) showAlarm(alarm.alarm_id).catch(view.onError);
}

export function closeDetail() {
  shown = null;
  render();
}

/** Redraw (after a language switch, too). */
export function render() {
  const el = pane();
  el.hidden = shown === null;
  if (shown === null) return fill(el);
  const a = shown;
  fill(el,
    h("div", { class: "pane-head" },
      h("h2", { tabindex: "-1" }, t("alarm.heading", { id: a.alarm_id })),
      h("button", { type: "button", class: "icon", "aria-label": t("app.close"), testid: "detail-close", onclick: closeDetail }, "×")),
    h("p", { class: "badges" },
      h("strong", {}, term("type", a.type)), " ",
      h("span", { class: `badge severity-${a.severity}` }, term("severity", a.severity)), " ",
      h("span", { class: `badge response-${a.response}` }, term("response", a.response)), " ",
      h("span", { class: "badge", testid: "detail-status", "data-status": a.status }, term("status", a.status)),
      " ", clockSkewBadge((a.evidence ?? []).find((e) => e.clock_skew)?.clock_skew)),
    facts(a),
    actions(a),
    h("h3", {}, t("alarm.timeline")),
    timeline(a));
}

/** The work orders of the alarm's device (one device) or else of its unit (CONTRACT §11). */
function workOrdersLink(a) {
  const filter = a.device_ids.length === 1 ? { device_id: a.device_ids[0] } : a.unit_id ? { unit_id: a.unit_id } : null;
  return filter ? h("button", { type: "button", class: "link", testid: "alarm-work-orders",
    onclick: () => view.onWorkOrders(filter) }, t("wo.link")) : "—";
}

function facts(a) {
  const devices = a.device_ids.map((id) =>
    h("button", { type: "button", class: "link", onclick: () => view.onDevice(id) }, id));
  const rows = [
    ["alarm.unit", a.unit_id ?? "—"],
    ["alarm.region", a.region || "—"],
    ["alarm.devices", devices.length ? devices : "—"],
    ["alarm.first_seen", fmtTime(a.first_seen)],
    ["alarm.last_seen", fmtTime(a.last_seen)],
    ["alarm.count", String(a.count)],
    ["alarm.rule", h("code", {}, a.rule)],
    ["alarm.escalation", `${a.escalation_level} · ${term("escalation", a.escalation_level)}`],
    ["alarm.classification", term("classification", a.classification)],
    ["wo.link", workOrdersLink(a)],
  ];
  return h("dl", { class: "facts" }, rows.map(([key, value]) => [h("dt", {}, t(key)), h("dd", {}, value)]));
}

function actions(a) {
  if (!view.canAct()) return h("p", { class: "muted" }, t("alarm.viewerOnly"));
  if (a.status === "resolved") return h("p", { class: "muted" }, t("alarm.done"));
  const ack = (a.status === "active_unack" || a.status === "cleared_unack") &&
    h("button", { type: "button", class: "primary", testid: "detail-ack", onclick: (e) => act(e.currentTarget, () => acknowledge(a.alarm_id)) },
      t("alarm.ack"));
  // No classification is preselected: closing an alarm as a real fire (or a false one) must be a choice.
  const select = h("select", { id: "resolve-class", required: true, testid: "resolve-classification" },
    h("option", { value: "", disabled: true, selected: true }, t("alarm.choose_classification")),
    CLASSIFICATIONS.map((c) => h("option", { value: c }, term("classification", c))));
  const note = h("textarea", { id: "resolve-note", rows: 2, maxlength: 4000, testid: "resolve-note" });
  const form = h("form", { class: "resolve", testid: "resolve-form", onsubmit: (e) => {
    e.preventDefault();
    act(e.submitter ?? form.querySelector("button"), () => resolve(a.alarm_id, select.value, note.value.trim()));
  } },
  h("label", { for: "resolve-class" }, t("alarm.classification")), select,
  h("label", { for: "resolve-note" }, t("alarm.note")), note,
  h("button", { type: "submit", testid: "resolve-submit" }, t("alarm.resolve")));
  return h("div", { class: "alarm-actions" }, ack, form);
}

async function act(button, action) {
  button.disabled = true;
  try {
    await action();
    await showAlarm(shown.alarm_id);
  } catch (err) {
    button.disabled = false;
    view.onError(err);
  }
}

function timeOf(entry) {
  for (const key of TIME_KEYS) if (toMs(entry[key]) !== null) return toMs(entry[key]);
  return null;
}

/** `key: value` pairs of whatever an entry carries besides the fields shown on their own. */
function pairs(obj, skip) {
  return Object.entries(obj ?? {}).filter(([k, v]) => !skip.includes(k) && v !== null && v !== undefined)
    .map(([k, v]) => h("span", { class: "pair" }, `${k}: ${fmtValue(v)}`));
}

function metrics(values) {
  return Object.entries(values ?? {}).map(([name, v]) =>
    h("span", { class: "pair" }, `${knows("metric", name) ? term("metric", name) : name} ${fmtValue(v)}`));
}

/** A change `{from: {...}, to: {...}}` as `response: 待核实 → 秒响应`. */
function change(detail) {
  if (!detail?.to) return [];
  return Object.keys(detail.to).filter((k) => detail.from?.[k] !== detail.to[k]).map((k) =>
    h("span", { class: "pair" }, `${k}: ${term(k, detail.from?.[k])} → ${term(k, detail.to[k])}`));
}

/** Evidence from a device whose clock was ahead (`clock_skew`: recorded at the receive time). */
function clockSkewBadge(skew) {
  return skew && h("span", { class: "badge clock-skew", testid: "clock-skew",
    title: t("clock.skewEvidence", { s: fmtValue(skew.offset_s), device: fmtTime(skew.device_ts_ms) }) }, t("clock.skew"));
}

function evidenceItem(e) {
  return h("li", { class: "tl-evidence", testid: "timeline-evidence" },
    h("span", { class: "tl-kind" }, t("alarm.evidence")),
    e.device_id && h("button", { type: "button", class: "link", onclick: () => view.onDevice(e.device_id) }, e.device_id),
    e.event && h("span", { class: "pair" }, term("event", e.event)),
    clockSkewBadge(e.clock_skew),
    metrics(e.metrics),
    pairs(e, [...TIME_KEYS, "device_id", "event", "metrics", "clock_skew"]));
}

function eventItem(e) {
  const detail = e.detail ?? {};
  return h("li", { class: `tl-event action-${e.action}`, testid: "timeline-event" },
    h("span", { class: "tl-kind" }, term("action", e.action)),
    h("span", { class: "pair" }, e.actor),
    detail.classification && h("span", { class: "pair" }, term("classification", detail.classification)),
    detail.level !== undefined && h("span", { class: "pair" }, term("escalation", detail.level)),
    change(detail),
    pairs(detail, ["ts", "from", "to", "classification", "level"]));
}

function notificationItem(n) {
  return h("li", { class: `tl-notify ${n.ok ? "ok" : "failed"}`, testid: "timeline-notification" },
    h("span", { class: "tl-kind" }, term("action", "notified")),
    h("span", { class: "pair" }, term("escalation", n.level)),
    h("span", { class: "pair" }, `${n.target} #${n.attempt} ${n.ok ? "✓" : "✗"}`),
    n.detail && h("span", { class: "pair muted" }, n.detail));
}

function timeline(a) {
  const entries = [
    ...(a.evidence ?? []).map((e) => [timeOf(e), evidenceItem(e)]),
    ...(a.timeline ?? []).map((e) => [timeOf(e), eventItem(e)]),
    ...(a.notifications ?? []).map((n) => [timeOf(n), notificationItem(n)]),
  ].sort((x, y) => (x[0] ?? -Infinity) - (y[0] ?? -Infinity)); // stable: evidence before events at equal times
  if (entries.length === 0) return h("p", { class: "muted" }, t("app.none"));
  return h("ol", { class: "timeline", testid: "alarm-timeline" }, entries.map(([ms, item]) => {
    item.prepend(h("time", { datetime: ms === null ? undefined : new Date(ms).toISOString() }, ms === null ? "—" : fmtTime(ms)));
    return item;
  }));
}
