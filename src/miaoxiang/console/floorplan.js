// Floor plans (平面图, issue 19): in a unit's detail, upload a PNG or JPEG plan per floor and drag
// the unit's devices onto it (positions are fractions 0..1 of the image; drag a device off the
// plan to take it off); in an alarm's detail, the plan of its device's floor with the device
// blinking. Images are fetched with the token and shown as data: URLs (the page's CSP allows them).

import { ApiError, apiUrl, savedToken } from "./api.js";
import { fill, h } from "./dom.js";
import { t, term } from "./i18n.js";

const images = new Map(); // `${unit}|${floor}|${sha256}` -> data: URL
let unitBox = null; // {unitId, el, plans, floor, devices, canAct, onError}
let alarmBox = null; // {key, el}

async function send(method, path, { json, blob, accept = "json" } = {}) {
  const headers = { Authorization: `Bearer ${savedToken()}` };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (blob !== undefined) {
    headers["Content-Type"] = blob.type || "application/octet-stream";
    body = blob;
  }
  const res = await fetch(apiUrl(path), { method, headers, body });
  if (!res.ok) {
    const data = res.headers.get("content-type")?.includes("json") ? await res.json() : null;
    throw new ApiError(res.status, data?.detail ?? res.statusText);
  }
  if (res.status === 204) return null;
  return accept === "blob" ? res.blob() : res.json();
}

/** A floor as people say it: `3` as 3 层 / Floor 3, anything else (`3F`, `B1`, `夹层`) as written. */
const floorName = (label) => (/^\d+$/.test(label) ? t("plan.floor", { floor: label }) : label);
const plansPath = (unitId) => `units/${encodeURIComponent(unitId)}/floorplans`;
const planPath = (unitId, floor) => `${plansPath(unitId)}/${encodeURIComponent(floor)}`;

async function imageOf(plan) {
  const key = `${plan.unit_id}|${plan.floor}|${plan.sha256}`;
  if (!images.has(key)) {
    const blob = await send("GET", `${planPath(plan.unit_id, plan.floor)}/image`, { accept: "blob" });
    images.set(key, await new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(blob);
    }));
  }
  return images.get(key);
}

/** A plan image (`src`, a data: URL) with device markers; `mark(position)` gives a marker's class and label. */
function stage(plan, src, mark) {
  const el = h("div", { class: "plan-stage", testid: "plan-stage", "data-floor": plan.floor },
    h("img", { src, alt: t("plan.alt", { floor: floorName(plan.label) }), width: plan.width, height: plan.height, draggable: "false" }));
  for (const p of plan.positions) {
    const { cls, label } = mark(p);
    const dot = h("button", { type: "button", class: `plan-dot ${cls}`, testid: "plan-device", "data-device-id": p.device_id,
      title: label, "aria-label": label }, h("span", { class: "plan-dot-label" }, p.device_id.slice(-4)));
    dot.style.left = `${p.x * 100}%`; // CSSOM, which the CSP allows (no inline style attributes)
    dot.style.top = `${p.y * 100}%`;
    el.append(dot);
  }
  return el;
}

// --- unit detail: upload and place ----------------------------------------------------------

/** The floor-plan section of a unit's detail (one element, kept across redraws of the pane). */
export function unitPlans(unitId, devices, { canAct, onError }) {
  if (unitBox?.unitId !== unitId || unitBox.devices !== devices) { // a unit (re)opened: read its plans again
    unitBox = { unitId, el: h("section", { class: "plans", testid: "floorplans" }), plans: null, floor: null };
    loadUnitPlans().catch(onError);
  }
  Object.assign(unitBox, { devices, canAct, onError });
  drawUnitPlans().catch(onError);
  return unitBox.el;
}

async function loadUnitPlans(floor) {
  const box = unitBox;
  const page = await send("GET", plansPath(box.unitId));
  box.plans = page.items;
  box.floor = floor ?? (box.plans.some((p) => p.floor === box.floor) ? box.floor : box.plans[0]?.floor ?? null);
  if (box === unitBox) await drawUnitPlans();
}

async function drawUnitPlans() {
  const box = unitBox;
  if (box.plans === null) return fill(box.el, h("h3", {}, t("plan.heading")), h("p", { class: "muted" }, t("app.loading")));
  const plan = box.plans.find((p) => p.floor === box.floor) ?? null;
  const names = new Map(box.devices.map((d) => [d.device_id, d]));
  const src = plan ? await imageOf(plan) : null;
  const canvas = plan ? stage(plan, src, (p) => ({ cls: "placed", label: deviceLabel(names.get(p.device_id), p.device_id) })) : null;
  if (box !== unitBox) return;
  const placedIds = new Set(box.plans.flatMap((p) => p.positions.map((x) => x.device_id)));
  const loose = box.devices.filter((d) => !placedIds.has(d.device_id));
  fill(box.el,
    h("h3", {}, t("plan.heading")),
    box.plans.length === 0 ? h("p", { class: "muted", testid: "plans-empty" }, t("plan.none"))
      : h("div", { class: "plan-floors", role: "group", "aria-label": t("plan.floors") }, box.plans.map((p) =>
        h("button", { type: "button", class: "plan-floor", testid: "plan-floor", "data-floor": p.floor,
          "aria-pressed": String(p.floor === box.floor),
          onclick: () => { box.floor = p.floor; drawUnitPlans().catch(box.onError); } }, floorName(p.label)))),
    plan && box.canAct() && h("p", { class: "muted small" }, t("plan.dragHint")),
    plan && box.canAct() && loose.length > 0 && h("ul", { class: "chips plan-palette", testid: "plan-palette" },
      loose.map((d) => h("li", {}, h("button", { type: "button", class: "chip plan-chip", testid: "plan-chip",
        "data-device-id": d.device_id }, deviceLabel(d, d.device_id))))),
    canvas,
    box.canAct() && uploadForm(box));
  if (canvas && box.canAct()) wireDragging(box, plan, canvas);
}

