// The live alarm board: the initial list, then every change from the SSE stream, merged by alarm id.

import { alarmStream, get, post } from "./api.js";
import { fill, fmtShort, fmtTime, h, toMs } from "./dom.js";
import { t, term } from "./i18n.js";
import * as sound from "./sound.js";

const OPEN = ["active_unack", "active_ack", "cleared_unack"];
const UNACKED = new Set(["active_unack", "cleared_unack"]);
const MAX_KEPT = 1000;
const RETRY_MS = 3000;

const alarms = new Map(); // alarm_id (or a pending key) -> alarm object of CONTRACT §5
const changedAt = new Map(); // alarm_id -> stream generation of its last live change
let generation = 0;
let stream = null;
let lastEventId = null;
let retry = null;
let view = { canAct: () => false, onOpen: () => {}, onChange: () => {}, onStream: () => {}, onError: () => {} };

const byId = (id) => document.querySelector(`[data-testid="${id}"]`);
const isImmediateUnacked = (a) => a.response === "immediate" && a.status === "active_unack";
const keyOf = (a) => a.alarm_id ?? `pending:${a.type}:${a.device_ids.join(",")}`;

/** Wire the board: who may act, and what to call when an alarm is opened, changes, or the stream state moves. */
export function initBoard(options) {
  view = { ...view, ...options };
  byId("board-filter").addEventListener("change", () => { load().catch(view.onError); });
  byId("board-refresh").addEventListener("click", () => { load().catch(view.onError); });
  byId("banner-show").addEventListener("click", () => {
    const first = sorted([...alarms.values()]).find(isImmediateUnacked);
    if (first) view.onOpen(first.alarm_id);
  });
}

/** Forget everything (on logout) and close the stream. */
export function resetBoard() {
  stream?.close();
  clearTimeout(retry);
  stream = null;
  lastEventId = null;
  alarms.clear();
  changedAt.clear();
  render();
}

/** Load the alarms the filter asks for; a live change newer than the request wins over the list. */
export async function load() {
  const filter = byId("board-filter").value;
  const startedAt = generation;
  const page = await get("alarms", { status: filter === "open" ? OPEN.join(",") : undefined, limit: 500 });
  for (const alarm of page.items) {
    if ((changedAt.get(alarm.alarm_id) ?? -1) < startedAt) alarms.set(alarm.alarm_id, alarm);
  }
  render();
}

/** Open the SSE stream and reload the list each time it (re)opens, so nothing raised while it was
 *  down is missed. EventSource reconnects by itself with Last-Event-ID; when the server refuses it
 *  (closed state) we reopen it ourselves, resuming after the last event seen. */
export function connect() {
  stream?.close();
  const es = alarmStream(lastEventId);
  stream = es;
  view.onStream("connecting");
  es.addEventListener("open", () => {
    view.onStream("live");
    load().catch(view.onError);
  });
  es.addEventListener("alarm", (e) => {
    lastEventId = e.lastEventId || lastEventId;
    receive(JSON.parse(e.data));
  });
  es.addEventListener("alarm_pending", (e) => receive(JSON.parse(e.data)));
  es.addEventListener("error", () => {
    if (es.readyState !== EventSource.CLOSED) return view.onStream("reconnecting");
    view.onStream("offline");
    clearTimeout(retry);
    retry = setTimeout(connect, RETRY_MS);
  });
}

/** Take one alarm from the stream or an action's answer. */
export function receive(alarm) {
  const key = keyOf(alarm);
  const before = alarms.get(key);
  if (alarm.alarm_id !== null) {
    for (const [k, a] of alarms) { // the real alarm replaces the one shown while the database was away
      if (a.alarm_id === null && a.type === alarm.type && a.device_ids.some((d) => alarm.device_ids.includes(d))) alarms.delete(k);
    }
    changedAt.set(key, ++generation);
  }
  alarms.set(key, alarm);
  trim();
  const fresh = isImmediateUnacked(alarm) && !(before && isImmediateUnacked(before));
  render(fresh);
  if (alarm.alarm_id !== null) view.onChange(alarm);
}

function trim() {
  if (alarms.size <= MAX_KEPT) return;
  const closed = [...alarms.values()].filter((a) => !OPEN.includes(a.status)).sort((a, b) => toMs(a.last_seen) - toMs(b.last_seen));
  for (const a of closed.slice(0, alarms.size - MAX_KEPT)) alarms.delete(keyOf(a));
}

