// Serving page: start/stop serving the champion, the engines (refreshed every 5 s and on
// "Refresh"), the usage figures and the settings form, all through /api/projects/<id>/serving/.
// The template renders the first state; this keeps it current. No inline script (CSP).

import { api, el } from "../frontend/dom.js";

const REFRESH_MS = 5000;
const root = document.getElementById("serving");

function say(text, kind = "success") {
  const box = document.getElementById("serving-status");
  box.textContent = text;
  box.className = `message ${kind}`;
  box.hidden = false;
}

// A refusal names its fields: {"fields": {"canary_share": "a share between 0 and 1"}}.
function refusal(response) {
  const data = response.data || {};
  const fields = data.fields || data;
  if (fields && typeof fields === "object") {
    const named = Object.entries(fields)
      .filter(([key]) => !["error", "message", "detail"].includes(key))
      .map(([key, why]) => `${key}: ${Array.isArray(why) ? why.join(" ") : why}`);
    if (named.length) return named.join("; ");
  }
  return data.message || data.detail || `HTTP ${response.status}`;
}

function when(iso) {
  return iso ? iso.replace("T", " ").slice(0, 19) : "";
}

function renderTarget(target) {
  const state = document.querySelector("[data-testid=target-state]");
  if (target && target.enabled) {
    const what = target.alias ? `the alias “${target.alias}”` : `version ${target.version}`;
    // The watcher that holds the target's lease runs its engines; none yet: none serves it.
    const where = target.served_by
      ? `served from the host ${target.served_by}`
      : "waiting for a serve --watch to take it";
    state.textContent = `On: serving ${what} (${target.engine}), asked by ${target.requested_by || "someone"}; ${where}.`;
  } else if (target) {
    state.textContent = `Off (stopped by ${target.requested_by || "someone"}).`;
  } else {
    state.textContent = "Off.";
  }
  // The watcher's word: why it could not start what was asked (an engine not installed...).
  const error = document.getElementById("target-error");
  error.textContent = target && target.enabled && target.error ? `Not serving: ${target.error}` : "";
  error.hidden = !error.textContent;
}

function renderEngines(engines) {
  const rows = engines.map((e) =>
    el("tr", { "data-testid": `engine-${e.id}` },
      el("td", { text: String(e.id) }),
      el("td", { text: e.version_label }),
      el("td", { text: e.role }),
      el("td", { text: e.engine }),
      el("td", { text: e.status, "data-testid": "engine-status" }),
      el("td", { text: when(e.started_at) }),
      el("td", { text: e.error || "" })));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colSpan: 7, class: "muted", text: "No engine yet." })));
  document.getElementById("engine-rows").replaceChildren(...rows);
}

function renderUsage(usage) {
  document.getElementById("usage-requests").textContent = String(usage.requests);
  document.getElementById("usage-failures").textContent = String(usage.failures);
  document.getElementById("usage-tokens").textContent = String(usage.prompt_tokens + usage.completion_tokens);
  document.getElementById("usage-ttft").textContent = usage.ttft_p50_ms === null ? "–" : `${usage.ttft_p50_ms} ms`;
}

function render(overview) {
  renderTarget(overview.target);
  renderEngines(overview.engines);
  renderUsage(overview.usage);
}

async function refresh() {
  const response = await api("GET", root.dataset.api, undefined, {}, { timeoutMs: 10000 });
  if (response.status === 200) render(response.data);
  return response;
}

async function act(method, url, body, done) {
  let response;
  try {
    response = await api(method, url, body, {}, { timeoutMs: 10000 });
  } catch (error) {
    say(`Not saved: ${error.message}`, "error");
    return;
  }
  if (response.status >= 200 && response.status < 300) {
    render(response.data);
    say(done);
  } else {
    say(`Not saved: ${refusal(response)}`, "error");
  }
}

function settingsBody(form) {
  const body = {
    requests_per_minute: Number(form.requests_per_minute.value),
    learn_from_traffic: form.learn_from_traffic.checked,
    canary_mode: form.canary_mode.value,
    canary_share: Number(form.canary_share.value || 0),
  };
  if (form.canary_version.value) body.canary_version = Number(form.canary_version.value);
  return body;
}

if (root) {
  document.getElementById("serving-start").addEventListener("click", () =>
    act("POST", root.dataset.targetApi, { alias: "champion" }, "Serving the champion: the engine starts within a few seconds."));
  document.getElementById("serving-stop").addEventListener("click", () =>
    act("DELETE", root.dataset.targetApi, undefined, "Serving stops: engines drain, then stop."));
  document.getElementById("serving-refresh").addEventListener("click", () => refresh());
  const form = document.getElementById("serving-settings-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act("PATCH", root.dataset.api, settingsBody(form), "Settings saved.");
  });
  setInterval(() => {
    if (!document.hidden) refresh().catch(() => {});
  }, REFRESH_MS);
  root.dataset.ready = "true";
}