function deviceLabel(d, id) {
  const place = d?.location && typeof d.location === "object" ? [d.location.room, d.location.text].filter(Boolean).join(" ") : d?.location;
  return [d ? term("kind", d.kind) : null, id, place || null].filter(Boolean).join(" · ");
}

function uploadForm(box) {
  const floor = h("input", { id: "plan-floor-input", testid: "plan-floor-input", required: true, size: 6, maxlength: 16,
    placeholder: t("plan.floorHint") });
  const file = h("input", { id: "plan-file", type: "file", testid: "plan-file", accept: "image/png,image/jpeg", required: true });
  return h("form", { class: "toolbar plan-upload", testid: "plan-upload", onsubmit: async (e) => {
    e.preventDefault();
    const button = e.submitter;
    button.disabled = true;
    try {
      const plan = await send("PUT", planPath(box.unitId, floor.value.trim()), { blob: file.files[0] });
      await loadUnitPlans(plan.floor);
    } catch (err) {
      box.onError(err);
    } finally {
      button.disabled = false;
    }
  } },
  h("label", { for: "plan-floor-input" }, t("plan.floorLabel")), floor,
  h("label", { for: "plan-file" }, t("plan.file")), file,
  h("button", { type: "submit", testid: "plan-upload-submit" }, t("plan.upload")));
}

/** Pointer dragging (mouse, pen and touch alike): a chip or a marker dropped on the plan is placed
 * there; a marker dropped outside the plan is taken off it. */
function wireDragging(box, plan, canvas) {
  const sources = [...box.el.querySelectorAll(".plan-chip, .plan-dot")];
  for (const source of sources) {
    source.addEventListener("pointerdown", (down) => {
      if (down.button !== 0) return;
      down.preventDefault();
      source.setPointerCapture(down.pointerId);
      const ghost = h("span", { class: "plan-ghost", "aria-hidden": "true" });
      document.body.append(ghost);
      const follow = (e) => { ghost.style.left = `${e.clientX}px`; ghost.style.top = `${e.clientY}px`; };
      follow(down);
      source.addEventListener("pointermove", follow);
      source.addEventListener("pointerup", async (up) => {
        source.removeEventListener("pointermove", follow);
        ghost.remove();
        const r = canvas.querySelector("img").getBoundingClientRect();
        const x = (up.clientX - r.left) / r.width;
        const y = (up.clientY - r.top) / r.height;
        const inside = x >= 0 && x <= 1 && y >= 0 && y <= 1;
        const id = source.dataset.deviceId;
        const path = `${planPath(box.unitId, plan.floor)}/devices/${encodeURIComponent(id)}`;
        try {
          if (inside) await send("PUT", path, { json: { x: round(x), y: round(y) } });
          else if (source.classList.contains("plan-dot")) await send("DELETE", path);
          else return;
          await loadUnitPlans(plan.floor);
        } catch (err) {
          box.onError(err);
        }
      }, { once: true });
    });
  }
}

const round = (v) => Math.round(v * 10000) / 10000;

// --- alarm detail: where on the floor -------------------------------------------------------

/** The plan of the alarm's device floor with its devices blinking (one element per alarm, kept
 * across redraws); null when the alarm has no unit. */
export function alarmPlan(alarm, ids, onError) {
  const unitId = alarm.unit?.unit_id ?? alarm.unit_id;
  if (!unitId) return null;
  const key = `${alarm.alarm_id}|${ids.join(",")}`;
  if (alarmBox?.key !== key) {
    alarmBox = { key, ids, plan: null, el: h("section", { class: "plans alarm-plan", testid: "alarm-plan", hidden: true }) };
    loadAlarmPlan(alarmBox, unitId, alarm, ids).catch(onError);
  } else if (alarmBox.plan) {
    paintAlarmPlan(alarmBox); // a redraw (a language switch, too)
  }
  return alarmBox.el;
}

async function loadAlarmPlan(box, unitId, alarm, ids) {
  const plans = (await send("GET", plansPath(unitId))).items;
  let plan = plans.find((p) => p.positions.some((x) => ids.includes(x.device_id)));
  if (!plan) {
    const floors = (alarm.devices ?? []).filter((d) => ids.includes(d.device_id)).map((d) => d.location?.floor)
      .filter((f) => f !== undefined && f !== null && f !== "");
    for (const floor of floors) {
      plan = (await send("GET", `${plansPath(unitId)}?floor=${encodeURIComponent(floor)}`)).items[0];
      if (plan) break;
    }
  }
  if (!plan) return;
  box.src = await imageOf(plan);
  box.plan = plan;
  paintAlarmPlan(box);
}

function paintAlarmPlan(box) {
  const { plan, ids } = box;
  const canvas = stage(plan, box.src, (p) => (ids.includes(p.device_id)
    ? { cls: "alarming", label: t("plan.alarming", { id: p.device_id }) }
    : { cls: "quiet", label: p.device_id }));
  const placed = plan.positions.some((p) => ids.includes(p.device_id));
  box.el.hidden = false;
  fill(box.el,
    h("h3", {}, t("plan.where", { floor: floorName(plan.label) })),
    placed ? null : h("p", { class: "muted", testid: "plan-unplaced" }, t("plan.notPlaced")),
    canvas);
}
