// Tandem run page: live curves, step, ETA, tokens/s and log tail of one training run.
//
// The database is the truth and the websocket only a hint: on every (re)connect the page
// rebuilds its state from the API (run + metric series), holding back websocket points that
// arrive meanwhile and applying only those newer than the API's `last_id`. A message that
// reports a new attempt (the run resumed after a lost worker) triggers a full resync too,
// since points after the resumed checkpoint were replaced. While the websocket is down (a
// server without websockets, a proxy that drops them) the page polls the API instead.
//
// Charts use Chart.js (the vendored UMD build, as on run comparison), with tooltips; the
// artifacts, the record and the "registered as version N" link are filled from the API as
// soon as the run ends and again whenever its revision moves (the registry's hand-over
// bumps it after registering the candidate).
import { el, getJson } from "../frontend/dom.js";

const COLORS = ["#2f6fdb", "#d9480f", "#2b8a3e", "#862e9c", "#c2255c", "#5c940d"];
const POLL_MS = 3000;

function start(root) {
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
  let socketOpen = false;
  let retryMs = 1000;
  let pollTimer = null;
  let detailRevision = null; // the run revision whose artifacts and record are on screen
  let logFilled = false;
  const charts = new Map(); // key -> Chart

  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;

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
      // The log opens at its newest line, and follows new lines while the reader is at the
      // end (not while they scrolled up to read).
      const atEnd = !logFilled || log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.textContent = logTail;
      if (atEnd) log.scrollTop = log.scrollHeight;
      logFilled = true;
    }
  }

  // What only the run's detail holds: artifacts, the record, the candidate version.
  function renderDetail(run) {
    detailRevision = run.revision;
    const candidate = $("[data-testid=run-candidate-slot]");
    if (candidate) {
      candidate.replaceChildren();
      if (run.candidate_version) {
        candidate.append(" · registered as ", el("a", {
          href: root.dataset.versionUrl.replace(/0\/$/, `${run.candidate_version}/`),
          "data-testid": "run-candidate",
          text: `version ${run.candidate_version}`,
        }));
      }
    }
    const artifacts = $("[data-testid=artifacts-box]");
    if (artifacts && (run.artifacts || []).length) {
      const base = root.dataset.artifactUrl.replace(/_$/, "");
      artifacts.replaceChildren(
        el("p", { class: "muted" }, el("code", { text: run.artifact_dir || "" })),
        el("table", { class: "table compact", "data-testid": "artifacts" },
          el("thead", {}, el("tr", {}, ...["File", "Bytes", "sha256"].map((t) => el("th", { text: t })))),
          el("tbody", {}, ...run.artifacts.map((a) => el("tr", {},
            el("td", {}, el("a", { href: `${base}${a.path.split("/").map(encodeURIComponent).join("/")}`, text: a.path })),
            el("td", { text: String(a.bytes) }),
            el("td", {}, el("code", { text: `${String(a.sha256 || "").slice(0, 17)}…` })))))),
      );
    }
    const record = (testid, text) => { const box = $(`[data-testid=${testid}]`); if (box) box.textContent = text; };
    record("record-code", run.code_version || "—");
    record("record-libraries", Object.entries(run.library_versions || {}).map(([k, v]) => `${k} ${v}`).join(" · ") || "—");
    record("record-data", run.data_path || "—");
    record("record-checkpoints", (run.checkpoints || []).map((c) => `step ${c.global_step} (attempt ${c.attempt})`).join(", ") || "—");
  }

  let detailLoading = false;
  async function refreshDetail() {
    if (detailLoading) return;
    detailLoading = true;
    try {
      renderDetail(await getJson(root.dataset.api));
    } catch (_) {
      /* the next message or poll tries again */
    } finally {
      detailLoading = false;
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
  function chartFor(key) {
    let chart = charts.get(key);
    if (chart) return chart;
    const canvas = root.querySelector(`[data-chart=${key}]`);
    chart = new Chart(canvas, {
      type: "line",
      data: { datasets: [] },
      options: {
        parsing: false,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        scales: { x: { type: "linear", title: { display: true, text: "step" } } },
        plugins: {
          legend: { position: "bottom" },
          tooltip: {
            callbacks: {
              title: (items) => (items.length ? `step ${items[0].parsed.x}` : ""),
              label: (item) => `${item.dataset.label}: ${fmt(item.parsed.y)}`,
            },
          },
        },
      },
    });
    charts.set(key, chart);
    return chart;
  }

  function drawChart(key) {
    const canvas = root.querySelector(`[data-chart=${key}]`);
    const names = [...series.keys()].filter(CHARTS[key]).sort().slice(0, 6);
    const empty = root.querySelector(`[data-empty=${key}]`);
    if (empty) empty.hidden = names.length > 0;
    canvas.dataset.series = names.join(",");
    if (!names.length && !charts.has(key)) return;
    const chart = chartFor(key);
    chart.data.datasets = names.map((name, i) => ({
      label: `${name} ${fmt(series.get(name)[series.get(name).length - 1][1])}`,
      data: series.get(name).map(([x, y]) => ({ x, y })),
      borderColor: COLORS[i],
      backgroundColor: COLORS[i],
      borderWidth: 1.6,
      pointRadius: 0,
      pointHitRadius: 6,
    }));
    chart.update("none");
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
    if (TERMINAL.includes(message.run.status) && message.run.revision !== detailRevision) refreshDetail();
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
      renderDetail(run);
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
      socketOpen = true;
      clearInterval(pollTimer);
      pollTimer = null;
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
      socketOpen = false;
      $("[data-testid=connection]").textContent = "reconnecting… (polling meanwhile)";
      // Without the websocket the API is polled, so the page stays live all the same.
      if (!pollTimer) pollTimer = setInterval(() => { if (!socketOpen) resync(); }, POLL_MS);
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
    });
  }

  resync();
  connect();
}

const root = document.getElementById("run-live");
if (root) start(root);
