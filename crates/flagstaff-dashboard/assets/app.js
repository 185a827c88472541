// Flagstaff dashboard: small behaviours every page shares. No framework, no build step.
// - copy buttons (data-copy), confirmations of destructive forms (data-confirm)
// - the environment switcher, the new-flag form's key suggestion
// - live updates: an EventSource on the project's change stream; a page that shows what changed
//   reloads, or, when it holds unsaved edits, says who changed what instead.
"use strict";

window.Flagstaff = window.Flagstaff || {};

// Scripts run: the header's sections may collapse behind "Menu" on narrow screens.
document.documentElement.classList.add("js");

// Times are written in UTC by the server ("2026-11-21 14:03 UTC"); shown in the viewer's own
// time zone, with the UTC text on hover.
function showLocalTimes() {
  const format = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short" });
  document.querySelectorAll("time[data-utc]").forEach((el) => {
    const m = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}) UTC$/.exec(el.textContent.trim());
    if (!m) return;
    const at = new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]));
    el.setAttribute("datetime", at.toISOString());
    el.title = el.textContent.trim();
    el.textContent = format.format(at);
  });
}

function setUpMenu() {
  const button = document.querySelector(".menu-toggle");
  const header = document.querySelector("header.top");
  if (!button || !header) return;
  button.addEventListener("click", () => {
    const open = header.classList.toggle("menu-open");
    button.setAttribute("aria-expanded", String(open));
  });
}

Flagstaff.csrf = () => document.querySelector('meta[name="csrf-token"]')?.content || "";

// Unsaved edits register a check here; live updates never throw them away.
Flagstaff.dirtyChecks = [];
Flagstaff.isDirty = () => Flagstaff.dirtyChecks.some((check) => check());

document.addEventListener("click", async (event) => {
  const copy = event.target.closest("[data-copy]");
  if (copy) {
    try {
      await navigator.clipboard.writeText(copy.dataset.copy);
      const label = copy.textContent;
      copy.textContent = "Copied";
      setTimeout(() => { copy.textContent = label; }, 1500);
    } catch (_) {
      window.prompt("Copy this:", copy.dataset.copy);
    }
  }
});

// A big segment's list (segment page): the file's bytes go as the request body, so the server
// reads it as a stream whatever its size; the answer (counts, or the refusal with its line)
// shows beside the form, and the live-update stream then reloads the page with the new counts.
document.addEventListener("submit", async (event) => {
  const form = event.target.closest("form[data-upload-list]");
  if (!form) return;
  event.preventDefault();
  const file = form.querySelector('input[type="file"]').files[0];
  const out = form.querySelector("[data-upload-result]");
  if (!file) return;
  const params = new URLSearchParams({ env: form.elements.env.value, list: form.elements.list.value, op: form.elements.op.value });
  out.textContent = "Uploading…";
  try {
    const response = await fetch(`${form.action}?${params}`, {
      method: "POST", body: file, headers: { "x-csrf-token": Flagstaff.csrf(), "content-type": "text/plain" },
    });
    const answer = await response.json().catch(() => ({}));
    if (response.ok) {
      out.textContent = `${answer.received} keys read, ${answer.changed} changed: now ${answer.included} included, ${answer.excluded} excluded.`;
    } else {
      out.textContent = `Refused: ${answer.message || response.status}${answer.field ? ` (${answer.field})` : ""}`;
    }
  } catch (error) {
    out.textContent = `The upload failed: ${error.message}`;
  }
});

document.addEventListener("submit", (event) => {
  const button = event.submitter || event.target.querySelector("[data-confirm]");
  const message = button?.dataset?.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
  // A form on its way to the server is our own change: a live update about it must not
  // reload the page and cancel the navigation the form started.
  if (!event.defaultPrevented) {
    Flagstaff.saving = true;
    Flagstaff.live?.close();
  }
});

function setUpEnvironmentSwitch() {
  const select = document.getElementById("environment-switch");
  if (!select) return;
  select.addEventListener("change", () => {
    const url = new URL(window.location.href);
    url.pathname = select.dataset.path || url.pathname;
    url.searchParams.set("env", select.value);
    url.searchParams.delete("page");
    window.location.assign(url.toString());
  });
}

