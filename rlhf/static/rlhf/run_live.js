// Tandem run page: live curves, step, ETA, tokens/s and log tail of one training run.
//
// The database is the truth and the websocket only a hint: on every (re)connect the page
// rebuilds its state from the API (run + metric series), holding back websocket points that
// arrive meanwhile and applying only those newer than the API's `last_id`. A message that
// reports a new attempt (the run resumed after a lost worker) triggers a full resync too,
// since points after the resumed checkpoint were replaced. Charts are plain SVG built here
// (no library, no inline script or style: the page runs under a strict CSP).
import { el, getJson, svgEl } from "../frontend/dom.js";

function start(root) {
  const W = 480, H = 220, PAD = { left: 52, right: 10, top: 10, bottom: 24 };
  const CHARTS = {
    loss: (n) => /(^|[/_])loss$/.test(n),
    accuracy: (n) => /accuracy/.test(n),
    reward: (n) => /reward|margin|score/.test(n) && !/loss/.test(n),
    kl: (n) => /(^|[/_])kl($|[/_])|kl_coef/.test(n),
    throughput: (n) => n === "tokens_per_s",
    lr: (n) => n === "learning_rate",
  };
  const TERMINAL = ["succeeded", "failed", "cancelled"];

  const $ = (sel) => root.querySelector(sel);
  let series = new Map(); // name -> [[step, value], ...] sorted by step
  let lastId = 0;
  let attempt = null;
  let syncing = false;
  let held = []; // websocket messages that arrived during a resync
  let socket = null;
  let retryMs = 1000;

  // ------------------------------------------------------------------ state
  function fmtSeconds(s) {
    if (s === null || s === undefined) return "—";
    s = Math.max(0, Math.round(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return h ? `${h} h ${m} min` : m ? `${m} min ${sec} s` : `${sec} s`;
  }

  function fmt(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "—";
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(3) : v.toPrecision(4);
  }

  function renderRun(run, logTail) {
    const p = run.progress || {};
    const badge = $("[data-testid=status]");
    badge.textContent = run.status;
    badge.className = `badge run-${run.status}`;
    $("[data-testid=step]").textContent = `${p.step ?? 0} / ${p.total_steps || "?"}`;
    const bar = $("[data-testid=progress]");
    bar.max = p.total_steps || 1;
    bar.value = p.step || 0;
    $("[data-testid=eta]").textContent = TERMINAL.includes(run.status) ? "—" : fmtSeconds(p.eta_s);
    $("[data-testid=tokens-per-s]").textContent = p.tokens_per_s ? Math.round(p.tokens_per_s) : "—";
    $("[data-testid=loss]").textContent = fmt(p.loss);
    $("[data-testid=attempt]").textContent = String(run.attempt);
    $("[data-testid=worker]").textContent = `${run.worker || "—"} ${run.device || ""}`;
    $("[data-testid=heartbeat]").textContent = run.heartbeat_at ? new Date(run.heartbeat_at).toLocaleTimeString() : "—";
    const error = $("[data-testid=error]");
    error.hidden = !run.error;
    error.textContent = (run.error || "").slice(0, 600);
    const cancel = root.querySelector("[data-testid=cancel-form]");
    if (cancel) cancel.hidden = TERMINAL.includes(run.status);
    const retry = root.querySelector("[data-testid=retry-form]");
    if (retry) retry.hidden = !["failed", "cancelled"].includes(run.status);
    if (typeof logTail === "string") {
      const log = $("[data-testid=log]");
      const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.textContent = logTail;
      if (atEnd) log.scrollTop = log.scrollHeight;
    }
  }

  function addPoint(name, step, value) {
    let points = series.get(name);
    if (!points) series.set(name, (points = []));
    if (!points.length || points[points.length - 1][0] < step) points.push([step, value]);
    else {
      // Out of order (or the same step again): keep the list sorted, the newest value wins.
      const i = points.findIndex((p) => p[0] >= step);
      if (points[i][0] === step) points[i] = [step, value];
      else points.splice(i, 0, [step, value]);
    }
  }

  // ------------------------------------------------------------------ charts
  function drawChart(key) {
    const svg = root.querySelector(`[data-chart=${key}]`);
    const legend = root.querySelector(`[data-legend=${key}]`);
    const names = [...series.keys()].filter(CHARTS[key]).sort().slice(0, 6);
    svg.replaceChildren();
    legend.replaceChildren();
    const all = names.flatMap((n) => series.get(n));
    if (!all.length) {
      const note = svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty-note" });
      note.textContent = "no points yet";
      svg.append(note);
      return;
    }
    let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
    let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) { y0 -= Math.abs(y0) * 0.05 || 0.5; y1 += Math.abs(y1) * 0.05 || 0.5; }
    const sx = (x) => PAD.left + ((x - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
    const sy = (y) => H - PAD.bottom - ((y - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);
    svg.append(svgEl("line", { x1: PAD.left, y1: H - PAD.bottom, x2: W - PAD.right, y2: H - PAD.bottom, class: "axis" }));
    svg.append(svgEl("line", { x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: H - PAD.bottom, class: "axis" }));
    for (const [y, anchor] of [[y0, H - PAD.bottom], [y1, PAD.top + 8], [(y0 + y1) / 2, (H - PAD.bottom + PAD.top) / 2 + 4]]) {
      const t = svgEl("text", { x: PAD.left - 4, y: anchor, "text-anchor": "end", class: "tick" });
      t.textContent = fmt(y);
      svg.append(t);
    }
    for (const [x, anchor] of [[x0, "start"], [x1, "end"]]) {
      const t = svgEl("text", { x: sx(x), y: H - 6, "text-anchor": anchor, class: "tick" });
      t.textContent = `step ${Math.round(x)}`;
      svg.append(t);
    }
    names.forEach((name, i) => {
      const points = series.get(name);
      const d = points.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
      svg.append(svgEl("polyline", { points: d, class: `line series-${i}`, "data-series": name }));
      legend.append(el("li", { class: `series-${i}` }, el("span", { text: `${name} ${fmt(points[points.length - 1][1])}` })));
    });
  }

  let drawPending = false;
  function redraw() {
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(() => {
      drawPending = false;
      for (const key of Object.keys(CHARTS)) drawChart(key);
      const body = $("[data-testid=latest]");
      body.replaceChildren();
      for (const name of [...series.keys()].sort()) {
        const points = series.get(name);
        const cells = [name, `step ${points[points.length - 1][0]}`, fmt(points[points.length - 1][1])];
        body.append(el("tr", {}, ...cells.map((text) => el("td", { text }))));
      }
    });
  }

  // ------------------------------------------------------------------ sync
  function apply(message) {
    if (attempt !== null && message.run.attempt !== attempt) {
      resync();
      return;
    }
    for (const [id, name, step, value] of message.points || []) {
      if (id > lastId) {
        addPoint(name, step, value);
        lastId = id;
      }
    }
    renderRun(message.run, message.log_tail);
    redraw();
  }

  async function resync() {
    if (syncing) return;
    syncing = true;
    held = [];
    try {
      const [run, metrics] = await Promise.all([
        getJson(root.dataset.api),
        getJson(`${root.dataset.metrics}?max_points=2000`),
      ]);
      series = new Map();
      for (const [name, points] of Object.entries(metrics.series)) {
        for (const [step, value] of points) addPoint(name, step, value);
      }
      lastId = metrics.last_id;
      attempt = run.attempt;
      renderRun(run, run.log_tail);
      redraw();
    } catch (err) {
      $("[data-testid=connection]").textContent = `could not load the run (${err.message}); retrying`;
      setTimeout(resync, 3000);
    } finally {
      syncing = false;
      const pending = held;
      held = [];
      for (const message of pending) apply(message);
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}${root.dataset.ws}`);
    socket.addEventListener("open", () => {
      retryMs = 1000;
      $("[data-testid=connection]").textContent = "live";
      resync();
    });
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (message.type !== "run.update") return;
      if (syncing) held.push(message);
      else apply(message);
    });
    socket.addEventListener("close", () => {
      $("[data-testid=connection]").textContent = "reconnecting…";
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
    });
  }

  resync();
  connect();
}

const root = document.getElementById("run-live");
if (root) start(root);
