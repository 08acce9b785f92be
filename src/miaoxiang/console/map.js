// The map (地图, issue 19): every unit with coordinates as a dot in its four-colour risk, blinking
// while it has an active fire-class alarm; a click lists its open alarms and opens one. Leaflet
// (vendor/leaflet, loaded the first time the map is shown) draws it; tiles come only from the
// source the service is configured with (GET console/map), else a plain background with no tile
// request at all. Coordinates are stored in WGS-84; a GCJ-02 tile source gets shifted points.

import { get, getAll } from "./api.js";
import { fill, fmtShort, h } from "./dom.js";
import { wgs84ToGcj02 } from "./gcj02.js";
import { t, term } from "./i18n.js";
import { riskBadge } from "./units.js";

const COLOURS = ["red", "orange", "yellow", "green", "none"];
const OPEN = "active_unack,active_ack,cleared_unack";
const ACTIVE = ["active_unack", "active_ack"];
const MAX_UNITS = 20000;
const REFRESH_MS = 2000; // coalesce a burst of stream changes into one reload
const START = { centre: [28.0, 115.9], zoom: 7 }; // shown until the units are known

let L = null; // the Leaflet module
let map = null;
let layer = null;
let state = { units: [], alarms: [], fireTypes: new Set(), tiles: null, truncated: false };
let picked = null; // unit_id whose alarms the pane lists
let view = { onAlarm: () => {}, onError: () => {} };
let refreshTimer = null;
let loaded = false;
let fitted = false; // the view is fitted to the units once; the operator's pan and zoom stay

const byId = (id) => document.querySelector(`[data-testid="${id}"]`);
const colourOf = (u) => (COLOURS.includes(u.risk_colour) ? u.risk_colour : "none");
const hasPoint = (u) => typeof u.location?.lat === "number" && typeof u.location?.lon === "number";

export function initMap(options) {
  view = { ...view, ...options };
}

/** Show the map (the first call loads Leaflet, the settings and the data). */
export async function openMap() {
  if (!L) L = await import("./vendor/leaflet/leaflet-src.esm.js");
  if (!loaded) {
    loaded = true;
    const [settings, meta] = await Promise.all([get("console/map"), get("meta")]);
    state.tiles = settings.tiles;
    state.fireTypes = new Set(meta.alarm_types.filter((a) => a.fire_class).map((a) => a.name));
    await load();
    return;
  }
  map?.invalidateSize();
}

async function load() {
  const [units, alarms] = await Promise.all([
    getAll("units", {}, MAX_UNITS),
    getAll("alarms", { status: OPEN }, 5000),
  ]);
  state = { ...state, units: units.items, alarms: alarms.items, truncated: units.truncated };
  draw();
}

/** A stream change: reload the alarms soon if the map has been shown. */
export function alarmChanged() {
  if (!loaded) return;
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => load().catch(view.onError), REFRESH_MS);
}

export function resetMap() {
  clearTimeout(refreshTimer);
  map?.remove();
  map = null;
  layer = null;
  loaded = false;
  fitted = false;
  picked = null;
  state = { units: [], alarms: [], fireTypes: new Set(), tiles: null, truncated: false };
}

function createMap() {
  const el = byId("map");
  map = L.map(el, { center: START.centre, zoom: START.zoom, attributionControl: true, zoomControl: true });
  map.attributionControl.setPrefix(false);
  const tiles = state.tiles;
  if (tiles) {
    L.tileLayer(tiles.url, { subdomains: tiles.subdomains, attribution: tiles.attribution, maxZoom: 18 }).addTo(map);
  } else {
    el.classList.add("no-tiles");
    map.attributionControl.addAttribution(t("map.noTiles"));
  }
  el.dataset.tiles = tiles ? tiles.coords : "none";
  layer = L.layerGroup().addTo(map);
}

/** Where to draw a stored (WGS-84) point on these tiles. */
function shown(u) {
  const { lat, lon } = u.location;
  return state.tiles?.coords === "gcj02" ? wgs84ToGcj02(lat, lon) : [lat, lon];
}

function alarmsOf(unitId) {
  return state.alarms.filter((a) => a.unit_id === unitId);
}

function onFire(unitId) {
  return alarmsOf(unitId).some((a) => ACTIVE.includes(a.status) && state.fireTypes.has(a.type) && a.response !== "none");
}

