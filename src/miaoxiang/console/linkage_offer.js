// 联动 (CONTRACT §10): a confirm-mode linkage command the service offered for this alarm, which the
// operator sends with one button (POST /api/v1/alarms/{id}/linkage). Only the commands the linkage
// offers appear (never an opposite one); the alarm's timeline says what was offered and sent.

import { post } from "./api.js";
import { h } from "./dom.js";
import { lang } from "./i18n.js";

const COMMANDS = {
  valve_close: ["关闭燃气阀门", "Close the gas valve"],
  breaker_trip: ["断开断路器", "Trip the breaker"],
  port_cutoff: ["切断充电端口", "Cut off the charging port"],
};
const OFFERED = ["联动待确认：按下即向设备下发", "Linkage awaiting confirmation: pressing sends it to the device"];
const say = (pair) => pair[lang() === "en" ? 1 : 0];

/** The commands offered for the alarm and not sent yet, from its timeline. */
export function offeredCommands(timeline) {
  const entries = timeline ?? [];
  const sent = new Set(entries.filter((e) => e.action === "linkage_sent").map((e) => e.detail?.cmd));
  const offered = entries.filter((e) => e.action === "linkage_offered").map((e) => e.detail?.cmd);
  return [...new Set(offered)].filter((cmd) => cmd in COMMANDS && !sent.has(cmd));
}

/** One button per offered command (operators; open alarms), or null. */
export function linkageOffers(a, { onDone, onError }) {
  if (a.status === "resolved" || a.status === "cleared_ack") return null;
  const cmds = offeredCommands(a.timeline);
  if (cmds.length === 0) return null;
  return h("div", { class: "linkage-offers", testid: "linkage-offers" },
    h("p", { class: "muted" }, say(OFFERED)),
    cmds.map((cmd) => h("button", { type: "button", class: "danger", testid: `linkage-${cmd}`,
      onclick: async (e) => {
        e.currentTarget.disabled = true;
        try {
          await post(`alarms/${a.alarm_id}/linkage`, { cmd });
          onDone();
        } catch (err) {
          onError(err);
        }
      } }, say(COMMANDS[cmd]))));
}
