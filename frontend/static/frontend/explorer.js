// The data explorer: filters, keyset pages, a task's whole story, bulk actions, exports.
// Every read and write goes through /api/projects/<id>/explorer/ (annotation.explorer).
import { api, el } from "./dom.js";

const root = document.getElementById("explorer");
const project = root.dataset.project;
const base = `/api/projects/${project}/explorer`;
const form = root.querySelector("[data-testid=explorer-filters]");
const tbody = root.querySelector("[data-testid=explorer-table] tbody");
const status = root.querySelector("[data-testid=explorer-status]");
const countBox = root.querySelector("[data-testid=explorer-count]");
const prev = root.querySelector("[data-testid=prev-page]");
const next = root.querySelector("[data-testid=next-page]");
const detail = root.querySelector("[data-testid=task-detail]");
const selectAll = root.querySelector("[data-testid=select-all]");
const bulkBar = root.querySelector("[data-testid=bulk-bar]");
const allMatching = root.querySelector("[data-testid=bulk-all-matching]");
const confirmBox = root.querySelector("[data-testid=bulk-confirm]");
const selected = new Set();
// The count the table's filters matched when last counted: what "all N matching" confirms.
let matching = null;
let pendingBulk = null;
let cursor = {};
let current = null;
let generation = 0;