function draw() {
  if (!map) createMap();
  layer.clearLayers();
  const placed = state.units.filter(hasPoint);
  for (const u of placed) {
    const fire = onFire(u.unit_id);
    const dot = L.circleMarker(shown(u), {
      radius: fire ? 11 : 8, weight: 2, fillOpacity: 0.9,
      className: `unit-dot risk-fill-${colourOf(u)}${fire ? " on-fire" : ""}`,
    });
    dot.bindTooltip(`${u.name}${fire ? ` · ${t("map.fire")}` : ""}`);
    dot.on("click", () => pick(u.unit_id));
    dot.on("add", () => {
      const path = dot.getElement();
      path.dataset.unitId = u.unit_id;
      path.dataset.colour = colourOf(u);
      path.dataset.testid = "map-unit";
      path.setAttribute("role", "button");
      path.setAttribute("tabindex", "0"); // keyboard: Tab to a unit, Enter or Space opens it
      path.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pick(u.unit_id); }
      });
      path.setAttribute("aria-label", `${u.name} ${term("risk", colourOf(u))}${fire ? ` ${t("map.fire")}` : ""}`);
    });
    layer.addLayer(dot);
  }
  if (placed.length > 0 && !fitted) {
    fitted = true;
    map.fitBounds(L.latLngBounds(placed.map(shown)).pad(0.15), { maxZoom: 15 });
  }
  render();
}

function pick(unitId) {
  picked = unitId;
  render();
  const pane = byId("map-pane");
  pane.querySelector("h2")?.focus();
  if (matchMedia("(max-width: 760px)").matches) pane.scrollIntoView({ block: "start" }); // below the map on a phone
}

function legend() {
  return h("ul", { class: "map-legend", testid: "map-legend" },
    COLOURS.map((c) => h("li", {}, h("span", { class: `legend-dot risk-fill-${c}`, "aria-hidden": "true" }), term("risk", c))),
    h("li", {}, h("span", { class: "legend-dot on-fire", "aria-hidden": "true" }), t("map.fire")));
}

function unitPane() {
  const u = state.units.find((x) => x.unit_id === picked);
  if (!u) return null;
  const open = alarmsOf(u.unit_id);
  return [
    h("div", { class: "pane-head" },
      h("h2", { tabindex: "-1" }, u.name, " ", riskBadge(u.risk_colour)),
      h("button", { type: "button", class: "icon", "aria-label": t("app.close"), testid: "map-pane-close",
        onclick: () => { picked = null; render(); } }, "×")),
    h("p", {}, u.address || "—"),
    h("p", { class: "muted small" }, `${u.location.lat.toFixed(5)}, ${u.location.lon.toFixed(5)} (WGS-84)`),
    h("h3", {}, t("map.openAlarms", { n: open.length })),
    open.length === 0 ? h("p", { class: "muted" }, t("board.empty"))
      : h("ul", { class: "plain map-alarms", testid: "map-alarms" }, open.map((a) => h("li", {},
        h("button", { type: "button", class: `map-alarm status-${a.status}`, testid: "map-alarm", "data-alarm-id": a.alarm_id,
          onclick: () => view.onAlarm(a.alarm_id) },
        h("strong", {}, term("type", a.type)), " ",
        h("span", { class: `badge response-${a.response}` }, term("response", a.response)), " ",
        h("span", { class: "badge" }, term("status", a.status)), " ",
        h("span", { class: "muted" }, fmtShort(a.raised_at ?? a.first_seen)))))),
  ];
}

/** Redraw the toolbar and the pane (after a language switch, too). */
export function render() {
  if (!loaded) return;
  const placed = state.units.filter(hasPoint).length;
  const fires = state.units.filter((u) => hasPoint(u) && onFire(u.unit_id)).length;
  fill(byId("map-info"),
    legend(),
    h("p", { class: "muted", testid: "map-counts" },
      t("map.counts", { n: placed, fires }),
      placed < state.units.length ? ` · ${t("map.unplaced", { n: state.units.length - placed })}` : "",
      state.truncated ? ` · ${t("units.truncated", { n: state.units.length })}` : ""));
  const pane = byId("map-pane");
  pane.hidden = picked === null;
  fill(pane, unitPane());
  map?.invalidateSize();
}
