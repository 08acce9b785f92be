// One alarm for the operator on duty: what and where (unit, contacts to call, devices and their
// rooms), the response loop (times, who was told, what responders did, dispatch), the acknowledge
// and resolve actions, and one timeline of evidence and handling in local time.

import { acknowledge, resolve } from "./alarms.js";
import {
  actorText, dispatchControl, notificationList, peopleOf, responderActions, responseTimes,
} from "./alarm_response.js";
import { get } from "./api.js";
import { contactList } from "./contacts.js";
import { alarmPlan } from "./floorplan.js";
import { fill, fmtTime, fmtValue, h, toMs } from "./dom.js";
import {
  component, componentText, evidenceFields, evidenceTime, metricText, placeText, ruleText, suppression,
} from "./evidence.js";
import { knows, t, term } from "./i18n.js";
import { linkageOffers } from "./linkage_offer.js";
import { riskBadge } from "./units.js";

const CLASSIFICATIONS = ["fire", "false_alarm", "test", "fault", "other"];
const REFRESH_MS = 5000; // notifications are sent outside the stream: re-read them while the alarm is open

let shown = null; // {alarm (detail route), notifications (list route, null while loading), unit (risk colour)}
let draft = { classification: "", note: "" }; // the resolve form survives live redraws
let stale = false; // a live change arrived while the operator was in a dialog
let timer = null;
let request = 0;
let view = { canAct: () => false, onDevice: () => {}, onWorkOrders: () => {}, onError: () => {} };
const pane = () => document.querySelector("[data-testid='alarm-detail']");

export function initDetail(options) {
  view = { ...view, ...options };
}

/** Fetch and show one alarm; focus its heading so keyboard and screen-reader users land on it. */
export async function showAlarm(alarmId) {
  const opening = shown?.alarm.alarm_id !== String(alarmId);
  if (opening) draft = { classification: "", note: "" };
  await load(alarmId);
  if (opening) pane().querySelector("h2")?.focus();
}

async function load(alarmId) {
  const mine = ++request;
  const [alarm, notes] = await Promise.all([
    get(`alarms/${alarmId}`),
    get(`alarms/${alarmId}/notifications`).catch(() => ({ items: null })),
  ]);
  const unitId = alarm.unit?.unit_id ?? alarm.unit_id;
  const sameUnit = shown?.unit && shown.unit.unit_id === unitId;
  const uitds = [...new Set(alarm.device_ids.map((id) => component(id)?.uitd).filter(Boolean))];
  const [unit, hosts] = await Promise.all([
    !unitId ? null : sameUnit ? shown.unit : get(`units/${encodeURIComponent(unitId)}`).catch(() => null),
    Promise.all(uitds.map((id) => (shown?.hosts?.has(id) ? shown.hosts.get(id)
      : get(`devices/${encodeURIComponent(id)}`).catch(() => null)))),
  ]);
  if (mine !== request) return; // another alarm was opened meanwhile
  const same = shown !== null && JSON.stringify([shown.alarm, shown.notifications]) === JSON.stringify([alarm, notes.items]);
  shown = { alarm, notifications: notes.items, unit, hosts: new Map(uitds.map((id, i) => [id, hosts[i]])) };
  if (!same) render(); // an unchanged re-read leaves the pane (and the reader's place in it) alone
  clearTimeout(timer);
  if (alarm.status !== "resolved") timer = setTimeout(() => refresh(alarmId), REFRESH_MS);
}

function refresh(alarmId) {
  if (shown?.alarm.alarm_id !== String(alarmId)) return;
  if (document.hidden) { timer = setTimeout(() => refresh(alarmId), REFRESH_MS); return; }
  load(alarmId).catch(view.onError);
}

/** Refresh the pane when `alarm` (from the stream) is the one on screen. */
export function alarmChanged(alarm) {
  if (shown && alarm.alarm_id === shown.alarm.alarm_id) load(alarm.alarm_id).catch(view.onError);
}

export function closeDetail() {
  shown = null;
  clearTimeout(timer);
  request += 1;
  render();
}

