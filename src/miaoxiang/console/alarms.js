// The live alarm board: the initial list, then every change from the SSE stream, merged by alarm id.
// Two lanes (fires, hazards and 秒响应 / device health), urgency order, filters kept in the page
// address, keyboard shortcuts; while the pointer is over the rows their order holds and new alarms
// are announced above the table instead of being inserted under the pointer. One fire is one row:
// an incident's parent (a unit `fire`) expands to show its children (CONTRACT §8 Incidents), and
// acknowledging it acknowledges them all.

import { alarmStream, get, post } from "./api.js";
import * as filters from "./board_filters.js";
import { OPEN, UNACKED, byUrgency, childrenOf, isImmediateUnacked, laneOf, LANES, ruleParts, topLevel } from "./board_order.js";
import { fill, fmtShort, fmtTime, h, toMs } from "./dom.js";
import { knows, t, term, translateStatic } from "./i18n.js";
import * as sound from "./sound.js";

const MAX_KEPT = 1000;
const RETRY_MS = 3000;
const TICK_MS = 1000;
const HOLD_IDLE_MS = 15000; // a pointer resting this long on the rows no longer holds their order
const EXTRAS = ["unit", "devices", "response_times"]; // list-route additions the stream does not carry

const alarms = new Map(); // alarm_id (or a pending key) -> alarm object of CONTRACT §5
const changedAt = new Map(); // alarm_id -> stream generation of its last live change
const asked = new Set(); // alarm ids whose unit was fetched after they came by the stream
const news = new Set(); // keys that arrived while the order was held
const expanded = new Set(); // ids of incident parents whose children are shown
let shown = []; // keys in the order on screen
let held = false; // the pointer is over the rows: keep their order
let movedAt = 0; // when the pointer last moved over the rows
let f = filters.fromQuery(location.search);
let generation = 0;
let stream = null;
let lastEventId = null;
let retry = null;
let view = { canAct: () => false, onOpen: () => {}, onChange: () => {}, onStream: () => {}, onError: () => {} };

const byId = (id) => document.querySelector(`[data-testid="${id}"]`);
const keyOf = (a) => a.alarm_id ?? `pending:${a.type}:${a.device_ids.join(",")}`;
const typing = (el) => el?.closest?.("input, select, textarea, [contenteditable]");

/** Wire the board: who may act, and what to call when an alarm is opened, changes, or the stream state moves. */
export function initBoard(options) {
  view = { ...view, ...options };
  buildControls();
  const body = byId("board-body");
  body.addEventListener("pointerenter", () => { held = true; movedAt = Date.now(); });
  body.addEventListener("pointermove", () => { movedAt = Date.now(); });
  body.addEventListener("pointerleave", () => { held = false; render(); });
  body.addEventListener("keydown", rowKey);
  document.addEventListener("keydown", (e) => {
    if (e.defaultPrevented || e.altKey || e.ctrlKey || e.metaKey || typing(e.target)) return;
    if (document.activeElement?.closest?.("[data-testid='board-body']")) return;
    if ((e.key === "j" || e.key === "ArrowDown") && !byId("board").closest("section").hidden && !e.target.closest?.("button, a")) {
      const first = body.querySelector("tr.alarm-row");
      if (first) { e.preventDefault(); first.focus(); }
    }
  });
  byId("board-news").addEventListener("click", () => { held = false; render(); });
  byId("banner-show").addEventListener("click", () => {
    const first = [...alarms.values()].filter((a) => isImmediateUnacked(a) && !a.parent_id).sort(byUrgency)[0];
    if (first) view.onOpen(first.alarm_id);
  });
  byId("banner-sound-on").addEventListener("click", () => sound.toggle());
  setInterval(tick, TICK_MS);
}

function options(select, values, field, anyKey) {
  fill(select, anyKey && h("option", { value: "", "data-i18n": anyKey }),
    values.map((v) => h("option", { value: v, "data-i18n": `${field}.${v}` })));
}

