// Tandem annotation page: keyboard-first, preloads the next task, and never loses a label.
//
// Every submitted label goes first into the outbox (outbox.js: localStorage, one
// Idempotency-Key per label); it leaves the outbox once the server has stored it, or for the
// "needs attention" tray when the server refuses it for good.
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
import { backoffMs, createOutbox, REQUEST_TIMEOUT_MS } from "./outbox.js";
import * as confirm from "./confirm.js";
import * as correction from "./correction.js";
import * as pairwise from "./pairwise.js";
import * as ranking from "./ranking.js";
import * as rubric from "./rubric.js";

const KINDS = { pairwise, ranking, rubric, correction, confirm };

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
  const homeUrl = root.dataset.homeUrl || "/";
  const connectionBox = root.querySelector("[data-testid=connection]");
  const connectionText = root.querySelector("[data-testid=connection-text]");
  const reloginLink = root.querySelector("[data-testid=relogin]");
  const undoBar = root.querySelector("[data-testid=undo-bar]");
  const undoSeconds = Number(root.dataset.undoSeconds || 0);
  const trayBox = root.querySelector("[data-testid=attention]");
  const trayList = trayBox.querySelector("ul");

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
  const outbox = createOutbox({
    userId,
    onChange: showOutbox,
    onStored: (item, created) => {
      if (created) doneBox.textContent = String(Number(doneBox.textContent || 0) + 1);
      refreshProgress();
      labelStored();
      showRewardFeedback(item);
    },
  });

  // ------------------------------------------------------------------ reward feedback
  // Optional (the project's labels.reward_feedback): once the server has STORED a pairwise
  // label, ask for the reward model's preference on that task and show it beside the work.
  // Never before: nothing is requested or drawn while the task is on screen (no anchoring),
  // and the server answers only for a task the annotator has labelled.
  const feedbackText = root.querySelector("[data-testid=reward-feedback-text]");
  const rewardFeedback = root.dataset.rewardFeedback === "on" && feedbackText;

  async function showRewardFeedback(item) {
    if (!rewardFeedback || item.kind !== "pairwise") return;
    let result;
    try {
      result = await api("GET", `/api/tasks/${item.taskId}/reward-preference/`, undefined, {}, { timeoutMs: REQUEST_TIMEOUT_MS });
    } catch (_) {
      return; // feedback is optional: offline, it is simply not shown
    }
    if (result.status !== 200 || !result.data) return;
    const data = result.data;
    const sideWords = { left: "the left response", right: "the right response" };
    const yours = { left: "the left response", right: "the right response", tie: "a tie", both_bad: "both bad" }[data.your_choice] || data.your_choice;
    const line = data.preferred
      ? `Your last comparison: you chose ${yours}; the reward model prefers ${sideWords[data.preferred]}` +
        (data.agrees === null ? "." : data.agrees ? " (you agree)." : " (you differ).")
      : "Your last comparison: the reward model has not scored this pair.";
    feedbackText.textContent = line;
    feedbackText.dataset.preferred = data.preferred || "";
    feedbackText.dataset.taskId = String(item.taskId);
  }
  const flushOutbox = outbox.flush;

  function showOutbox({ pending, tray }) {
    const n = pending.length;
    const refused = tray.length;
    if (n) outboxBox.textContent = `${n} label${n > 1 ? "s" : ""} waiting to be saved…`;
    else if (refused) outboxBox.textContent = `${refused} label${refused > 1 ? "s need" : " needs"} your attention (below).`;
    else outboxBox.textContent = "All labels saved.";
    outboxBox.dataset.pending = String(n);
    showConnection();
    showTray(tray);
  }

  const CONNECTION_TEXT = {
    offline: "Offline — labels are kept and will be sent when the connection returns.",
    reconnecting: "Reconnecting…",
    "logged-out": "Your session has ended. Your labels are kept: log in again to send them.",
  };
  let claimTrouble = null; // "offline" or "logged-out" while the next task cannot be claimed
  let reconnecting = false; // trying again after being offline

  function setClaimTrouble(trouble) {
    claimTrouble = trouble;
    showConnection();
  }

  function showConnection() {
    const states = [outbox.connection(), claimTrouble, navigator.onLine ? "online" : "offline"];
    let shown = "online";
    if (states.includes("logged-out")) shown = "logged-out";
    else if (states.includes("offline")) shown = reconnecting ? "reconnecting" : "offline";
    connectionBox.hidden = shown === "online";
    connectionBox.dataset.state = shown;
    connectionText.textContent = CONNECTION_TEXT[shown] || "";
    reloginLink.hidden = shown !== "logged-out";
  }

  function showTray(items) {
    trayBox.hidden = items.length === 0;
    trayList.replaceChildren(...items.map((item) => {
      const reopen = el("button", { type: "button", text: "Re-open", "data-testid": "attention-reopen" });
      reopen.addEventListener("click", () => reopenTask(item));
      const resend = el("button", { type: "button", text: "Re-send", "data-testid": "attention-resend" });
      resend.addEventListener("click", () => outbox.resend(item.key));
      const discard = el("button", { type: "button", text: "Discard", "data-testid": "attention-discard" });
      discard.addEventListener("click", () => outbox.discard(item.key));
      return el("li", { "data-testid": "attention-item", "data-task-id": String(item.taskId) },
        el("span", { text: `Task ${item.taskId}: ` }),
        el("span", { class: "error", "data-testid": "attention-reason", text: item.reason || `refused (${item.status})` }),
        el("div", { class: "controls" }, reopen, resend, discard));
    }));
  }

  // Label a refused task again, while the annotator still holds it. The task on screen waits
  // as the next one (or, if one is already waiting, the server hands it back with the next
  // claim: held tasks come first).
  async function reopenTask(item) {
    let result = null;
    try {
      result = await api("GET", `/api/tasks/${item.taskId}/`, undefined, {}, { timeoutMs: REQUEST_TIMEOUT_MS });
    } catch (_) { /* said below */ }
    if (!result || result.status !== 200 || !result.data) {
      say(`Task ${item.taskId} cannot be opened again (no longer yours, or offline): re-send or discard its label.`, true);
      return;
    }
    if (preloaded && preloaded.task_id === item.taskId) preloaded = null;
    if (current && current.task_id !== item.taskId && !preloaded) keepAsNext(current);
    current = result.data;
    render();
    // The keys belong to the task again: Enter on the still-focused Re-open would re-open it.
    if (document.activeElement) document.activeElement.blur();
  }

  // ------------------------------------------------------------------ claiming
  // A claim that fails says why (trouble: "offline", "logged-out" or null for a refusal) and
  // is retried: when the connection returns, after a login, and with backoff meanwhile.
  class ClaimError extends Error {
    constructor(message, trouble, code = "") {
      super(message);
      this.trouble = trouble;
      this.code = code;
    }
  }

  async function claim(exclude) {
    let result;
    try {
      result = await api("POST", `/api/projects/${projectId}/tasks/next/`, { exclude }, {}, { timeoutMs: REQUEST_TIMEOUT_MS });
    } catch (_) {
      throw new ClaimError("The next task loads when the connection returns.", "offline");
    }
    if (result.status === 204) return null;
    if (result.status === 200) return result.data;
    const data = result.data || {};
    if ((result.status === 401 || result.status === 403) && !(await outbox.sessionAlive())) {
      throw new ClaimError("The next task loads once you are logged in again.", "logged-out");
    }
    if (result.status === 409 && data.error === "too_many_leases") {
      // The tasks this annotator holds are the ones whose labels still wait in the outbox.
      throw new ClaimError("The next task loads once your labels are saved.", null, "too_many_leases");
    }
    throw new ClaimError(data.detail || `Could not get a task (${result.status}); trying again.`, null);
  }

  function pendingTaskIds() {
    return outbox.pending().map((item) => item.taskId);
  }

  // The server caps the leases an annotator holds (the task on screen and the preloaded one),
  // and a task whose label is still on its way holds its lease until the label is stored. So
  // a claim waits for the labels just sent (at most LABEL_WAIT_MS: a label whose request hangs
  // must not keep the next task away), and one the cap refused is sent again the moment a
  // label is stored, not after a backoff.
  const LABEL_WAIT_MS = 2_000;
  let preloading = null; // the preload in flight (waiting for labels, then claiming), if any
  let preloadRefused = false; // the last preload hit the lease cap: retry when a label is stored
  let claimWaitsForLabels = false; // likewise for the claim of the task on screen

  function settledOrLater(promise, ms) {
    let timer;
    const later = new Promise((resolve) => { timer = setTimeout(resolve, ms); });
    return Promise.race([promise, later]).finally(() => clearTimeout(timer));
  }

  // A task put back as the next one (re-opening a refused label, an undo) wins over a preload
  // still on its way: that claim's answer is dropped (its lease, if any, is held, and the
  // server hands held tasks back first).
  let nextEpoch = 0;
  function keepAsNext(task) {
    nextEpoch += 1;
    preloaded = task;
  }

  // Set at once, so that an answer given while labels are still on their way waits for this
  // preload instead of sending a claim of its own that the lease cap would refuse.
  function preload(labelsSent = null) {
    if (!current || preloaded || preloading) return preloading;
    preloadRefused = false;
    const epoch = nextEpoch;
    preloading = (labelsSent ? settledOrLater(labelsSent, LABEL_WAIT_MS) : Promise.resolve())
      .then(() => claim([...(current ? [current.task_id] : []), ...pendingTaskIds()]))
      .then((task) => {
        if (epoch !== nextEpoch) return;
        preloaded = task;
        setClaimTrouble(null);
      })
      .catch((error) => {
        if (epoch !== nextEpoch) return;
        preloaded = null;
        preloadRefused = error.code === "too_many_leases";
      })
      .finally(() => { preloading = null; });
    return preloading;
  }

  function labelStored() {
    if (claimWaitsForLabels) {
      claimWaitsForLabels = false;
      clearTimeout(claimTimer);
      showNext();
    } else if (preloadRefused) {
      preload();
    }
  }

  let showing = null; // the showNext in flight: the online event, a timer and a submit may race
  let claimRetries = 0;
  let claimTimer = null;

  function showNext() {
    if (!showing) showing = showNextOnce().finally(() => { showing = null; });
    return showing;
  }

  async function showNextOnce() {
    clearTimeout(claimTimer);
    claimWaitsForLabels = false;
    if (preloading) await preloading;
    let task;
    try {
      task = preloaded || (await claim(pendingTaskIds()));
    } catch (error) {
      current = null;
      preloaded = null;
      view = null;
      claimWaitsForLabels = error.code === "too_many_leases";
      setClaimTrouble(error.trouble);
      taskBox.replaceChildren(el("div", { class: "card empty", "data-testid": "waiting", text: error.message }));
      say(error.trouble ? "" : error.message, !error.trouble);
      claimTimer = setTimeout(reconnect, Math.min(backoffMs(claimRetries++), 10_000));
      return;
    }
    preloaded = null;
    claimRetries = 0;
    setClaimTrouble(null);
    current = task;
    render();
    if (current) preload();
  }

  // The connection may be back (the online event, a retry timer, a login in another tab):
  // send what waits, then take up claiming where it stopped.
  function reconnect() {
    if (claimTrouble === "offline" || outbox.connection() === "offline") {
      reconnecting = true;
      showConnection();
    }
    return flushOutbox()
      .then(() => (current ? preload() : showNext()))
      .finally(() => {
        reconnecting = false;
        showConnection();
      });
  }

  async function refreshProgress() {
    let result;
    try {
      result = await api("GET", `/api/projects/${projectId}/progress/`, undefined, {}, { timeoutMs: REQUEST_TIMEOUT_MS });
    } catch (_) {
      return null; // offline: the count is refreshed after the next label
    }
    if (result.status !== 200 || !result.data) return null;
    const open = result.data.tasks_open;
    remainingBox.textContent = String(open);
    const why = taskBox.querySelector("[data-testid=no-task-reason]");
    if (why) {
      why.textContent = open
        ? `${open} task${open > 1 ? "s are" : " is"} still open: held by other annotators right now, or already labelled or skipped by you.`
        : "";
    }
    return result.data;
  }

  // ------------------------------------------------------------------ rendering
  // The flags this project allows (data-flags, in the project's order): the API refuses any
  // other, so a box for one would only turn a label into a "needs attention" item.
  const allowedFlags = (root.dataset.flags || "").split(",").filter(Boolean);
  const FLAG_NAMES = { unsafe: "Unsafe", personal_data: "Contains personal data", spam: "Spam / garbage" };

  function flagsBox(state) {
    if (!allowedFlags.length) return null;
    const box = el("div", { class: "flags", "data-testid": "flags" });
    for (const [value, name] of allowedFlags.map((flag) => [flag, FLAG_NAMES[flag] || flag])) {
      const input = el("input", { type: "checkbox", value });
      input.checked = state.flags.has(value);
      input.addEventListener("change", () => (input.checked ? state.flags.add(value) : state.flags.delete(value)));
      box.append(el("label", { class: "inline" }, input, ` ${name}`));
    }
    return box;
  }

  // Nothing to claim while the project still counts open tasks: say why, and lead home.
  function emptyQueue() {
    refreshProgress();
    return el("div", { class: "card empty", "data-testid": "no-task" },
      el("p", { text: "No task is waiting for you in this project. Thank you!" }),
      el("p", { "data-testid": "no-task-reason" }),
      el("p", {}, el("a", { href: homeUrl, text: "Back to your projects", "data-testid": "home-link" })));
  }

  function render() {
    taskBox.replaceChildren();
    if (!current) {
      view = null;
      taskBox.append(emptyQueue());
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
    const flags = flagsBox(view.state);
    if (flags) taskBox.append(flags);
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
        kind: current.kind,
        body: { payload, flags: Array.from(view.state.flags), duration_ms: Math.max(0, visibleMs) },
      };
      outbox.add(item);
      offerUndo({ taskId: item.taskId, what: "label", key: item.key });
      // A new label for a task replaces the refused one waiting in the tray (the server hands
      // a refused task back with the next claim while its lease lasts).
      for (const refused of outbox.tray()) if (refused.taskId === item.taskId) outbox.discard(refused.key);
      if (preloading) await preloading;
      // Show the preloaded task at once; the label travels in the background.
      current = preloaded;
      preloaded = null;
      if (current) render();
      else taskBox.replaceChildren(el("div", { class: "card empty", text: "Loading the next task…" }));
    } finally {
      submitting = false;
    }
    flushOutbox();
    if (current) {
      // Every label on its way, the one just sent and any a periodic flush sent before it.
      await preload(outbox.settled());
    } else {
      // Claim at once: a label whose request hangs must not keep the next task away. (When
      // the lease cap refuses, the claim is retried once labels are saved.)
      await showNext();
    }
    refreshProgress();
  }

  async function skipCurrent() {
    if (!current) return;
    const taskId = current.task_id;
    let result = null;
    try {
      result = await api("POST", `/api/tasks/${taskId}/skip/`, { reason: "" }, {}, { timeoutMs: REQUEST_TIMEOUT_MS });
    } catch (_) { /* offline: said below */ }
    if (!result || result.status !== 200) { say("Could not skip this task; try again.", true); return; }
    offerUndo({ taskId, what: "skip" });
    await showNext();
  }

  // ------------------------------------------------------------------ undo
  // The last submit or skip can be undone for undoSeconds (the server's window,
  // TANDEM_UNDO_SECONDS): the label is withdrawn or the skip taken back, and the task comes
  // back on screen; the task that was showing waits as the next one.
  let last = null; // { taskId, what: "label" | "skip", key }
  let undoTimer = null;

  function offerUndo(done) {
    if (!undoSeconds) return;
    last = done;
    undoBar.querySelector("[data-testid=undo-text]").textContent =
      `Task ${done.taskId} ${done.what === "label" ? "submitted" : "skipped"}.`;
    undoBar.hidden = false;
    clearTimeout(undoTimer);
    undoTimer = setTimeout(forgetUndo, undoSeconds * 1000);
  }

  function forgetUndo() {
    last = null;
    undoBar.hidden = true;
    clearTimeout(undoTimer);
  }

  let undoing = false;

  async function undoLast() {
    if (!last || undoing) return;
    const { taskId, what, key } = last;
    undoing = true;
    try {
      // A label still in the outbox is sent first: the server undoes what it stored.
      if (what === "label") await flushOutbox();
      if (what === "label" && outbox.pending().some((item) => item.key === key)) {
        say("This label has not reached the server yet: undo once you are back online.", true);
        return;
      }
      let result = null;
      try {
        result = await api("POST", `/api/tasks/${taskId}/undo/`, undefined, {}, { timeoutMs: REQUEST_TIMEOUT_MS });
      } catch (_) { /* offline: said below */ }
      if (!result || result.status !== 200) {
        const detail = result && result.data && result.data.detail;
        if (result && result.status === 409) forgetUndo();
        say(detail ? `Cannot undo: ${detail}.` : "Could not undo; try again.", true);
        return;
      }
      forgetUndo();
      if (what === "label") doneBox.textContent = String(Math.max(0, Number(doneBox.textContent || 0) - 1));
      if (current && current.task_id !== taskId) keepAsNext(current);
      current = result.data;
      render();
      if (document.activeElement) document.activeElement.blur();
      say(`Task ${taskId}: ${what === "label" ? "your label was withdrawn" : "skip undone"}; answer it again.`);
      refreshProgress();
    } finally {
      undoing = false;
    }
  }

  async function heartbeat() {
    for (const task of [current, preloaded]) {
      if (task) {
        try {
          await api("POST", `/api/tasks/${task.task_id}/heartbeat/`, undefined, {}, { timeoutMs: REQUEST_TIMEOUT_MS });
        } catch (_) { /* retried next beat */ }
      }
    }
  }

  // ------------------------------------------------------------------ keyboard
  // Enter submits, as the submit button says, whatever has the focus inside the task: a choice
  // button the mouse clicked keeps the focus, and the browser's own Enter would click it again.
  // Only links, Skip and the buttons outside the task (the tray, the help) act on Enter
  // themselves, and a text field keeps Enter for new lines (Ctrl+Enter submits there).
  function enterActsOnItsOwn(focused) {
    if (!focused) return false;
    if (focused.tagName === "A") return true;
    if (focused.tagName !== "BUTTON") return false;
    return !taskBox.contains(focused) || focused.dataset.testid === "skip";
  }

  function onKey(event) {
    const focused = document.activeElement;
    const tag = focused && focused.tagName;
    const inField = ["TEXTAREA", "INPUT", "SELECT"].includes(tag);
    const inTextField = inField && !(tag === "INPUT" && ["checkbox", "radio"].includes(focused.type));
    if (event.key === "Escape" && !helpBox.hidden) { helpBox.hidden = true; return; }
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); submitCurrent(); return; }
    if (event.key === "Enter" && current && !inTextField && !enterActsOnItsOwn(focused)) {
      event.preventDefault();
      submitCurrent();
      return;
    }
    if (inField) return;
    if (event.key === "?") { helpBox.hidden = !helpBox.hidden; return; }
    if ((event.key === "z" || event.key === "Z") && (event.ctrlKey || event.metaKey)) { event.preventDefault(); undoLast(); return; }
    if ((event.key === "u" || event.key === "U") && !event.ctrlKey && !event.metaKey && !event.altKey) { undoLast(); return; }
    if (!current) return;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (key === "Enter") return;
    if (key === "s") { skipCurrent(); return; }
    kindOf(current).keys(view, key, event);
  }

  document.addEventListener("keydown", onKey);
  helpBox.querySelector("[data-testid=help-close]").addEventListener("click", () => { helpBox.hidden = true; });
  undoBar.querySelector("[data-testid=undo]").addEventListener("click", undoLast);
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) hiddenSince = performance.now();
    else if (hiddenSince !== null) { hiddenMs += performance.now() - hiddenSince; hiddenSince = null; }
  });
  window.addEventListener("online", reconnect);
  window.addEventListener("offline", showConnection);
  setInterval(flushOutbox, 5000);
  setInterval(heartbeat, Math.max(15, leaseSeconds / 3) * 1000);

  outbox.changed();
  flushOutbox().then(showNext);
}

const root = document.getElementById("annotate");
if (root) start(root);
