// Live alarms: server-sent events from /events, added at the top of the alarm table.
// Text only (textContent): nothing from the network becomes markup.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const body = document.querySelector("[data-live-alarms]");
  if (!body || !window.EventSource) return;
  const es = new EventSource("/events?after=" + encodeURIComponent(body.dataset.liveAlarms));
  es.addEventListener("alarm", (ev) => {
    const a = JSON.parse(ev.data);
    if (document.getElementById("alarm-" + a.id)) return;
    const tr = document.createElement("tr");
    tr.id = "alarm-" + a.id;
    tr.className = "alarm fresh " + a.source;
    for (const v of [a.id, a.local, a.site + " / " + a.device, a.title + " " + a.type, a.sentence, a.source]) {
      const td = document.createElement("td");
      td.textContent = String(v);
      tr.appendChild(td);
    }
    body.insertBefore(tr, body.firstChild);
  });
  // The session ended (logout, idle, user removed or role changed): no more alarms
  // here; reloading goes to the login page, or to the page as the new role sees it.
  es.addEventListener("end", () => {
    es.close();
    window.location.reload();
  });
});