function say(text, isError = false) {
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function errorText(answer) {
  const data = answer.data || {};
  const field = data.field ? `${data.field}: ` : "";
  return `${field}${data.detail || `the server answered ${answer.status}`}`;
}

function filterParams() {
  const params = new URLSearchParams();
  for (const [key, value] of new FormData(form)) {
    if (String(value).trim()) params.set(key, String(value).trim());
  }
  return params;
}

function updateExports(params) {
  for (const kind of ["jsonl", "csv"]) {
    const link = root.querySelector(`[data-testid=export-${kind}]`);
    const query = new URLSearchParams(params);
    query.set("as", kind);
    link.href = `${base}/export/?${query}`;
  }
}

function cell(value) {
  return el("td", { text: value === null || value === undefined ? "" : String(value) });
}

function renderRows(rows) {
  tbody.replaceChildren();
  if (!rows.length) {
    tbody.append(el("tr", {}, el("td", { colSpan: 13, class: "muted", text: "No task matches these filters." })));
    return;
  }
  for (const row of rows) {
    const box = el("input", { type: "checkbox", checked: selected.has(row.id), "aria-label": `Select task ${row.id}` });
    box.addEventListener("click", (event) => event.stopPropagation());
    box.addEventListener("change", () => {
      if (box.checked) selected.add(row.id); else selected.delete(row.id);
      showSelection();
    });
    const tr = el("tr", { "data-task": String(row.id), tabIndex: 0 },
      el("td", {}, box), cell(row.id), cell(row.kind), cell(row.status), cell(row.priority),
      cell(`${row.labels}/${row.required_labels}`),
      cell(row.agreement === null ? "" : row.agreement.toFixed(2)),
      cell(row.gold ? "gold" : ""), cell(row.review || ""),
      cell(row.annotators.join(", ")), cell(row.flags.join(", ")),
      cell(row.created_at.slice(0, 10)), el("td", { class: "prompt-cell", text: row.prompt }));
    tr.addEventListener("click", () => openTask(row.id));
    tr.addEventListener("keydown", (event) => { if (event.key === "Enter") openTask(row.id); });
    tbody.append(tr);
  }
}

function showSelection() {
  const label = root.querySelector("[data-testid=selected-count]");
  if (label) label.textContent = `${selected.size} selected`;
}

async function loadCount(params, mine) {
  countBox.textContent = "Counting…";
  const answer = await api("GET", `${base}/count/?${params}`);
  if (mine !== generation) return;
  if (answer.status !== 200) { countBox.textContent = ""; return; }
  const { count, capped } = answer.data;
  matching = { count, capped, filters: Object.fromEntries(params) };
  const allLabel = root.querySelector("[data-testid=bulk-all-label]");
  if (allLabel) allLabel.textContent = `apply to all ${capped ? `${count.toLocaleString()}+` : count.toLocaleString()} task${count === 1 ? "" : "s"} matching the filters`;
  countBox.textContent = capped ? `${count.toLocaleString()} or more tasks` : `${count.toLocaleString()} task${count === 1 ? "" : "s"}`;
}

async function load(newCursor = {}, { recount = true } = {}) {
  const mine = ++generation;
  cursor = newCursor;
  if (recount) {
    matching = null;
    pendingBulk = null;
    if (confirmBox) confirmBox.hidden = true;
  }
  const params = filterParams();
  const query = new URLSearchParams(params);
  for (const [key, value] of Object.entries(cursor)) query.set(key, value);
  say("Loading…");
  root.dataset.state = "loading";
  let answer;
  try {
    answer = await api("GET", `${base}/tasks/?${query}`);
  } catch (error) {
    say(`Could not reach the server (${error.message}); try again.`, true);
    root.dataset.state = "error";
    return;
  }
  if (mine !== generation) return;
  if (answer.status !== 200) {
    say(errorText(answer), true);
    root.dataset.state = "error";
    return;
  }
  current = answer.data;
  renderRows(current.rows);
  prev.disabled = current.prev_before === null;
  next.disabled = current.next_after === null;
  selectAll.checked = false;
  say("");
  root.dataset.state = "ready";
  updateExports(params);
  history.replaceState(null, "", `?${params}`);
  if (recount) loadCount(params, mine);
}

function block(title, ...children) {
  return el("div", { class: "sample-pair" }, el("h3", { text: title }), ...children);
}

function json(value) {
  return el("pre", { class: "plain", text: JSON.stringify(value, null, 1) });
}

// A project admin seals a flagged personal-data text: kept only encrypted, shown as
// "[personal data removed]" everywhere (annotation.services.sealing); or undoes a seal made
// by mistake. A reason is required (it is audited).
function sealControl(task, text, response, sealed) {
  const what = text === "prompt" ? "prompt" : `response ${response}`;
  const note = sealed ? el("p", { class: "muted", text: "Sealed as personal data." }) : null;
  if (root.dataset.canManage !== "1") return note;
  const action = sealed ? "unseal" : "seal";
  const reason = el("input", { type: "text", maxLength: 500, placeholder: "why (required)", "aria-label": `Reason to ${action} the ${what}`, "data-testid": `${action}-reason` });
  const button = el("button", { type: "button", text: sealed ? "Unseal" : "Seal as personal data", "data-testid": `${action}-button` });
  button.addEventListener("click", async () => {
    const body = { text, reason: reason.value.trim() };
    if (response !== undefined) body.response = response;
    if (!body.reason) { say(`reason: say why the text is ${action}ed`, true); return; }
    button.disabled = true;
    const answer = await api("POST", `${base}/tasks/${task.task_id}/${action}/`, body);
    button.disabled = false;
    if (answer.status !== 200) { say(errorText(answer), true); return; }
    const withdrawn = answer.data.withdrawn_snapshots || [];
    say(sealed ? `Unsealed the ${what} (closed tasks stay closed, withdrawn snapshots withdrawn).`
      : `Sealed the ${what}: ${answer.data.tasks_closed} open task(s) closed${withdrawn.length ? `; snapshot(s) ${withdrawn.join(", ")} withdrawn` : ""}.`);
    await openTask(task.task_id);
  });
  return el("div", { class: "controls", "data-testid": `${action}-control` }, note, reason, button);
}

async function openTask(taskId) {
  detail.hidden = false;
  detail.replaceChildren(el("p", { class: "muted", text: `Loading task ${taskId}…` }));
  const answer = await api("GET", `${base}/tasks/${taskId}/`);
  if (answer.status !== 200) {
    detail.replaceChildren(el("p", { class: "error", text: errorText(answer) }));
    return;
  }
  const task = answer.data;
  const close = el("button", { type: "button", class: "help-close", text: "×", "aria-label": "Close the task" });
  close.addEventListener("click", () => { detail.hidden = true; });
  detail.replaceChildren(
    close,
    el("h2", { text: `Task ${task.task_id} · ${task.kind} · ${task.status}` }),
    el("p", { class: "muted", text: `${task.label_count}/${task.required_labels} labels · priority ${task.priority} · created ${task.created_at.slice(0, 16).replace("T", " ")}${task.is_gold ? " · gold" : ""}` }),
    block("Prompt", ...task.prompt.map((m) => el("p", { class: "plain" }, el("strong", { text: `${m.role}: ` }), String(m.content))),
      sealControl(task, "prompt", undefined, task.prompt_sealed)),
    block("Responses", ...task.responses.map((r) => el("div", {}, el("strong", { text: `${r.position} (response ${r.id})` }), el("p", { class: "plain", text: r.text }),
      sealControl(task, "response", r.id, r.sealed)))),
    block("Labels", task.labels.length ? el("ul", { "data-testid": "detail-labels" }, ...task.labels.map((l) =>
      el("li", {}, `${l.annotator} · version ${l.version} · ${l.created_at.slice(0, 16).replace("T", " ")}${l.flags.length ? ` · flags: ${l.flags.join(", ")}` : ""}`,
        json(l.payload),
        l.revisions.length ? el("details", {}, el("summary", { text: `${l.revisions.length} earlier version(s)` }), ...l.revisions.map((r) => el("div", {}, `version ${r.version} by ${r.edited_by || "?"}`, json(r.payload)))) : null))) : el("p", { class: "muted", text: "No labels yet." })),
    block("History", task.leases.length ? el("ul", { "data-testid": "detail-history" }, ...task.leases.map((s) =>
      el("li", { text: `${s.created_at.slice(0, 16).replace("T", " ")} served to ${s.annotator}: ${s.state}${s.skip_reason ? ` (${s.skip_reason})` : ""}` }))) : el("p", { class: "muted", text: "Never served." })),
    task.gold_expected ? block("Gold answer", json(task.gold_expected)) : null,
    task.adjudication ? block(`Adjudicated by ${task.adjudication.reviewer}`, el("p", { text: task.adjudication.reason }), json(task.adjudication.payload))
      : task.adjudication_requested ? block("Adjudication", el("p", { text: `Sent to adjudication by ${task.adjudication_requested.by || "?"}` })) : null,
  );
  detail.scrollIntoView({ block: "nearest" });
}

function bulkBody(action) {
  const body = { action };
  if (action === "set_priority") {
    const text = bulkBar.querySelector("[name=priority]").value.trim();
    if (!/^-?\d+$/.test(text)) { say("priority: enter a whole number", true); return null; }
    body.priority = Number(text);
  }
  return body;
}

async function bulk(action) {
  const body = bulkBody(action);
  if (!body) return;
  if (allMatching && allMatching.checked) {
    // Every task the filters match, done on the server with the same filters, once the
    // person confirmed the number; the server refuses if that number changed meanwhile.
    if (!matching) { say("Still counting the matching tasks; try again in a moment.", true); return; }
    pendingBulk = { ...body, filters: matching.filters, expected_count: matching.count };
    const n = matching.capped ? `${matching.count.toLocaleString()} or more` : matching.count.toLocaleString();
    confirmBox.querySelector("[data-testid=bulk-confirm-text]").textContent =
      `${action.replace(/_/g, " ")}: all ${n} task${matching.count === 1 ? "" : "s"} matching the filters?`;
    confirmBox.hidden = false;
    confirmBox.querySelector("[data-testid=bulk-confirm-yes]").focus();
    return;
  }
  if (!selected.size) { say("Select tasks first (the boxes on the left), or tick “apply to all”.", true); return; }
  await sendBulk({ ...body, task_ids: [...selected] });
}

async function sendBulk(body) {
  say("Working…");
  const answer = await api("POST", `${base}/bulk/`, body);
  if (answer.status !== 200) {
    if (answer.status === 409) await load(cursor);  // the set changed: count it again
    say(errorText(answer), true);
    return;
  }
  const { action, changed, skipped } = answer.data;
  const reasons = skipped.slice(0, 5).map((s) => `task ${s.task_id}: ${s.reason}`).join("; ");
  selected.clear();
  showSelection();
  await load(cursor, { recount: Boolean(body.filters) });
  say(`${action.replace(/_/g, " ")}: ${changed} changed${skipped.length ? `; ${skipped.length} skipped (${reasons}${skipped.length > 5 ? "; …" : ""})` : ""}.`);
}

if (confirmBox) {
  confirmBox.querySelector("[data-testid=bulk-confirm-yes]").addEventListener("click", () => {
    confirmBox.hidden = true;
    const body = pendingBulk;
    pendingBulk = null;
    if (body) sendBulk(body);
  });
  confirmBox.querySelector("[data-testid=bulk-confirm-no]").addEventListener("click", () => {
    confirmBox.hidden = true;
    pendingBulk = null;
    say("Nothing changed.");
  });
}

form.addEventListener("submit", (event) => { event.preventDefault(); load(); });
form.addEventListener("reset", () => setTimeout(() => load(), 0));
prev.addEventListener("click", () => current && load({ before: current.prev_before }, { recount: false }));
next.addEventListener("click", () => current && load({ after: current.next_after }, { recount: false }));
selectAll.addEventListener("change", () => {
  for (const box of tbody.querySelectorAll("input[type=checkbox]")) {
    box.checked = selectAll.checked;
    box.dispatchEvent(new Event("change"));
  }
});
if (bulkBar) {
  for (const button of bulkBar.querySelectorAll("button[data-action]")) {
    button.addEventListener("click", () => bulk(button.dataset.action));
  }
}
// Filters survive a reload: they live in the page's query string.
for (const [key, value] of new URLSearchParams(location.search)) {
  const field = form.elements.namedItem(key);
  if (field) field.value = value;
}
load();
