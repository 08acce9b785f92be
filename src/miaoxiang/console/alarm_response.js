// The response loop of one alarm (CONTRACT §9) in the detail pane: response times, who was told
// (notifications), what responders did (收到 / 到场 / 反馈 with photo), and the dispatch button
// with its confirmation dialog.

import { dataUrl, post } from "./api.js";
import { fmtShort, fmtTime, fmtValue, h } from "./dom.js";
import { t, term } from "./i18n.js";

const TIMES = ["notified_s", "acked_s", "arrived_s", "resolved_s"];
export const RESPONDER_ACTIONS = ["responder_acked", "arrived", "feedback"];
const photos = new Map(); // photo_url -> data: URL (the console's CSP allows data: images, not blob:)

/** `42 秒` / `6 分 30 秒` from seconds. */
export function seconds(s) {
  if (s === null || s === undefined) return "—";
  if (s < 60) return t("time.s", { s: fmtValue(Math.round(s * 10) / 10) });
  const m = Math.floor(s / 60);
  return m < 60 ? t("time.ms", { m, s: Math.round(s % 60) }) : t("time.hm", { h: Math.floor(m / 60), m: m % 60 });
}

/** The four response times as tiles: notified, acknowledged, arrived, resolved (seconds from the raise). */
export function responseTimes(a) {
  const times = a.response_times ?? {};
  return h("div", { class: "rt", testid: "response-times" },
    TIMES.map((name) => h("div", { class: `rt-tile${times[name] === null || times[name] === undefined ? " rt-none" : ""}`,
      testid: `rt-${name}`, "data-seconds": times[name] ?? "" },
    h("span", { class: "rt-n" }, seconds(times[name])), h("span", { class: "rt-label" }, t(`rt.${name}`)))));
}

/** Who an actor string names: `responder:<id>` (their name from the notifications when known),
 *  `group:<channel>:<typed name>`, `system`, or an operator's token name. */
export function actorText(actor, people) {
  if (!actor) return "—";
  if (actor === "system") return t("actor.system");
  if (actor.startsWith("responder:")) {
    const id = actor.slice("responder:".length);
    const p = people.get(id);
    return p ? `${p.name ?? id}（${term("resprole", p.role)}）` : id;
  }
  if (actor.startsWith("group:")) {
    const [, channel, ...name] = actor.split(":");
    return t("actor.group", { name: name.join(":") || "—", channel });
  }
  return t("actor.operator", { name: actor });
}

/** Responders named in the notifications, by id. */
export function peopleOf(notifications) {
  return new Map(notifications.filter((n) => n.responder).map((n) => [n.responder.responder_id, n.responder]));
}

function notificationRow(n) {
  const when = n.sent_at ?? n.done_at ?? n.created_at;
  const who = n.responder ? (n.responder.name || n.responder.responder_id) : t("notif.group", { channel: n.group_channel });
  const phone = n.responder?.phone;
  return h("li", { class: `notif state-${n.state}`, testid: "notification", "data-state": n.state,
    "data-responder": n.responder?.responder_id ?? "" },
  h("div", { class: "notif-head" },
    h("strong", {}, who),
    n.responder && h("span", { class: "muted" }, term("resprole", n.responder.role)),
    h("span", { class: `badge nstate-${n.state}`, testid: "notification-state" }, term("nstate", n.state))),
  h("div", { class: "notif-meta" },
    h("time", { title: fmtTime(when) }, fmtShort(when)),
    h("span", {}, `${term("nreason", n.reason)} · ${t("notif.level", { level: term("escalation", n.level) })}`),
    h("span", {}, `${n.channel ?? "—"}${n.channel_type ? `（${term("chtype", n.channel_type)}）` : ""}`),
    n.attempts > 1 && h("span", {}, t("notif.attempts", { n: n.attempts })),
    n.error_class && h("span", { class: "error-class", testid: "notification-error" },
      term("errclass", n.error_class.replace(/\s+/g, "_")), n.provider_code ? ` (${n.provider_code})` : ""),
    phone && h("a", { href: `tel:${phone.replace(/[^\d+]/g, "")}`, class: "tel" }, phone)));
}

/** Every notification of the alarm, newest last: who, role, channel, level, state, time, error class. */
export function notificationList(notifications) {
  if (notifications === null) return h("p", { class: "muted" }, t("app.loading"));
  if (notifications.length === 0) return h("p", { class: "muted", testid: "notifications-empty" }, t("notif.none"));
  return h("ol", { class: "notifs", testid: "notifications" }, notifications.map(notificationRow));
}