/** Redraw (after a language switch, too); deferred while a dialog is open. */
export function render() {
  const el = pane();
  if (shown !== null && el.querySelector("dialog[open]")) { stale = true; return; }
  stale = false;
  el.hidden = shown === null;
  if (shown === null) return fill(el);
  const { alarm: a, notifications } = shown;
  const focused = document.activeElement?.id;
  const people = peopleOf(notifications ?? []);
  const quiet = suppression(a);
  fill(el,
    h("div", { class: "pane-head" },
      h("h2", { tabindex: "-1" }, t("alarm.heading", { id: a.alarm_id }), " ", h("span", { class: "type-name" }, term("type", a.type))),
      h("button", { type: "button", class: "icon", "aria-label": t("app.close"), testid: "detail-close", onclick: closeDetail }, "×")),
    h("p", { class: quiet.length > 0 ? "badges quiet" : "badges" },
      h("span", { class: `badge severity-${a.severity}` }, term("severity", a.severity)), " ",
      h("span", { class: `badge response-${a.response}` }, term("response", a.response)), " ",
      h("span", { class: `badge status-badge status-${a.status}`, testid: "detail-status", "data-status": a.status }, term("status", a.status)),
      a.dispatched_at && [" ", h("span", { class: "badge dispatched", testid: "dispatched-badge" }, t("dispatch.done"))],
      " ", clockSkewBadge((a.evidence ?? []).find((e) => e.clock_skew)?.clock_skew)),
    quiet.length > 0 && h("p", { class: "suppressed", testid: "suppressed", role: "note" },
      h("strong", {}, t("quiet.title")), " ", quiet.map((r) => t(`quiet.${r}`)).join("；"), " ",
      h("span", {}, t("quiet.effect"))),
    unitSection(a),
    deviceSection(a),
    alarmPlan(a, a.device_ids.map((id) => component(id)?.uitd ?? id), view.onError),
    actions(a),
    resolveForm(a),
    h("h3", {}, t("rt.heading")),
    h("p", { class: "muted small" }, t("rt.since", { at: fmtTime(a.raised_at ?? a.first_seen) })),
    responseTimes(a),
    h("h3", {}, t("resp.heading")),
    responderActions(a.timeline, people, render),
    h("h3", {}, t("notif.heading")),
    notificationList(notifications),
    h("h3", {}, t("alarm.facts")),
    facts(a),
    h("h3", {}, t("alarm.timeline")),
    timeline(a, people));
  el.querySelector("dialog")?.addEventListener("close", () => { if (stale) render(); });
  if (focused) document.getElementById(focused)?.focus();
}

function unitSection(a) {
  const u = a.unit;
  if (!u) return h("section", { class: "unit-card", testid: "alarm-unit" }, h("p", { class: "muted" }, t("alarm.noUnit")));
  return h("section", { class: "unit-card", testid: "alarm-unit", "aria-label": t("alarm.unit") },
    h("div", { class: "unit-name" }, h("strong", { testid: "unit-name" }, u.name || u.unit_id), " ",
      shown.unit && h("span", { class: "risk-label" }, h("span", { class: "muted" }, t("units.risk")), " ", riskBadge(shown.unit.risk_colour))),
    h("div", { testid: "unit-address" }, u.address || "—"),
    h("div", { class: "muted" }, [term("industry", u.industry), u.region].filter((x) => x && x !== "—").join(" · ")),
    contactList(u.contacts, !view.canAct()));
}

function deviceSection(a) {
  const byId = new Map((a.devices ?? []).map((d) => [d.device_id, d]));
  return h("ul", { class: "device-list", testid: "alarm-devices", "aria-label": t("alarm.devices") },
    a.device_ids.map((id) => deviceItem(id, byId.get(id) ?? {})));
}

function deviceItem(id, d) {
  const c = component(id);
  const host = c ? shown.hosts.get(c.uitd) : null; // a panel component: the UITD it reports through
  const place = placeText(d.location);
  const hostPlace = host ? placeText(host.location) : "";
  const target = c ? c.uitd : id;
  return h("li", { testid: "alarm-device", "data-device-id": id },
    h("div", {},
      h("strong", {}, c ? term("kind", "uitd") : d.kind ? term("kind", d.kind) : t("alarm.device")), " ",
      h("button", { type: "button", class: "link", testid: "device-link", onclick: () => view.onDevice(target) }, target)),
    c && h("div", { testid: "device-component" }, componentText(c)),
    h("div", { class: place || hostPlace ? "place" : "place muted", testid: "device-place" },
      place || (hostPlace ? t("alarm.hostPlace", { place: hostPlace }) : t("alarm.noPlace"))));
}

/** The work orders of the alarm's device (one device) or else of its unit (CONTRACT §11). */
function workOrdersLink(a) {
  const only = a.device_ids.length === 1 ? component(a.device_ids[0])?.uitd ?? a.device_ids[0] : null;
  const filter = only ? { device_id: only } : a.unit_id ? { unit_id: a.unit_id } : null;
  return filter ? h("button", { type: "button", class: "link", testid: "alarm-work-orders",
    onclick: () => view.onWorkOrders(filter) }, t("wo.link")) : "—";
}