/** The lane switch and the filter controls, from `f`; every change goes to the address and reloads. */
function buildControls() {
  options(byId("board-filter"), filters.STATUSES, "status");
  byId("board-filter").prepend(h("option", { value: "open", "data-i18n": "board.open" }),
    h("option", { value: "all", "data-i18n": "board.all" }));
  options(byId("board-type"), filters.TYPES, "type", "board.anyType");
  options(byId("board-response"), filters.RESPONSES, "response", "board.anyResponse");
  options(byId("board-industry"), filters.INDUSTRIES, "industry", "board.anyIndustry");
  options(byId("board-time"), Object.keys(filters.RANGES), "board.range", "board.anyTime");
  translateStatic(byId("board-controls"));
  showFilters();
  if (matchMedia("(min-width: 761px)").matches) byId("board-filters-box").open = true;
  byId("board-filters").addEventListener("change", () => setFilters(readFilters()));
  byId("board-filters").addEventListener("submit", (e) => { e.preventDefault(); setFilters(readFilters()); });
  byId("board-clear").addEventListener("click", () => setFilters({ ...filters.DEFAULTS, lane: f.lane }));
  for (const lane of LANES) byId(`lane-${lane}`).addEventListener("click", () => setFilters({ ...f, lane }));
}

function readFilters() {
  const value = (id) => byId(id).value.trim();
  return { lane: f.lane, status: value("board-filter"), type: value("board-type"), response: value("board-response"),
    region: value("board-region").replace(/\/+$/, ""), industry: value("board-industry"), time: value("board-time") };
}

function showFilters() {
  byId("board-filter").value = f.status;
  byId("board-type").value = f.type;
  byId("board-response").value = f.response;
  byId("board-region").value = f.region;
  byId("board-industry").value = f.industry;
  byId("board-time").value = f.time;
}

function setFilters(next) {
  const reload = Object.keys(next).some((k) => k !== "lane" && next[k] !== f[k]);
  f = next;
  history.replaceState(history.state, "", location.pathname + filters.toQuery(f, location.search) + location.hash);
  showFilters();
  held = false;
  if (reload) load().catch(view.onError);
  render();
}

/** Forget everything (on logout) and close the stream. */
export function resetBoard() {
  stream?.close();
  clearTimeout(retry);
  stream = null;
  lastEventId = null;
  alarms.clear();
  changedAt.clear();
  asked.clear();
  expanded.clear();
  render();
}

/** Load the alarms the filters ask for, and every unacknowledged 秒响应 alarm for the banner
 *  whatever the filters; a live change newer than the request wins over the list. */