/** The photo of a feedback, fetched with the token and shown as a thumbnail linking to itself. */
function photo(url, onLoaded) {
  const cached = photos.get(url);
  if (cached) {
    return h("a", { href: cached, target: "_blank", rel: "noopener", class: "photo", testid: "feedback-photo" },
      h("img", { src: cached, alt: t("resp.photo"), loading: "lazy" }));
  }
  dataUrl(url).then((data) => { photos.set(url, data); onLoaded(); }).catch(() => {});
  return h("span", { class: "photo muted" }, t("app.loading"));
}

function actionRow(e, people, onPhoto) {
  const d = e.detail ?? {};
  const where = typeof d.lat === "number" && typeof d.lon === "number"
    ? h("span", { class: "pair", testid: "arrive-position" }, t("resp.position", { lat: d.lat.toFixed(5), lon: d.lon.toFixed(5) }))
    : e.action === "arrived" && h("span", { class: "pair muted" }, t("resp.noPosition"));
  return h("li", { class: `resp action-${e.action}`, testid: "responder-action", "data-action": e.action },
    h("div", { class: "notif-head" },
      h("strong", {}, term("action", e.action)),
      h("span", {}, actorText(e.actor, people)),
      h("time", { class: "muted", title: fmtTime(e.at) }, fmtShort(e.at))),
    where,
    d.proposed_classification && h("span", { class: "pair" }, t("resp.proposes", { c: term("classification", d.proposed_classification) })),
    d.note && h("q", { class: "note" }, d.note),
    d.photo_url && photo(d.photo_url, onPhoto));
}

/** What responders did: acknowledged, arrived (position), feedback (classification, note, photo). */
export function responderActions(timeline, people, onPhoto) {
  const done = (timeline ?? []).filter((e) => RESPONDER_ACTIONS.includes(e.action));
  if (done.length === 0) return h("p", { class: "muted", testid: "responder-actions-empty" }, t("resp.none"));
  return h("ol", { class: "notifs", testid: "responder-actions" }, done.map((e) => actionRow(e, people, onPhoto)));
}

/** The dispatch button (operators): a confirmation dialog, then the call; disabled with the reason
 *  when the alarm is resolved or already dispatched. */
export function dispatchControl(a, { onDone, onError }) {
  const reason = a.status === "resolved" ? t("dispatch.resolved")
    : a.dispatched_at ? t("dispatch.already", { at: fmtTime(a.dispatched_at) }) : null;
  const button = h("button", { type: "button", class: "danger big", testid: "dispatch-button", disabled: reason !== null,
    "aria-describedby": reason ? "dispatch-why" : undefined, onclick: () => dialog.showModal() }, t("dispatch.button"));
  const note = h("textarea", { id: "dispatch-note", rows: 2, maxlength: 500, testid: "dispatch-note" });
  const confirm = h("button", { type: "submit", class: "danger", testid: "dispatch-confirm" }, t("dispatch.confirm"));
  const dialog = h("dialog", { class: "confirm", testid: "dispatch-dialog", "aria-labelledby": "dispatch-title",
    onkeydown: (e) => { if (e.key === "Escape") e.stopPropagation(); } }, // Escape closes the dialog, not the detail
    h("form", { method: "dialog", onsubmit: async (e) => {
      e.preventDefault();
      confirm.disabled = true;
      try {
        const alarm = await post(`alarms/${a.alarm_id}/dispatch`, { note: note.value.trim() || null });
        dialog.close();
        onDone(alarm);
      } catch (err) {
        confirm.disabled = false;
        dialog.close();
        onError(err);
      }
    } },
    h("h3", { id: "dispatch-title" }, t("dispatch.title", { id: a.alarm_id })),
    h("p", {}, t("dispatch.explain")),
    h("label", { for: "dispatch-note" }, t("dispatch.note")), note,
    h("div", { class: "dialog-buttons" },
      h("button", { type: "button", testid: "dispatch-cancel", onclick: () => dialog.close() }, t("dispatch.cancel")),
      confirm)));
  return h("div", { class: "dispatch" }, button,
    reason && h("p", { id: "dispatch-why", class: "muted", testid: "dispatch-why" }, reason), dialog);
}
