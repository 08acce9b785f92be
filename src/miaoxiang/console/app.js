// The console's entry point: token login, navigation, language, sound, and the wiring of the views.

import * as alarmDetail from "./alarm_detail.js";
import * as board from "./alarms.js";
import { ApiError, apiUrl, forgetToken, roleOf, saveToken, savedToken, whenUnauthorized } from "./api.js";
import * as devices from "./devices.js";
import { lang, setLang, t, useCatalogue } from "./i18n.js";
import * as unitMap from "./map.js";
import * as sound from "./sound.js";
import * as stats from "./stats.js";
import * as units from "./units.js";
import * as workOrders from "./workorders.js";

const STATS_EVERY_MS = 15000;
const TOAST_MS = 6000;

let role = null;
let statsTimer = null;
let statsSoon = null;
let unitsLoaded = false;

const byId = (id) => document.querySelector(`[data-testid="${id}"]`);
const canAct = () => role === "operator" || role === "admin";

function showError(err) {
  const message = err instanceof ApiError && err.status === 403 ? t("app.forbidden")
    : err instanceof ApiError && err.status === 404 ? t("app.notFound")
    : t("app.error", { msg: err.message });
  const toast = byId("toast");
  toast.textContent = message;
  toast.hidden = false;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => { toast.hidden = true; }, TOAST_MS);
}

function showView(name) {
  for (const button of document.querySelectorAll(".tabs button")) {
    if (button.dataset.view === name) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
  for (const section of document.querySelectorAll("section.view")) section.hidden = section.dataset.view !== name;
  if (name === "units" && !unitsLoaded) {
    unitsLoaded = true;
    units.openRegion("").catch(showError);
  }
  if (name === "map") unitMap.openMap().catch(showError);
}

function openAlarm(alarmId) {
  showView("alarms");
  alarmDetail.showAlarm(alarmId).catch(showError);
}

function openDevice(deviceId) {
  devices.showDevice(deviceId).catch(showError);
}

function openWorkOrders(filter) {
  workOrders.showWorkOrders(filter).catch(showError);
}

function refreshStatsSoon() {
  clearTimeout(statsSoon);
  statsSoon = setTimeout(() => stats.refreshStats().catch(showError), 1000);
}

function renderSound({ enabled, silenced, blocked, beeps } = sound.state()) {
  const button = byId("sound-toggle");
  button.textContent = !enabled ? t("sound.off") : blocked ? t("sound.blocked") : silenced ? t("sound.silenced") : t("sound.on");
  button.setAttribute("aria-pressed", String(enabled));
  button.dataset.beeps = String(beeps);
  button.classList.toggle("warn", enabled && blocked);
  board.renderSoundHint();
}

function renderSession() {
  renderSound();
  byId("role").textContent = role ? t(`role.${role}`) : "";
  byId("role").dataset.role = role ?? "";
  const state = byId("stream-state");
  state.textContent = t({ live: "app.live", connecting: "app.reconnecting", reconnecting: "app.reconnecting" }[state.dataset.state] ?? "app.offline");
}

function renderAll() {
  renderSession();
  board.render();
  alarmDetail.render();
  devices.render();
  if (unitsLoaded) units.render();
  unitMap.render();
  workOrders.render();
  stats.render();
}

function start(newRole) {
  role = newRole;
  byId("login").hidden = true;
  byId("app").hidden = false;
  byId("session").hidden = false;
  renderAll();
  board.connect();
  stats.refreshStats().catch(showError);
  statsTimer = setInterval(() => stats.refreshStats().catch(showError), STATS_EVERY_MS);
}

function logout(message = "") {
  forgetToken();
  role = null;
  clearInterval(statsTimer);
  board.resetBoard();
  alarmDetail.closeDetail();
  unitMap.resetMap();
  unitsLoaded = false;
  byId("app").hidden = true;
  byId("session").hidden = true;
  byId("login").hidden = false;
  byId("login-error").textContent = message;
  byId("token-input").focus();
}

async function login(event) {
  event.preventDefault();
  sound.unlock(); // inside the click: browsers only let a gesture start audio
  const token = byId("token-input").value.trim();
  const button = byId("login-submit");
  button.disabled = true;
  try {
    const found = await roleOf(token);
    saveToken(token);
    byId("token-input").value = "";
    byId("login-error").textContent = "";
    start(found);
  } catch (err) {
    byId("login-error").textContent = err instanceof ApiError && err.status === 401 ? t("login.bad") : t("app.error", { msg: err.message });
  } finally {
    button.disabled = false;
  }
}

function wire() {
  byId("login-form").addEventListener("submit", login);
  byId("logout").addEventListener("click", () => logout());
  byId("lang-toggle").addEventListener("click", () => {
    setLang(lang() === "zh" ? "en" : "zh");
    renderAll();
  });
  byId("sound-toggle").addEventListener("click", () => sound.toggle());
  byId("banner-silence").addEventListener("click", () => sound.silence());
  for (const button of document.querySelectorAll(".tabs button")) {
    button.addEventListener("click", () => showView(button.dataset.view));
  }
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !byId("alarm-detail").hidden) alarmDetail.closeDetail();
  });
  // After a reload the token is still there but no gesture has happened yet: any click or key unblocks audio.
  for (const type of ["pointerdown", "keydown"]) {
    document.addEventListener(type, (e) => { if (!e.target.closest?.("[data-testid='sound-toggle']")) sound.unlock(); });
  }
  sound.onSoundState(renderSound);
  whenUnauthorized(() => logout(t("login.expired")));

  board.initBoard({
    canAct, onOpen: openAlarm, onError: showError,
    onChange: (alarm) => { alarmDetail.alarmChanged(alarm); unitMap.alarmChanged(); refreshStatsSoon(); },
    onStream: (state) => { byId("stream-state").dataset.state = state; renderSession(); },
  });
  alarmDetail.initDetail({ canAct, onDevice: (id) => { showView("devices"); openDevice(id); }, onWorkOrders: openWorkOrders,
    onError: showError });
  devices.initDevices({ onShow: () => showView("devices"), onWorkOrders: openWorkOrders, onError: showError });
  workOrders.initWorkOrders({ canAct, onShow: () => showView("workorders"),
    onDevice: (id) => { showView("devices"); openDevice(id); }, onError: showError });
  units.initUnits({ canAct, onAlarm: openAlarm, onDevice: openDevice, onError: showError });
  unitMap.initMap({ onAlarm: openAlarm, onError: showError });
}

/** A token handed over in the address's fragment (`/#token=...`, as `miaoxiang demo` prints it):
 * fragments never reach the server or its logs; it is saved and wiped from the address bar. */
function takeTokenFromFragment() {
  const given = new URLSearchParams(location.hash.slice(1)).get("token");
  if (!given) return;
  saveToken(given);
  history.replaceState(null, "", location.pathname + location.search);
}

/** The device catalogue's labels; the console still works (with codes for names) if it cannot be read. */
async function loadCatalogue() {
  try {
    const res = await fetch(apiUrl("meta"), { headers: { Accept: "application/json" } });
    if (res.ok) useCatalogue(await res.json());
  } catch (err) {
    console.warn("catalogue unavailable", err);
  }
}

async function main() {
  await loadCatalogue();
  setLang(lang());
  wire();
  takeTokenFromFragment();
  const token = savedToken();
  if (!token) return byId("token-input").focus();
  try {
    start(await roleOf(token));
  } catch (err) {
    logout(err instanceof ApiError && err.status === 401 ? t("login.expired") : t("app.error", { msg: err.message }));
  }
}

main();