/** Acknowledge; answers the alarm as it now stands. */
export async function acknowledge(alarmId) {
  const alarm = await post(`alarms/${alarmId}/ack`);
  receive(alarm);
  return alarm;
}

/** Resolve with a classification (fire, false_alarm, test, fault, other) and a note. */
export async function resolve(alarmId, classification, note) {
  const alarm = await post(`alarms/${alarmId}/resolve`, { classification, note: note || null });
  receive(alarm);
  return alarm;
}

/** Unacknowledged immediate first, then unacknowledged, then the rest; newest first within each. */
function sorted(list) {
  const rank = (a) => (isImmediateUnacked(a) ? 0 : UNACKED.has(a.status) ? 1 : 2);
  return list.sort((a, b) => rank(a) - rank(b) || (toMs(b.last_seen) ?? 0) - (toMs(a.last_seen) ?? 0));
}

function visible() {
  const filter = byId("board-filter").value;
  return sorted([...alarms.values()].filter((a) => filter === "all" || OPEN.includes(a.status)));
}

function badge(field, value) {
  return h("span", { class: `badge ${field}-${value}` }, term(field, value));
}

function row(a) {
  const pending = a.alarm_id === null;
  const ackable = view.canAct() && !pending && UNACKED.has(a.status);
  const classes = ["alarm-row", `status-${a.status}`, isImmediateUnacked(a) && "immediate", pending && "pending"];
  return h("tr", {
    class: classes.filter(Boolean).join(" "), testid: "alarm-row", "data-alarm-id": a.alarm_id ?? "",
    "data-status": a.status, "data-response": a.response,
    onclick: (e) => { if (!pending && !e.target.closest("button")) view.onOpen(a.alarm_id); },
  },
  h("td", { class: "time", title: fmtTime(a.last_seen) }, fmtShort(a.last_seen)),
  h("td", {}, term("type", a.type)),
  h("td", {}, badge("severity", a.severity)),
  h("td", {}, badge("response", a.response)),
  h("td", { testid: "alarm-status" }, term("status", a.status)),
  h("td", { class: "where", title: a.region || undefined }, h("div", {}, a.unit_id ?? "—"),
    h("div", { class: "muted" }, (a.region || "").split("/").at(-1))),
  h("td", { class: "ids", title: a.device_ids.join(", ") }, a.device_ids[0] ?? "—",
    a.device_ids.length > 1 && h("span", { class: "muted" }, ` +${a.device_ids.length - 1}`)),
  h("td", { class: "num" }, String(a.count)),
  h("td", { class: "actions" },
    ackable && h("button", { type: "button", class: "primary", testid: "ack-button", "data-alarm-id": a.alarm_id,
      onclick: (e) => ackFromBoard(e.currentTarget, a.alarm_id) }, t("alarm.ack")),
    !pending && h("button", { type: "button", testid: "detail-button", "data-alarm-id": a.alarm_id,
      onclick: () => view.onOpen(a.alarm_id) }, t("board.detail"))));
}

async function ackFromBoard(button, alarmId) {
  button.disabled = true;
  button.textContent = t("alarm.acking");
  try {
    await acknowledge(alarmId);
  } catch (err) {
    view.onError(err);
    render();
  }
}

/** Redraw the board and the 秒响应 banner, keeping keyboard focus on the same control. */
export function render(fresh = false) {
  const focused = document.activeElement?.closest?.("[data-testid='alarm-row'] button");
  const focus = focused && [focused.dataset.testid, focused.dataset.alarmId];
  const rows = visible();
  fill(byId("board-body"), rows.length ? rows.map(row)
    : h("tr", {}, h("td", { colspan: 9, class: "empty", testid: "board-empty" }, t("board.empty"))));
  if (focus) document.querySelector(`[data-testid="${focus[0]}"][data-alarm-id="${focus[1]}"]`)?.focus();

  const pending = rows.filter(isImmediateUnacked).length;
  const banner = byId("immediate-banner");
  banner.hidden = pending === 0;
  byId("banner-text").textContent = t("banner.immediate", { n: pending });
  sound.alert(pending, fresh);
}
