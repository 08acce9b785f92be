// A unit's contact (CONTRACT §9: `{name, role, phone}`, phones only for operators and admins) as a
// large tap-to-call `tel:` link with the role in words, shared by the alarm and unit details.

import { h } from "./dom.js";
import { t, term } from "./i18n.js";

/** One `<li>`: the name and role, and the number as a `tel:` link when the answer carries one;
 *  `phonesHidden`: the token's role gets no numbers (a viewer), which is said. */
export function contactItem(c, phonesHidden = false) {
  if (typeof c !== "object" || c === null) return h("li", {}, String(c));
  const phone = c.phone ?? c.mobile ?? c.tel;
  const role = c.role ? term("contactrole", c.role) : null;
  const label = [c.name, role !== c.name && role].filter(Boolean).join(" · ");
  if (!phone) return h("li", {}, label || "—", phonesHidden && h("span", { class: "muted" }, ` ${t("alarm.phoneHidden")}`));
  return h("li", {}, h("a", { class: "tel big", href: `tel:${String(phone).replace(/[^\d+]/g, "")}`, testid: "contact-tel" },
    h("span", { class: "tel-icon", "aria-hidden": "true" }, "☎"), " ", h("span", {}, label || phone), " ",
    h("span", { class: "tel-number" }, phone)));
}

/** The contacts as a list, or a note that there are none. */
export function contactList(contacts, phonesHidden = false) {
  const items = (contacts ?? []).map((c) => contactItem(c, phonesHidden));
  return items.length ? h("ul", { class: "contacts", testid: "unit-contacts" }, items)
    : h("p", { class: "muted" }, t("alarm.noContacts"));
}