function facts(a) {
  const rows = [
    ["alarm.first_seen", fmtTime(a.first_seen)],
    ["alarm.last_seen", fmtTime(a.last_seen)],
    ["alarm.count", String(a.count)],
    ["alarm.rule", h("span", { title: a.rule, testid: "alarm-rule" }, ruleText(a.rule))],
    ["alarm.escalation", term("escalation", a.escalation_level)],
    ["alarm.classification", term("classification", a.classification)],
    ["wo.link", workOrdersLink(a)],
    a.parent_id && ["alarm.parent", alarmLink(a.parent_id, "alarm-parent")],
    a.children?.length > 0 && ["alarm.children", a.children.map((id) => [alarmLink(id, "alarm-child"), " "])],
  ];
  return h("dl", { class: "facts" }, rows.filter(Boolean).map(([key, value]) => [h("dt", {}, t(key)), h("dd", {}, value)]));
}

/** A link to another alarm of the same incident (its fire, or one of its detector alarms). */
function alarmLink(alarmId, testid) {
  return h("button", { type: "button", class: "link", testid, "data-alarm-id": alarmId,
    onclick: () => showAlarm(alarmId).catch(view.onError) }, `#${alarmId}`);
}

function actions(a) {
  if (!view.canAct()) return h("p", { class: "muted" }, t("alarm.viewerOnly"));
  const ack = (a.status === "active_unack" || a.status === "cleared_unack") &&
    h("button", { type: "button", class: "primary big", testid: "detail-ack", onclick: (e) => act(e.currentTarget, () => acknowledge(a.alarm_id)) },
      t("alarm.ackLong"));
  const dispatch = dispatchControl(a, {
    onDone: () => load(a.alarm_id).catch(view.onError),
    onError: view.onError,
  });
  if (a.status === "resolved") {
    return h("div", { class: "alarm-actions", testid: "alarm-actions" }, h("p", { class: "muted" }, t("alarm.done")), dispatch);
  }
  const linkage = linkageOffers(a, { onDone: () => load(a.alarm_id).catch(view.onError), onError: view.onError });
  return h("div", { class: "alarm-actions", testid: "alarm-actions" }, h("div", { class: "action-row" }, ack, dispatch), linkage);
}

/** Resolve with a classification and a note (operators; open alarms). */
function resolveForm(a) {
  if (!view.canAct() || a.status === "resolved") return null;
  // No classification is preselected: closing an alarm as a real fire (or a false one) must be a choice.
  const select = h("select", { id: "resolve-class", required: true, testid: "resolve-classification",
    onchange: (e) => { draft.classification = e.target.value; } },
  h("option", { value: "", disabled: true, selected: draft.classification === "" }, t("alarm.choose_classification")),
  CLASSIFICATIONS.map((c) => h("option", { value: c, selected: draft.classification === c }, term("classification", c))));
  const note = h("textarea", { id: "resolve-note", rows: 2, maxlength: 4000, testid: "resolve-note",
    oninput: (e) => { draft.note = e.target.value; } });
  note.value = draft.note;
  const form = h("form", { class: "resolve", testid: "resolve-form", onsubmit: (e) => {
    e.preventDefault();
    act(e.submitter ?? form.querySelector("button"), () => resolve(a.alarm_id, select.value, note.value.trim()))
      .then((ok) => { if (ok) draft = { classification: "", note: "" }; });
  } },
  h("label", { for: "resolve-class" }, t("alarm.classification")), select,
  h("label", { for: "resolve-note" }, t("alarm.note")), note,
  h("button", { type: "submit", testid: "resolve-submit" }, t("alarm.resolve")));
  return form;
}

async function act(button, action) {
  button.disabled = true;
  try {
    await action();
    await load(shown.alarm.alarm_id);
    return true;
  } catch (err) {
    button.disabled = false;
    view.onError(err);
    return false;
  }
}

/** Evidence from a device whose clock was ahead (`clock_skew`: recorded at the receive time). */
function clockSkewBadge(skew) {
  return skew && h("span", { class: "badge clock-skew", testid: "clock-skew",
    title: t("clock.skewEvidence", { s: fmtValue(skew.offset_s), device: fmtTime(skew.device_ts_ms) }) }, t("clock.skew"));
}

function deviceButton(id) {
  const c = component(id);
  return h("button", { type: "button", class: "link", onclick: () => view.onDevice(c ? c.uitd : id) },
    c ? `${c.uitd} · ${componentText(c)}` : id);
}

