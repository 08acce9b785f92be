// The responder page's only script: on 到场 Arrive, attach the phone's position (WGS-84) when
// it is given within a few seconds; the form is sent either way. Nothing else runs.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("arrive");
  if (!form || !("geolocation" in navigator)) return;
  let asked = false;
  form.addEventListener("submit", (event) => {
    if (asked) return;
    event.preventDefault();
    asked = true;
    const send = () => form.submit();
    navigator.geolocation.getCurrentPosition((p) => {
      form.elements.lat.value = String(p.coords.latitude);
      form.elements.lon.value = String(p.coords.longitude);
      send();
    }, send, { enableHighAccuracy: true, timeout: 8000, maximumAge: 60000 });
  });
});