export async function load() {
  const startedAt = generation;
  const pages = await Promise.all([get("alarms", { ...filters.apiQuery(f, Date.now()), limit: 500 }),
    get("alarms", { status: "active_unack", response: "immediate", limit: 500 })]);
  for (const alarm of pages.flatMap((p) => p.items)) {
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

/** Take one alarm from the stream or an action's answer; the stream's alarms keep the unit,
 *  devices and response times the list gave them (a new one's are fetched once). */
export function receive(alarm) {
  const key = keyOf(alarm);
  const before = alarms.get(key);
  if (alarm.alarm_id !== null) {
    for (const [k, a] of alarms) { // the real alarm replaces the one shown while the database was away
      if (a.alarm_id === null && a.type === alarm.type && a.device_ids.some((d) => alarm.device_ids.includes(d))) alarms.delete(k);
    }
    changedAt.set(key, ++generation);
  }
  const merged = { ...Object.fromEntries(EXTRAS.map((x) => [x, before?.[x]])), ...alarm };
  alarms.set(key, merged);
  trim();
  if (!before && !alarm.parent_id && filters.matches(f, merged, Date.now())) announce(merged);
  const fresh = isImmediateUnacked(alarm) && !(before && isImmediateUnacked(before));
  render(fresh);
  if (merged.unit === undefined && alarm.alarm_id !== null && !asked.has(alarm.alarm_id)) fetchExtras(alarm.alarm_id);
  if (alarm.alarm_id !== null) view.onChange(alarm);
}

async function fetchExtras(alarmId) {
  asked.add(alarmId);
  try {
    const full = await get(`alarms/${alarmId}`);
    const now = alarms.get(alarmId);
    if (now) alarms.set(alarmId, { ...now, ...Object.fromEntries(EXTRAS.map((x) => [x, full[x]])) });
    render();
  } catch (err) {
    view.onError(err);
  }
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

// --- rendering ---------------------------------------------------------------------------------
function badge(field, value) {
  return h("span", { class: `badge ${field}-${value}` }, term(field, value));
}

/** `3 分 12 秒` since `ms`. */
function elapsed(ms, now = Date.now()) {
  const s = Math.max(0, Math.floor((now - ms) / 1000));
  if (s < 60) return t("board.elapsedS", { s });
  if (s < 3600) return t("board.elapsedM", { m: Math.floor(s / 60), s: s % 60 });
  if (s < 86400) return t("board.elapsedH", { h: Math.floor(s / 3600), m: Math.floor((s % 3600) / 60) });
  return t("board.elapsedD", { d: Math.floor(s / 86400), h: Math.floor((s % 86400) / 3600) });
}

/** Each second: the elapsed times, and the end of a hold whose pointer has rested too long. */
function tick() {
  const now = Date.now();
  if (held && news.size > 0 && now - movedAt > HOLD_IDLE_MS) {
    held = false;
    render();
  }
  for (const cell of document.querySelectorAll("[data-testid='board-body'] [data-since]")) {
    cell.firstChild.textContent = elapsed(Number(cell.dataset.since), now);
  }
}

/** Why a quiet alarm is quiet, in words: its rule's parts (`suppressed.test`, `transient`, ...). */
function reason(a) {
  return ruleParts(a).map((p) => (knows("rule", p) ? term("rule", p) : p)).join("；");
}

/** The switch of an incident's row: how many detector alarms it has, shown or hidden below it. */
function incidentToggle(a) {
  const open = expanded.has(a.alarm_id);
  return h("button", { type: "button", class: "link incident-toggle", testid: "incident-toggle",
    "aria-expanded": String(open), "aria-keyshortcuts": open ? "ArrowLeft" : "ArrowRight",
    onclick: () => toggle(a.alarm_id, !open) },
  h("span", { "aria-hidden": "true" }, open ? "▾ " : "▸ "), t("board.children", { n: a.children.length }));
}

function toggle(alarmId, open) {
  if (open) expanded.add(alarmId);
  else expanded.delete(alarmId);
  render();
}

function row(a, parent = null) {
  const pending = a.alarm_id === null;
  const open = OPEN.includes(a.status);
  const quiet = a.response === "none";
  const ackable = view.canAct() && !pending && UNACKED.has(a.status);
  const raised = toMs(a.raised_at) ?? toMs(a.first_seen);
  const incident = a.children?.length > 0;
  const classes = ["alarm-row", `status-${a.status}`, isImmediateUnacked(a) && "immediate", pending && "pending",
    quiet && "suppressed", !filters.matches(f, a, Date.now()) && !parent && "stale", incident && "incident",
    parent && "child-row"];
  const unit = a.unit;
  const device = a.devices?.[0];
  const place = device?.location?.place ?? device?.location?.address;
  return h("tr", {
    class: classes.filter(Boolean).join(" "), testid: "alarm-row", "data-alarm-id": a.alarm_id ?? "", tabindex: "0",
    "data-status": a.status, "data-response": a.response, "data-type": a.type, "data-level": a.escalation_level ?? 0,
    "data-parent-id": parent?.alarm_id, "aria-expanded": incident ? String(expanded.has(a.alarm_id)) : undefined,
    "aria-label": [parent && t("board.childOf", { type: term("type", parent.type) }), term("type", a.type),
      term("status", a.status), unit?.name ?? a.unit_id ?? ""].filter(Boolean).join(" · "),
    onclick: (e) => { if (!pending && !e.target.closest("button")) view.onOpen(a.alarm_id); },
  },
  h("td", { class: "elapsed", "data-label": t("board.elapsed"), title: `${t("board.raisedAt")} ${fmtTime(raised)}`,
    "data-since": open && raised !== null ? raised : undefined },
  h("span", {}, open && raised !== null ? elapsed(raised) : fmtShort(a.last_seen)),
  h("span", { class: "muted sub" }, fmtShort(raised))),
  h("td", { class: "level", "data-label": t("board.level"), testid: "alarm-level" },
    parent ? h("span", { class: "muted" }, t("board.inIncident"))
      : quiet || pending ? h("span", { class: "muted" }, t("board.noEscalation"))
      : h("span", { class: `badge level-${a.escalation_level ?? 0}` }, term("escalation", a.escalation_level ?? 0))),
  h("td", { class: "what", "data-label": t("board.alarm") },
    h("strong", { class: "type" }, term("type", a.type)), " ", badge("severity", a.severity), " ", badge("response", a.response),
    quiet && h("div", { class: "reason", testid: "suppressed-reason" }, t("board.suppressed", { why: reason(a) || "—" })),
    incident && h("div", {}, incidentToggle(a)),
    a.parent_id && !parent && h("div", { class: "muted", testid: "child-of" }, t("board.partOf", { id: a.parent_id }))),
  h("td", { testid: "alarm-status", "data-label": t("board.status") }, term("status", a.status)),
  h("td", { class: "where", "data-label": t("board.where"), title: a.region || undefined },
    h("div", { class: "board-unit" }, unit?.name ?? a.unit_id ?? t("board.noUnit")),
    h("div", { class: "muted" }, [place ?? unit?.address, unit?.industry && term("industry", unit.industry),
      (a.region || "").split("/").at(-1)].filter(Boolean).join(" · "))),
  h("td", { class: "ids", "data-label": t("board.devices"), title: a.device_ids.join(", ") }, a.device_ids[0] ?? "—",
    a.device_ids.length > 1 && h("span", { class: "muted" }, ` +${a.device_ids.length - 1}`)),
  h("td", { class: "num", "data-label": t("board.count") }, String(a.count)),
  h("td", { class: "actions" },
    ackable && h("button", { type: "button", class: "primary", testid: "ack-button", "data-alarm-id": a.alarm_id,
      "aria-keyshortcuts": "A", onclick: (e) => ackFromBoard(e.currentTarget, a.alarm_id) }, t("alarm.ack")),
    !pending && h("button", { type: "button", testid: "detail-button", "data-alarm-id": a.alarm_id,
      "aria-keyshortcuts": "Enter", onclick: () => view.onOpen(a.alarm_id) }, t("board.detail"))));
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

/** Keys on a focused row: J/K or arrows move, → / ← open and close an incident's children (← on a
 *  child goes back to its incident), A acknowledges, Enter or D opens the detail. */
function rowKey(e) {
  const tr = e.target.closest?.("tr.alarm-row");
  if (!tr || e.target !== tr || e.altKey || e.ctrlKey || e.metaKey) return;
  const key = e.key.toLowerCase();
  if (key === "j" || key === "arrowdown" || key === "k" || key === "arrowup") {
    const next = key === "j" || key === "arrowdown" ? tr.nextElementSibling : tr.previousElementSibling;
    if (next?.matches("tr.alarm-row")) next.focus();
  } else if ((key === "arrowright" || key === "arrowleft") && tr.dataset.parentId) {
    if (key === "arrowleft") document.querySelector(`tr.alarm-row[data-alarm-id="${tr.dataset.parentId}"]`)?.focus();
  } else if ((key === "arrowright" || key === "arrowleft") && tr.classList.contains("incident")) {
    toggle(tr.dataset.alarmId, key === "arrowright");
  } else if (key === "a") {
    const ack = tr.querySelector("[data-testid='ack-button']:not(:disabled)");
    if (ack) ack.click();
    else tr.classList.add("nothing-to-ack");
  } else if ((key === "enter" || key === "d") && tr.dataset.alarmId) {
    view.onOpen(tr.dataset.alarmId);
  } else {
    return;
  }
  e.preventDefault();
}

function announce(a) {
  byId("board-announce").textContent = t("board.newAlarm", {
    type: term("type", a.type), response: term("response", a.response), where: a.unit?.name ?? a.unit_id ?? a.device_ids[0] ?? "",
  });
}

/** The keys to show, in order: the urgency order, or the held order plus nothing new while held. */
function order(rows) {
  if (!held || shown.length === 0) {
    news.clear();
    return rows.map(keyOf);
  }
  const onScreen = new Set(shown);
  for (const a of rows) if (!onScreen.has(keyOf(a))) news.add(keyOf(a));
  return shown.filter((k) => alarms.has(k));
}

/** Redraw the board and the 秒响应 banner, keeping keyboard focus on the same row or control. */
export function render(fresh = false) {
  const active = document.activeElement?.closest?.("[data-testid='alarm-row']");
  const focus = active && [document.activeElement.dataset.testid, active.dataset.alarmId];
  const now = Date.now();
  const matching = topLevel([...alarms.values()].filter((a) => filters.matches(f, a, now)));
  for (const lane of LANES) {
    const inLane = matching.filter((a) => laneOf(a) === lane);
    const button = byId(`lane-${lane}`);
    button.setAttribute("aria-pressed", String(f.lane === lane));
    fill(button, h("span", {}, t(`board.lane.${lane}`)), " ",
      h("span", { class: `count ${inLane.some((a) => UNACKED.has(a.status)) ? "hot" : ""}`, testid: `lane-${lane}-count` },
        String(inLane.length)));
  }
  const rows = matching.filter((a) => laneOf(a) === f.lane).sort(byUrgency);
  shown = order(rows);
  const set = Object.keys(filters.DEFAULTS).filter((k) => k !== "lane" && f[k] !== filters.DEFAULTS[k]).length;
  const withChildren = (a) => [row(a), ...(expanded.has(a.alarm_id)
    ? childrenOf(a, alarms.values(), (c) => filters.matches({ ...f, type: "", response: "" }, c, now)).map((c) => row(c, a))
    : [])];
  fill(byId("board-body"), shown.length ? shown.flatMap((k) => withChildren(alarms.get(k)))
    : h("tr", {}, h("td", { colspan: 8, class: "empty", testid: "board-empty" }, t(`board.empty.${f.lane}`),
      set > 0 && [" ", h("button", { type: "button", onclick: () => setFilters({ ...filters.DEFAULTS, lane: f.lane }) },
        t("board.clearN", { n: set }))])));
  if (focus) {
    const tr = document.querySelector(`[data-testid="alarm-row"][data-alarm-id="${focus[1]}"]`);
    (focus[0] === "alarm-row" ? tr : tr?.querySelector(`[data-testid="${focus[0]}"]`))?.focus();
  }
  const newsButton = byId("board-news");
  newsButton.hidden = news.size === 0;
  newsButton.textContent = t("board.news", { n: news.size });
  byId("board-filter-count").textContent = set ? t("board.filtersSet", { n: set }) : "";
  renderBanner(fresh);
}

/** The 秒响应 banner: how many wait; `fresh` says a new one arrived (the sound starts again). */
function renderBanner(fresh) {
  const pending = [...alarms.values()].filter((a) => isImmediateUnacked(a) && !a.parent_id).length;
  byId("immediate-banner").hidden = pending === 0;
  byId("banner-text").textContent = t("banner.immediate", { n: pending });
  renderSoundHint();
  sound.alert(pending, fresh);
}

/** The banner's line saying the sound is off (or blocked by the browser) and its button to turn it on. */
export function renderSoundHint() {
  const { enabled, blocked } = sound.state();
  byId("banner-sound").hidden = enabled && !blocked;
  byId("banner-sound-text").textContent = t(enabled ? "banner.soundBlocked" : "banner.soundOff");
}
