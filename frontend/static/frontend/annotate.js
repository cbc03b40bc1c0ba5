// Tandem annotation page: keyboard-first, preloads the next task, and never loses a label.
//
// Every submitted label goes first into an outbox in localStorage with its own
// Idempotency-Key; it leaves the outbox only once the server has acknowledged it (201/200),
// or refused it for good (4xx). A dropped connection or a reload retries with the same key,
// so the server stores the label exactly once.
//
// Untrusted text: prompt and response HTML comes from the server already sanitised (Markdown
// through nh3) and the page's Content-Security-Policy forbids inline scripts; everything else
// is set with textContent.
(() => {
  "use strict";
  const root = document.getElementById("annotate");
  if (!root) return;
  const projectId = root.dataset.projectId;
  const userId = root.dataset.userId;
  const leaseSeconds = Number(root.dataset.leaseSeconds || 600);
  const taskBox = root.querySelector("[data-testid=task]");
  const statusBox = root.querySelector("[data-testid=status]");
  const outboxBox = root.querySelector("[data-testid=outbox-status]");
  const doneBox = root.querySelector("[data-testid=done-count]");
  const remainingBox = root.querySelector("[data-testid=remaining-count]");
  const helpBox = root.querySelector("[data-testid=help]");
  const OUTBOX_KEY = `tandem.outbox.${userId}`;
  const STRENGTHS = ["slight", "clear", "strong"];

  let current = null; // the task on screen
  let preloaded = null; // the next task, already claimed
  let state = {}; // the annotator's choices for the current task
  let shownAt = 0;
  let hiddenMs = 0;
  let hiddenSince = null;

  // ------------------------------------------------------------------ helpers
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-") || key === "role" || key.startsWith("aria-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  function sanitizedHtml(html) {
    // Server-sanitised HTML, parsed inertly then adopted (no script runs while parsing).
    const doc = new DOMParser().parseFromString(`<div>${html}</div>`, "text/html");
    const wrapper = doc.body.firstElementChild;
    const node = el("div", { class: "content" });
    for (const child of Array.from(wrapper.childNodes)) node.append(document.adoptNode(child));
    return node;
  }

  function cookie(name) {
    const match = document.cookie.match(new RegExp(`(?:^|; )${name}=([^;]*)`));
    return match ? decodeURIComponent(match[1]) : "";
  }

  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function api(method, url, body, headers = {}) {
    const response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": cookie("csrftoken"), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    if (response.status !== 204) {
      try { data = await response.json(); } catch (_) { data = null; }
    }
    return { status: response.status, data };
  }

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
  function renderPrompt(messages) {
    const box = el("section", { class: "card prompt", "data-testid": "prompt" });
    for (const message of messages) {
      box.append(
        el("div", { class: "message-block" },
          el("div", { class: "message-role", text: message.role }),
          sanitizedHtml(message.html)),
      );
    }
    return box;
  }

  function responseCard(response, tag) {
    const card = el("article", { class: "card response", "data-response-id": String(response.id), "data-testid": "response" });
    if (tag) card.append(el("span", { class: "side-tag", text: tag }));
    card.append(sanitizedHtml(response.html));
    return card;
  }

  function flagsBox() {
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
      taskBox.append(el("div", { class: "card empty", "data-testid": "no-task", text: "No tasks left for you in this project. Thank you!" }));
      say("");
      return;
    }
    state = { flags: new Set(), choice: null, strength: "clear", rationale: "" };
    shownAt = performance.now();
    hiddenMs = 0;
    taskBox.dataset.taskId = String(current.task_id);
    taskBox.dataset.kind = current.kind;
    taskBox.append(renderPrompt(current.prompt));
    const renderers = { pairwise: renderPairwise, ranking: renderRanking, rubric: renderRubric, correction: renderCorrection };
    taskBox.append(renderers[current.kind]());
    taskBox.append(flagsBox());
    const submit = el("button", { class: "primary", type: "button", text: "Submit (Enter)", "data-testid": "submit" });
    submit.addEventListener("click", submitCurrent);
    const skip = el("button", { type: "button", text: "Skip (S)", "data-testid": "skip" });
    skip.addEventListener("click", skipCurrent);
    taskBox.append(el("div", { class: "controls" }, submit, skip));
    say(`Task ${current.task_id}: ${current.kind}`);
  }

  // Pairwise ------------------------------------------------------------------
  function renderPairwise() {
    const [left, right] = current.responses;
    const pair = el("div", { class: "pair" }, responseCard(left, "1 · left"), responseCard(right, "2 · right"));
    const buttons = el("div", { class: "controls", "data-testid": "pairwise-controls" });
    for (const [choice, text] of [["left", "1 · Left is better"], ["right", "2 · Right is better"], ["tie", "0 · Tie"], ["both_bad", "B · Both bad"]]) {
      const button = el("button", { type: "button", text, "data-choice": choice });
      button.addEventListener("click", () => choosePair(choice));
      buttons.append(button);
    }
    const strength = el("div", { class: "strength", "data-testid": "strength" }, el("span", { text: "Strength (↑/↓):" }));
    for (const value of STRENGTHS) {
      const button = el("button", { type: "button", text: value, "data-strength": value });
      button.addEventListener("click", () => setStrength(value));
      strength.append(button);
    }
    const rationale = el("textarea", { rows: 2, placeholder: "Why? (optional)", maxLength: 5000 });
    rationale.setAttribute("data-testid", "rationale");
    rationale.addEventListener("input", () => (state.rationale = rationale.value));
    const box = el("div", {}, pair, buttons, strength, rationale);
    setTimeout(() => paintPair(), 0);
    return box;
  }

  function choosePair(choice) {
    state.choice = choice;
    paintPair();
  }

  function setStrength(value) {
    state.strength = value;
    paintPair();
  }

  function paintPair() {
    const cards = taskBox.querySelectorAll(".response");
    cards.forEach((card, i) => {
      card.classList.toggle("chosen", (state.choice === "left" && i === 0) || (state.choice === "right" && i === 1));
      card.classList.toggle("tied", state.choice === "tie");
      card.classList.toggle("both-bad", state.choice === "both_bad");
    });
    taskBox.querySelectorAll("[data-choice]").forEach((b) => b.classList.toggle("chosen-button", b.dataset.choice === state.choice));
    const decisive = state.choice === "left" || state.choice === "right";
    taskBox.querySelectorAll("[data-strength]").forEach((b) => {
      b.classList.toggle("on", decisive && b.dataset.strength === state.strength);
      b.disabled = !decisive;
    });
    taskBox.dataset.choice = state.choice || "";
    taskBox.dataset.strength = decisive ? state.strength : "";
  }

  // Ranking ---------------------------------------------------------------------
  function renderRanking() {
    state.order = current.responses.map((r) => r.id);
    state.tieUp = new Set(); // ids tied with the item above them
    state.selected = null;
    const list = el("ol", { class: "ranking", "data-testid": "ranking" });
    const byId = Object.fromEntries(current.responses.map((r) => [r.id, r]));
    for (const id of state.order) {
      const item = el("li", { class: "card rank-item", draggable: true, "data-response-id": String(id), "data-testid": "rank-item" },
        el("span", { class: "rank-pos" }), responseCard(byId[id], null));
      item.addEventListener("click", () => selectRank(id));
      item.addEventListener("dragstart", (event) => {
        event.dataTransfer.setData("text/plain", String(id));
        item.classList.add("dragging");
      });
      item.addEventListener("dragend", () => item.classList.remove("dragging"));
      item.addEventListener("dragover", (event) => event.preventDefault());
      item.addEventListener("drop", (event) => {
        event.preventDefault();
        const moved = Number(event.dataTransfer.getData("text/plain"));
        if (moved && moved !== id) moveBefore(moved, id);
      });
      list.append(item);
    }
    const tie = el("button", { type: "button", text: "= Tie selected with the one above", "data-testid": "tie-up" });
    tie.addEventListener("click", () => state.selected && toggleTie(state.selected));
    const hint = el("p", { class: "muted", text: "Drag to order best first, or select with 1–9 and move with ↑/↓." });
    setTimeout(paintRanking, 0);
    return el("div", {}, hint, list, tie);
  }

  function moveBefore(moved, target) {
    const order = state.order.filter((x) => x !== moved);
    const from = state.order.indexOf(moved);
    const to = state.order.indexOf(target);
    const index = order.indexOf(target) + (from < to ? 1 : 0);
    order.splice(index, 0, moved);
    state.order = order;
    paintRanking();
  }

  function moveSelected(delta) {
    const i = state.order.indexOf(state.selected);
    const j = i + delta;
    if (i < 0 || j < 0 || j >= state.order.length) return;
    [state.order[i], state.order[j]] = [state.order[j], state.order[i]];
    paintRanking();
  }

  function selectRank(id) {
    state.selected = id;
    paintRanking();
  }

  function toggleTie(id) {
    if (state.order.indexOf(id) === 0) return;
    if (state.tieUp.has(id)) state.tieUp.delete(id);
    else state.tieUp.add(id);
    paintRanking();
  }

  function paintRanking() {
    const list = taskBox.querySelector(".ranking");
    if (!list) return;
    const items = Object.fromEntries(Array.from(list.children).map((li) => [Number(li.dataset.responseId), li]));
    let position = 0;
    state.order.forEach((id, i) => {
      const li = items[id];
      const tied = i > 0 && state.tieUp.has(id);
      if (!tied) position = i + 1;
      li.querySelector(".rank-pos").textContent = String(position);
      li.classList.toggle("tie-up", tied);
      li.classList.toggle("selected", state.selected === id);
      list.append(li);
    });
    taskBox.dataset.order = state.order.join(",");
  }

  function rankingTiers() {
    const tiers = [];
    state.order.forEach((id, i) => {
      if (i > 0 && state.tieUp.has(id)) tiers[tiers.length - 1].push(id);
      else tiers.push([id]);
    });
    return tiers;
  }

  // Rubric ------------------------------------------------------------------------
  function renderRubric() {
    state.scores = {};
    state.focus = 0;
    const box = el("div", {});
    state.rows = [];
    for (const response of current.responses) {
      state.scores[response.id] = {};
      box.append(responseCard(response, null));
      const table = el("table", { class: "rubric-table", "data-testid": "rubric" });
      for (const dim of current.rubric) {
        const row = el("tr", { class: "rubric-row" }, el("th", { text: dim.name, title: dim.description || "" }));
        for (let v = dim.min; v <= dim.max; v++) {
          const input = el("input", { type: "radio", name: `r-${response.id}-${dim.name}`, value: String(v) });
          input.addEventListener("change", () => { state.scores[response.id][dim.name] = v; });
          row.append(el("td", {}, el("label", { class: "inline" }, input, ` ${v}`)));
        }
        state.rows.push({ row, responseId: response.id, dim });
        table.append(row);
      }
      box.append(table);
    }
    setTimeout(paintRubric, 0);
    return box;
  }

  function paintRubric() {
    state.rows.forEach((r, i) => r.row.classList.toggle("focused", i === state.focus));
  }

  function scoreFocused(value) {
    const target = state.rows[state.focus];
    if (!target || value < target.dim.min || value > target.dim.max) return;
    state.scores[target.responseId][target.dim.name] = value;
    const input = target.row.querySelector(`input[value="${value}"]`);
    if (input) input.checked = true;
    state.focus = Math.min(state.focus + 1, state.rows.length - 1);
    paintRubric();
  }

  // Correction --------------------------------------------------------------------
  function renderCorrection() {
    const original = current.responses[0];
    const editor = el("textarea", { spellcheck: true });
    editor.value = original.text;
    editor.setAttribute("data-testid", "correction-editor");
    const diff = el("div", { class: "diff", "data-testid": "diff" });
    const update = () => {
      state.corrected = editor.value;
      renderDiff(diff, original.text, editor.value);
    };
    editor.addEventListener("input", update);
    state.corrected = original.text;
    renderDiff(diff, original.text, original.text);
    return el("div", { class: "correction" },
      el("h3", { text: "Response to correct" }), responseCard(original, null),
      el("h3", { text: "Your rewrite (Ctrl+Enter submits)" }), editor,
      el("h3", { text: "Changes" }), diff);
  }

  function tokens(text) { return text.match(/\s+|[^\s]+/g) || []; }

  function renderDiff(box, before, after) {
    // Word-level longest common subsequence; fine for answers of a few thousand words.
    const a = tokens(before), b = tokens(after);
    if (a.length * b.length > 4e6) { box.textContent = "(too long to diff live)"; return; }
    const dp = Array.from({ length: a.length + 1 }, () => new Uint32Array(b.length + 1));
    for (let i = a.length - 1; i >= 0; i--)
      for (let j = b.length - 1; j >= 0; j--)
        dp[i][j] = a[i] === b[j] ? dp[i + 1][j + 1] + 1 : Math.max(dp[i + 1][j], dp[i][j + 1]);
    const out = [];
    let i = 0, j = 0;
    while (i < a.length && j < b.length) {
      if (a[i] === b[j]) { out.push(document.createTextNode(a[i])); i++; j++; }
      else if (dp[i + 1][j] >= dp[i][j + 1]) out.push(el("del", { text: a[i++] }));
      else out.push(el("ins", { text: b[j++] }));
    }
    while (i < a.length) out.push(el("del", { text: a[i++] }));
    while (j < b.length) out.push(el("ins", { text: b[j++] }));
    box.replaceChildren(...out);
  }

  // ------------------------------------------------------------------ submit & skip
  function buildPayload() {
    if (current.kind === "pairwise") {
      if (!state.choice) throw new Error("Choose 1, 2, 0 (tie) or B (both bad) first.");
      const decisive = state.choice === "left" || state.choice === "right";
      return { choice: state.choice, strength: decisive ? state.strength : null, rationale: state.rationale };
    }
    if (current.kind === "ranking") return { ranking: rankingTiers() };
    if (current.kind === "rubric") {
      for (const r of state.rows) {
        if (state.scores[r.responseId][r.dim.name] === undefined) throw new Error(`Score ${r.dim.name} first.`);
      }
      return { scores: state.scores };
    }
    if (current.kind === "correction") {
      if (!state.corrected || !state.corrected.trim()) throw new Error("The rewrite is empty.");
      return { corrected_text: state.corrected, response_id: current.responses[0].id };
    }
    throw new Error(`unknown task kind ${current.kind}`);
  }

  let submitting = false; // only while switching tasks: a second Enter must not resubmit

  async function submitCurrent() {
    if (!current || submitting) return;
    let payload;
    try { payload = buildPayload(); } catch (error) { say(error.message, true); return; }
    submitting = true;
    try {
      const visibleMs = Math.round(performance.now() - shownAt - hiddenMs);
      const item = {
        key: newKey(),
        taskId: current.task_id,
        body: { payload, flags: Array.from(state.flags), duration_ms: Math.max(0, visibleMs) },
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
    if (current.kind === "pairwise") {
      const map = { 1: "left", 2: "right", 0: "tie", t: "tie", b: "both_bad" };
      if (map[key]) { choosePair(map[key]); return; }
      const i = STRENGTHS.indexOf(state.strength);
      if (key === "ArrowUp") { event.preventDefault(); setStrength(STRENGTHS[Math.min(i + 1, 2)]); }
      if (key === "ArrowDown") { event.preventDefault(); setStrength(STRENGTHS[Math.max(i - 1, 0)]); }
    } else if (current.kind === "ranking") {
      if (/^[1-9]$/.test(key) && Number(key) <= state.order.length) selectRank(state.order[Number(key) - 1]);
      if (key === "ArrowUp") { event.preventDefault(); moveSelected(-1); }
      if (key === "ArrowDown") { event.preventDefault(); moveSelected(1); }
      if (key === "=" && state.selected) toggleTie(state.selected);
    } else if (current.kind === "rubric") {
      if (/^[0-9]$/.test(key)) scoreFocused(Number(key));
      if (key === "ArrowUp") { event.preventDefault(); state.focus = Math.max(state.focus - 1, 0); paintRubric(); }
      if (key === "ArrowDown") { event.preventDefault(); state.focus = Math.min(state.focus + 1, state.rows.length - 1); paintRubric(); }
    }
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
})();
