// Tandem annotation page: keyboard-first, preloads the next task, and never loses a label.
//
// Every submitted label goes first into an outbox in localStorage with its own
// Idempotency-Key; it leaves the outbox only once the server has acknowledged it (201/200),
// or refused it for good (4xx). A dropped connection or a reload retries with the same key,
// so the server stores the label exactly once.
//
// This module holds what every task kind shares (claim and preload, outbox, submit and skip,
// the help overlay, the common keys) and hands the rest to the kind's module from KINDS:
// render(view), payload(view) and keys(view, key, event), where view = { task, state, box }.
//
// Untrusted text: prompt and response HTML comes from the server already sanitised (Markdown
// through nh3) and the page's Content-Security-Policy forbids inline scripts; everything else
// is set with textContent.
import { api, el, newKey } from "../dom.js";
import { promptCard } from "./cards.js";
import * as correction from "./correction.js";
import * as pairwise from "./pairwise.js";
import * as ranking from "./ranking.js";
import * as rubric from "./rubric.js";

const KINDS = { pairwise, ranking, rubric, correction };

function kindOf(task) {
  const kind = KINDS[task.kind];
  if (!kind) throw new Error(`unknown task kind ${task.kind}`);
  return kind;
}

function start(root) {
  const projectId = root.dataset.projectId;
  const userId = root.dataset.userId;
  const leaseSeconds = Number(root.dataset.leaseSeconds || 600);
  const taskBox = root.querySelector("[data-testid=task]");
  const statusBox = root.querySelector("[data-testid=status]");
  const outboxBox = root.querySelector("[data-testid=outbox-status]");
  const doneBox = root.querySelector("[data-testid=done-count]");
  const remainingBox = root.querySelector("[data-testid=remaining-count]");
  const helpBox = root.querySelector("[data-testid=help]");
  // The key and item shape ({key, taskId, body}) outlive this script: labels a reload left
  // queued are sent by whatever version of the page runs next.
  const OUTBOX_KEY = `tandem.outbox.${userId}`;

  let current = null; // the task on screen
  let preloaded = null; // the next task, already claimed
  let view = null; // { task: current, state: the annotator's choices, box: taskBox }
  let shownAt = 0;
  let hiddenMs = 0;
  let hiddenSince = null;

  function say(text, isError = false) {
    statusBox.textContent = text;
    statusBox.classList.toggle("error", isError);
  }

  // ------------------------------------------------------------------ outbox
  function readOutbox() {
    try { return JSON.parse(localStorage.getItem(OUTBOX_KEY) || "[]"); } catch (_) { return []; }
  }
  function writeOutbox(items) {
    localStorage.setItem(OUTBOX_KEY, JSON.stringify(items));
    const n = items.length;
    outboxBox.textContent = n ? `${n} label${n > 1 ? "s" : ""} waiting to be saved…` : "All labels saved.";
    outboxBox.dataset.pending = String(n);
  }

  // Flushes run one after another; a caller that awaits gets its own items attempted.
  let flushChain = Promise.resolve();
  function flushOutbox() {
    flushChain = flushChain.then(flushOnce, flushOnce);
    return flushChain;
  }

  async function flushOnce() {
    let items = readOutbox();
    for (const item of items.slice()) {
      let result;
      try {
        result = await api("POST", `/api/tasks/${item.taskId}/labels/`, item.body, { "Idempotency-Key": item.key });
      } catch (_) {
        return; // offline: keep everything, retry later
      }
      if (result.status >= 500 || result.status === 0 || result.status === 429) return;
      items = readOutbox().filter((x) => x.key !== item.key);
      writeOutbox(items);
      if (result.status === 200 || result.status === 201) {
        if (result.status === 201) doneBox.textContent = String(Number(doneBox.textContent || 0) + 1);
      } else {
        const detail = result.data && (result.data.detail || result.data.error);
        say(`A label for task ${item.taskId} was not accepted: ${detail || result.status}`, true);
      }
    }
  }

  // ------------------------------------------------------------------ claiming
  async function claim(exclude) {
    const result = await api("POST", `/api/projects/${projectId}/tasks/next/`, { exclude });
    if (result.status === 204) return null;
    if (result.status !== 200) {
      const detail = result.data && result.data.detail;
      throw new Error(detail || `could not get a task (${result.status})`);
    }
    return result.data;
  }

  function pendingTaskIds() {
    return readOutbox().map((item) => item.taskId);
  }

  let preloading = null; // the preload request in flight, if any

  function preload() {
    if (!current || preloaded || preloading) return preloading;
    const exclude = [current.task_id, ...pendingTaskIds()];
    preloading = claim(exclude)
      .then((task) => { preloaded = task; })
      .catch(() => { preloaded = null; })
      .finally(() => { preloading = null; });
    return preloading;
  }

  async function showNext() {
    if (preloading) await preloading;
    try {
      current = preloaded || (await claim(pendingTaskIds()));
      preloaded = null;
    } catch (error) {
      current = null;
      say(error.message, true);
      return;
    }
    render();
    if (current) preload();
  }

  async function refreshProgress() {
    const result = await api("GET", `/api/projects/${projectId}/progress/`);
    if (result.status === 200 && result.data) remainingBox.textContent = String(result.data.tasks_open);
  }

  // ------------------------------------------------------------------ rendering
  function flagsBox(state) {
    const box = el("div", { class: "flags", "data-testid": "flags" });
    for (const [value, name] of [["unsafe", "Unsafe"], ["personal_data", "Contains personal data"], ["spam", "Spam / garbage"]]) {
      const input = el("input", { type: "checkbox", value });
      input.checked = state.flags.has(value);
      input.addEventListener("change", () => (input.checked ? state.flags.add(value) : state.flags.delete(value)));
      box.append(el("label", { class: "inline" }, input, ` ${name}`));
    }
    return box;
  }

  function render() {
    taskBox.replaceChildren();
    if (!current) {
      view = null;
      taskBox.append(el("div", { class: "card empty", "data-testid": "no-task", text: "No tasks left for you in this project. Thank you!" }));
      say("");
      return;
    }
    view = { task: current, state: { flags: new Set() }, box: taskBox };
    shownAt = performance.now();
    hiddenMs = 0;
    taskBox.dataset.taskId = String(current.task_id);
    taskBox.dataset.kind = current.kind;
    taskBox.append(promptCard(current.prompt));
    taskBox.append(kindOf(current).render(view));
    taskBox.append(flagsBox(view.state));
    const submit = el("button", { class: "primary", type: "button", text: "Submit (Enter)", "data-testid": "submit" });
    submit.addEventListener("click", submitCurrent);
    const skip = el("button", { type: "button", text: "Skip (S)", "data-testid": "skip" });
    skip.addEventListener("click", skipCurrent);
    taskBox.append(el("div", { class: "controls" }, submit, skip));
    say(`Task ${current.task_id}: ${current.kind}`);
  }

  // ------------------------------------------------------------------ submit & skip
  let submitting = false; // only while switching tasks: a second Enter must not resubmit

  async function submitCurrent() {
    if (!current || submitting) return;
    let payload;
    try { payload = kindOf(current).payload(view); } catch (error) { say(error.message, true); return; }
    submitting = true;
    try {
      const visibleMs = Math.round(performance.now() - shownAt - hiddenMs);
      const item = {
        key: newKey(),
        taskId: current.task_id,
        body: { payload, flags: Array.from(view.state.flags), duration_ms: Math.max(0, visibleMs) },
      };
      writeOutbox([...readOutbox(), item]);
      if (preloading) await preloading;
      // Show the preloaded task at once; the label travels in the background.
      current = preloaded;
      preloaded = null;
      if (current) render();
      else taskBox.replaceChildren(el("div", { class: "card empty", text: "Loading the next task…" }));
    } finally {
      submitting = false;
    }
    await flushOutbox();
    if (current) preload();
    else await showNext();
    refreshProgress();
  }

  async function skipCurrent() {
    if (!current) return;
    const result = await api("POST", `/api/tasks/${current.task_id}/skip/`, { reason: "" });
    if (result.status !== 200) { say("Could not skip this task.", true); return; }
    await showNext();
  }

  async function heartbeat() {
    for (const task of [current, preloaded]) {
      if (task) {
        try { await api("POST", `/api/tasks/${task.task_id}/heartbeat/`); } catch (_) { /* retried next beat */ }
      }
    }
  }

  // ------------------------------------------------------------------ keyboard
  function onKey(event) {
    const typing = ["TEXTAREA", "INPUT", "SELECT"].includes(document.activeElement && document.activeElement.tagName);
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); submitCurrent(); return; }
    if (typing) return;
    if (event.key === "?") { helpBox.hidden = !helpBox.hidden; return; }
    if (!current) return;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (key === "Enter") {
      if (document.activeElement && document.activeElement.tagName === "BUTTON") return;
      event.preventDefault();
      submitCurrent();
      return;
    }
    if (key === "s") { skipCurrent(); return; }
    kindOf(current).keys(view, key, event);
  }

  document.addEventListener("keydown", onKey);
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) hiddenSince = performance.now();
    else if (hiddenSince !== null) { hiddenMs += performance.now() - hiddenSince; hiddenSince = null; }
  });
  window.addEventListener("online", flushOutbox);
  setInterval(flushOutbox, 5000);
  setInterval(heartbeat, Math.max(15, leaseSeconds / 3) * 1000);

  writeOutbox(readOutbox());
  flushOutbox().then(showNext);
}

const root = document.getElementById("annotate");
if (root) start(root);
