// Quality dashboard: fetches the stored report (one JSON document) and draws it with Chart.js.
// No inline scripts or styles (the site's CSP): everything is built with DOM calls here.
// Chart.js is the vendored UMD build, loaded by a classic script before this module runs.
import { api, el, getJson, svgEl } from "./dom.js";

function start(root) {
  const statusLine = document.getElementById("quality-status");
  const OUTCOME_NAMES = { A: "A better", B: "B better", tie: "Tie", both_bad: "Both bad" };
  const BLUE = "#2f6fdb", GREEN = "#1f8a4c", RED = "#c0392b", GREY = "#98a2b3", AMBER = "#b7791f";

  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.font.family = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";

  function fmt(value, digits) {
    if (value === null || value === undefined) return "–";
    return Number(value).toFixed(digits === undefined ? 2 : digits);
  }
  function pct(value) {
    return value === null || value === undefined ? "–" : (100 * value).toFixed(0) + "%";
  }
  function kpis(report) {
    const box = document.getElementById("kpis");
    const pairwise = report.kinds.pairwise || {};
    const agreement = pairwise.agreement || {};
    const outcome = agreement.outcome || {};
    const strength = agreement.strength || {};
    const ranking = report.kinds.ranking || {};
    const progress = report.progress || {};
    const items = [
      ["Tasks done", `${progress.tasks_done ?? "–"} / ${progress.tasks_total ?? "–"}`],
      ["Labels", progress.labels],
      ["Krippendorff's α (outcome, nominal)", fmt(outcome.alpha_nominal)],
      ["Krippendorff's α (strength, ordinal)", fmt(strength.alpha_ordinal)],
      ["Fleiss' κ", fmt(outcome.fleiss_kappa)],
      ["Cohen's κ (mean of pairs)", fmt(report.cohen_kappa && report.cohen_kappa.mean)],
      ["Kendall's W (rankings)", fmt(ranking.kendall_w_mean)],
      ["Tie rate", pct(pairwise.tie_rate)],
      ["Both-bad rate", pct(pairwise.both_bad_rate)],
      ["Gold tasks", report.gold ? report.gold.tasks : "–"],
      ["Awaiting review", report.review ? report.review.pending : "–"],
    ];
    Object.entries(report.kinds)
      .filter(([kind]) => kind === "rubric")
      .forEach(([, summary]) => {
        Object.entries(summary.agreement || {}).forEach(([key, value]) => {
          items.push([`α interval · ${key.replace("rubric:", "")}`, fmt(value.alpha_interval)]);
        });
      });
    items.forEach(([name, value]) => {
      const card = el("div", { class: "kpi" });
      card.appendChild(el("div", { class: "value" }, String(value ?? "–")));
      card.appendChild(el("div", { class: "name" }, name));
      box.appendChild(card);
    });
  }

  function progressChart(report) {
    let total = 0;
    const cumulative = report.series.map((d) => (total += d.labels));
    new Chart(document.getElementById("chart-progress"), {
      data: {
        labels: report.series.map((d) => d.day),
        datasets: [
          { type: "bar", label: "Labels per day", data: report.series.map((d) => d.labels), backgroundColor: BLUE, yAxisID: "y" },
          { type: "line", label: "Tasks completed per day", data: report.series.map((d) => d.completed), borderColor: GREEN, backgroundColor: GREEN, yAxisID: "y", pointRadius: 2 },
          { type: "line", label: "Labels so far", data: cumulative, borderColor: GREY, backgroundColor: GREY, borderDash: [4, 3], yAxisID: "y2", pointRadius: 1 },
        ],
      },
      options: {
        scales: {
          y: { beginAtZero: true, title: { display: true, text: "per day" } },
          y2: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false }, title: { display: true, text: "total" } },
        },
      },
    });
  }

  function agreementChart(report) {
    new Chart(document.getElementById("chart-agreement"), {
      type: "line",
      data: {
        labels: report.series.map((d) => d.day),
        datasets: [
          { label: "That day's tasks", data: report.series.map((d) => d.alpha), borderColor: BLUE, backgroundColor: BLUE, showLine: false, pointRadius: 3 },
          { label: "All tasks so far", data: report.series.map((d) => d.alpha_cumulative), borderColor: GREEN, backgroundColor: GREEN, pointRadius: 2, spanGaps: true },
        ],
      },
      options: { scales: { y: { suggestedMin: 0, suggestedMax: 1, title: { display: true, text: "α" } } } },
    });
  }

  function distributionChart(report) {
    const pairwise = (report.kinds.pairwise || {}).distribution || {};
    const keys = ["A", "B", "tie", "both_bad"];
    new Chart(document.getElementById("chart-distribution"), {
      type: "bar",
      data: {
        labels: keys.map((k) => OUTCOME_NAMES[k]),
        datasets: [{ label: "Pairwise labels", data: keys.map((k) => pairwise[k] || 0), backgroundColor: [BLUE, BLUE, AMBER, RED] }],
      },
      options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true } } },
    });
  }

  function durationChart(report) {
    const edges = Object.values(report.kinds)[0].durations.edges_seconds;
    const counts = new Array(edges.length).fill(0);
    Object.values(report.kinds).forEach((k) => k.durations.counts.forEach((c, i) => (counts[i] += c)));
    const fast = report.config.fast_seconds;
    new Chart(document.getElementById("chart-durations"), {
      type: "bar",
      data: {
        labels: edges.map((e, i) => (i + 1 < edges.length ? `${e}–${edges[i + 1]} s` : `≥ ${e} s`)),
        datasets: [{ label: "Labels", data: counts, backgroundColor: edges.map((e) => (e < fast ? RED : BLUE)) }],
      },
      options: {
        plugins: { legend: { display: false }, tooltip: { callbacks: { footer: () => `red: under ${fast} s` } } },
        scales: { y: { beginAtZero: true }, x: { ticks: { maxRotation: 60, autoSkip: true } } },
      },
    });
  }

  // Draws the 0.5 line an unbiased annotator sits on.
  const halfLine = {
    id: "halfLine",
    afterDatasetsDraw(chart) {
      const x = chart.scales.x.getPixelForValue(0.5);
      const { top, bottom } = chart.chartArea;
      const ctx = chart.ctx;
      ctx.save();
      ctx.strokeStyle = GREY;
      ctx.setLineDash([5, 4]);
      ctx.beginPath();
      ctx.moveTo(x, top);
      ctx.lineTo(x, bottom);
      ctx.stroke();
      ctx.restore();
    },
  };

  function positionChart(report) {
    const rows = report.annotators.filter((a) => a.position_bias.decided > 0);
    new Chart(document.getElementById("chart-position"), {
      type: "bar",
      plugins: [halfLine],
      data: {
        labels: rows.map((a) => a.name),
        datasets: [{
          label: "Share of left choices",
          data: rows.map((a) => a.position_bias.share_left),
          backgroundColor: rows.map((a) => (a.position_bias.flagged ? RED : BLUE)),
        }],
      },
      options: {
        indexAxis: "y",
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              afterLabel: (item) => {
                const b = rows[item.dataIndex].position_bias;
                return `${b.left} of ${b.decided} left · p = ${b.p_value} (adjusted ${b.p_adjusted})`;
              },
            },
          },
        },
        scales: { x: { min: 0, max: 1 } },
      },
    });
  }

  function sparkline(values) {
    const width = 120, height = 24;
    const svg = svgEl("svg", { width, height, class: "sparkline", role: "img" });
    const max = Math.max(1, ...values);
    const step = values.length > 1 ? width / (values.length - 1) : width;
    const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`);
    svg.appendChild(svgEl("polyline", { points: points.join(" "), fill: "none", stroke: BLUE, "stroke-width": "1.5" }));
    const title = svgEl("title");
    title.textContent = `labels per day, last ${values.length} days (max ${max})`;
    svg.appendChild(title);
    return svg;
  }

  function annotatorTable(report) {
    const body = document.getElementById("annotator-rows");
    report.annotators.forEach((a) => {
      const tr = el("tr", { "data-annotator": a.name });
      tr.appendChild(el("td", {}, a.name));
      const spark = el("td");
      spark.appendChild(sparkline(a.sparkline.labels));
      tr.appendChild(spark);
      [
        a.labels,
        pct(a.consensus_agreement),
        fmt(a.cohen_kappa_mean),
        fmt(a.consensus_tau),
        a.gold_answered ? `${pct(a.gold_accuracy)} of ${a.gold_answered}` : "–",
        a.median_seconds === null ? "–" : `${fmt(a.median_seconds, 1)} s`,
        pct(a.fast_share),
        pct(a.skip_rate),
        pct(a.flag_rate),
        pct(a.position_bias.share_left),
      ].forEach((v) => tr.appendChild(el("td", {}, String(v))));
      const alerts = el("td");
      a.alerts.forEach((name) => alerts.appendChild(el("span", { class: "alert-tag" }, name.replace(/_/g, " "))));
      tr.appendChild(alerts);
      body.appendChild(tr);
    });
  }

  if (root.dataset.hasReport === "0") {
    statusLine.textContent = NO_REPORT;
    return;
  }
  getJson(root.dataset.reportUrl)
    .then((report) => {
      const when = report.computed_at ? new Date(report.computed_at).toLocaleString() : "";
      statusLine.textContent = `Computed ${when} · refreshed incrementally as labels arrive.`;
      root.dataset.computedAt = report.computed_at || "";
      kpis(report);
      if (Object.keys(report.kinds).length) {
        progressChart(report);
        agreementChart(report);
        distributionChart(report);
        durationChart(report);
      }
      positionChart(report);
      annotatorTable(report);
      root.dataset.rendered = "1";
    })
    .catch((error) => {
      statusLine.textContent = reportError(error);
      statusLine.classList.add("error");
    });
}

const NO_REPORT = "No quality data yet: it appears once labels arrive and a worker has computed it.";

function reportError(error) {
  if (error.status === 404) return NO_REPORT;
  if (error.status) return `Could not load the report (${error.status}).`;
  return error.message;
}

const root = document.getElementById("quality");
if (root && typeof Chart !== "undefined") start(root);

// The refresh line: when the report was computed, whether a refresh is waiting, and (for
// managers) a button that queues one; once a newer report is stored the page reloads it.
const refreshLine = document.getElementById("quality-refresh");
if (refreshLine) setUpRefresh(refreshLine);

function refreshText(state) {
  const when = state.computed_at ? new Date(state.computed_at).toLocaleString() : "never";
  let text = `Last computed: ${when}.`;
  if (state.pending && state.stale) text += " A refresh was requested but has not run; press Refresh to request it again.";
  else if (state.pending) text += " A refresh is waiting for a worker.";
  else if (state.changed_tasks) text += ` ${state.changed_tasks} changed task(s) wait for the next refresh.`;
  else text += " Up to date.";
  return text;
}

function setUpRefresh(line) {
  const url = line.dataset.refreshUrl;
  const out = line.querySelector("[data-testid=refresh-status]");
  const button = line.querySelector("[data-testid=refresh-button]");
  let shownAt = null;
  let timer = null;

  function show(state) {
    if (shownAt === null) shownAt = state.computed_at;
    if (state.computed_at && state.computed_at !== shownAt) {
      if (timer !== null) { clearInterval(timer); timer = null; }
      out.textContent = "A newer report is stored: reloading.";
      window.location.reload();
      return;
    }
    out.textContent = refreshText(state);
    line.dataset.pending = state.pending ? "1" : "0";
    if (state.pending && timer === null) timer = setInterval(poll, 3000);
    if (!state.pending && timer !== null) { clearInterval(timer); timer = null; }
  }

  function poll() {
    getJson(url).then(show).catch((error) => { out.textContent = `Could not read the refresh state (${error.status || error.message}).`; });
  }

  if (button) {
    button.addEventListener("click", async () => {
      button.disabled = true;
      const result = await api("POST", `${url}?queue=1`);
      button.disabled = false;
      if (result.status !== 200) {
        out.textContent = `The refresh was not queued: ${(result.data && result.data.detail) || result.status}`;
        return;
      }
      show(result.data);
    });
  }
  poll();
}