// Another project: its flag list (environments differ between projects).
function setUpProjectSwitch() {
  const select = document.getElementById("project-switch");
  if (!select) return;
  select.addEventListener("change", () => {
    window.location.assign(`/projects/${encodeURIComponent(select.value)}/flags`);
  });
}

// The key follows the name until someone edits the key itself.
function setUpNewFlagForm() {
  const name = document.getElementById("flag-name");
  const key = document.getElementById("flag-key");
  if (!name || !key) return;
  let touched = key.value !== "";
  key.addEventListener("input", () => { touched = key.value !== ""; });
  name.addEventListener("input", () => {
    if (touched) return;
    key.value = name.value.trim().toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "");
  });
  const multivariate = document.getElementById("multivariate");
  const sync = () => {
    const kind = document.querySelector('input[name="kind"]:checked')?.value;
    multivariate.hidden = kind !== "multivariate";
  };
  document.querySelectorAll('input[name="kind"]').forEach((r) => r.addEventListener("change", sync));
  sync();
}

// Which changes matter to this page: the body says what it shows.
function affects(change) {
  const body = document.body;
  const env = body.dataset.environment;
  const project = body.dataset.project;
  switch (body.dataset.watch) {
    case "flags":
      return change.kind === "flag" || (change.kind === "targeting" && change.scope === `${project}/${env}`)
        || change.kind === "environment";
    case "flag":
      return change.key === body.dataset.flag
        && (change.kind === "flag" || (change.kind === "targeting" && change.scope === `${project}/${env}`));
    case "segments":
      return change.kind === "segment" && change.scope === `${project}/${env}`;
    case "segment":
      return change.kind === "segment" && change.key === body.dataset.segment && change.scope === `${project}/${env}`;
    case "history":
      return true;
    default:
      return false;
  }
}

function showBanner(html, withReload) {
  const banner = document.getElementById("live-banner");
  if (!banner) return;
  banner.textContent = html;
  if (withReload) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary small";
    button.textContent = "Reload";
    button.addEventListener("click", () => window.location.reload());
    banner.appendChild(button);
  }
  banner.hidden = false;
}

Flagstaff.ownSaves = new Set();

function setUpLiveUpdates() {
  const url = document.body.dataset.live;
  if (!url || !document.body.dataset.watch || !window.EventSource) return;
  const source = new EventSource(url);
  Flagstaff.live = source;
  source.addEventListener("change", (event) => {
    let change;
    try { change = JSON.parse(event.data); } catch (_) { return; }
    if (!affects(change)) return;
    // Our own save reloads the page itself.
    if (Flagstaff.saving) return;
    if (Flagstaff.isDirty()) {
      showBanner(`${change.actor} changed this ${change.kind === "segment" ? "segment" : "flag"} while you were editing. Your edits are not saved; saving will show you the difference first.`, true);
    } else {
      showBanner(`Updated: ${change.actor} made a change.`, false);
      window.location.reload();
    }
  });
}

// Scheduling forms start in the browser's time zone and on tomorrow's date (the server reads
// the zone from the tz database; a page without script keeps UTC and an empty date).
document.addEventListener("DOMContentLoaded", () => {
  let zone = "";
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (_) { zone = ""; }
  if (zone) document.querySelectorAll("input.time-zone").forEach((input) => { if (input.value === "UTC") input.value = zone; });
  const tomorrow = new Date(Date.now() + 86400000);
  const pad = (n) => String(n).padStart(2, "0");
  const day = `${tomorrow.getFullYear()}-${pad(tomorrow.getMonth() + 1)}-${pad(tomorrow.getDate())}`;
  document.querySelectorAll('details.schedule input[name="date"]').forEach((input) => { if (!input.value) input.value = day; });
});

document.addEventListener("DOMContentLoaded", () => {
  setUpMenu();
  showLocalTimes();
  setUpEnvironmentSwitch();
  setUpProjectSwitch();
  setUpNewFlagForm();
  setUpLiveUpdates();
});