function evidenceItem(e) {
  return h("li", { class: "tl-evidence", testid: "timeline-evidence" },
    h("span", { class: "tl-kind" }, t("alarm.evidence")),
    e.device_id && deviceButton(e.device_id),
    e.type && h("span", { class: "pair" }, term("type", e.type)),
    e.event && h("span", { class: "pair" }, term("event", e.event)),
    clockSkewBadge(e.clock_skew),
    Object.entries(e.metrics ?? {}).map(([name, v]) => h("span", { class: "pair" }, metricText(name, v))),
    evidenceFields(e));
}

/** What changed in an `upgraded` entry: `{from: {...}, to: {...}}` as `响应：待核实 → 秒响应`. */
function change(detail) {
  const { from, to } = detail;
  if (!to || typeof to !== "object") return [];
  return Object.keys(to).filter((k) => from?.[k] !== to[k]).map((k) => h("span", { class: "pair" },
    `${t(`field.${k}`)}：${k === "rule" ? ruleText(from?.[k]) : term(k, from?.[k])} → ${k === "rule" ? ruleText(to[k]) : term(k, to[k])}`));
}

/** The words of one timeline entry's detail, by what its action carries. */
function detailWords(e, people) {
  const d = e.detail ?? {};
  const out = [];
  if (typeof d.level === "number") out.push(t("tl.level", { level: term("escalation", d.level) }));
  if (d.recipient) out.push(actorText(d.recipient, people));
  if (d.channel) out.push(d.channel);
  if (d.reason) out.push(term("nreason", d.reason));
  if (d.error_class) out.push(term("errclass", d.error_class.replace(/\s+/g, "_")));
  if (d.classification) out.push(term("classification", d.classification));
  if (d.proposed_classification) out.push(t("resp.proposes", { c: term("classification", d.proposed_classification) }));
  if (d.because) out.push(ruleText(d.because));
  if (Array.isArray(d.responders)) {
    out.push(t("tl.dispatchedTo", { who: d.responders.map((id) => people.get(id)?.name ?? id).join("、") || "—" }));
  }
  if (typeof d.lat === "number" && typeof d.lon === "number") out.push(t("resp.position", { lat: d.lat.toFixed(5), lon: d.lon.toFixed(5) }));
  if (d.note) out.push(`“${d.note}”`);
  return out.map((w) => h("span", { class: "pair" }, w));
}

function eventItem(e, people) {
  const notify = e.action === "notified" || e.action === "notification_failed";
  const cls = notify ? `tl-notify ${e.action === "notified" ? "ok" : "failed"}` : `tl-event action-${e.action}`;
  return h("li", { class: cls, testid: "timeline-event", "data-action": e.action },
    h("span", { class: "tl-kind" }, knows("action", e.action) ? term("action", e.action) : e.action),
    !notify && e.actor && h("span", { class: "pair" }, actorText(e.actor, people)),
    e.action === "upgraded" && change(e.detail ?? {}),
    detailWords(e, people));
}

/** A v1 endpoint notification attempt (CONTRACT §5 `notifications` of the detail). */
function attemptItem(n) {
  return h("li", { class: `tl-notify ${n.ok ? "ok" : "failed"}`, testid: "timeline-attempt" },
    h("span", { class: "tl-kind" }, t("tl.endpoint")),
    h("span", { class: "pair" }, t("tl.level", { level: term("escalation", n.level) })),
    h("span", { class: "pair" }, `${n.target} #${n.attempt} ${n.ok ? "✓" : "✗"}`),
    n.detail && h("span", { class: "pair muted" }, n.detail));
}

function timeline(a, people) {
  const entries = [
    ...(a.evidence ?? []).map((e) => [evidenceTime(e), evidenceItem(e)]),
    ...(a.timeline ?? []).map((e) => [toMs(e.at), eventItem(e, people)]),
    ...(a.notifications ?? []).map((n) => [toMs(n.at), attemptItem(n)]),
  ].sort((x, y) => (x[0] ?? -Infinity) - (y[0] ?? -Infinity)); // stable: evidence before events at equal times
  if (entries.length === 0) return h("p", { class: "muted" }, t("app.none"));
  return h("ol", { class: "timeline", testid: "alarm-timeline" }, entries.map(([ms, item]) => {
    item.prepend(h("time", { datetime: ms === null ? undefined : new Date(ms).toISOString() }, ms === null ? "—" : fmtTime(ms)));
    return item;
  }));
}
