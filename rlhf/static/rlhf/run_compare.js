// Run comparison: every metric the compared runs logged, one Chart.js chart each with a line
// per run, an exponential-moving-average smoothing slider (TensorBoard's, debiased) and a
// log-scale toggle; plus a filter that leaves only the config rows that differ.
// Chart.js is the vendored UMD build, loaded by a classic script before this module runs.
import { el, getJson } from "../frontend/dom.js";

const COLORS = ["#2f6fdb", "#d9480f", "#2b8a3e", "#862e9c", "#c2255c", "#5c940d", "#1098ad", "#e67700"];

// EMA with the zero-initialisation bias removed, so the first points are not pulled to 0.
export function smooth(points, weight) {
  if (!weight) return points;
  let last = 0;
  return points.map(([step, value], i) => {
    last = last * weight + (1 - weight) * value;
    return [step, last / (1 - weight ** (i + 1))];
  });
}

function start(root) {
  const status = root.querySelector("[data-testid=curves-status]");
  const slider = root.querySelector("[data-testid=smoothing]");
  const sliderValue = root.querySelector("[data-testid=smoothing-value]");
  const logScale = root.querySelector("[data-testid=log-scale]");
  const grid = root.querySelector("[data-testid=charts]");
  const charts = [];
  let data = null;

  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;

  function datasets(metric) {
    const weight = Number(slider.value);
    return data.runs
      .filter((run) => data.metrics[metric][String(run.id)])
      .map((run) => {
        const color = COLORS[data.runs.indexOf(run) % COLORS.length];
        const points = smooth(data.metrics[metric][String(run.id)], weight);
        return {
          label: run.label,
          data: points.map(([x, y]) => ({ x, y })),
          borderColor: color,
          backgroundColor: color,
          borderWidth: 1.6,
          pointRadius: 0,
          pointHitRadius: 6,
        };
      });
  }

  function yScale() {
    return { type: logScale.checked ? "logarithmic" : "linear", title: { display: false } };
  }

  function draw() {
    grid.replaceChildren();
    charts.length = 0;
    for (const metric of Object.keys(data.metrics)) {
      const canvas = el("canvas", { "data-metric": metric, "aria-label": `${metric} of the compared runs`, role: "img" });
      grid.append(
        el("section", { class: "card chart", "data-testid": `compare-chart-${metric}` },
          el("h3", { text: metric }), el("div", { class: "chart-box" }, canvas)),
      );
      const chart = new Chart(canvas, {
        type: "line",
        data: { datasets: datasets(metric) },
        options: {
          parsing: false,
          interaction: { mode: "nearest", axis: "x", intersect: false },
          scales: { x: { type: "linear", title: { display: true, text: "step" } }, y: yScale() },
          plugins: {
            legend: { position: "bottom" },
            tooltip: {
              callbacks: {
                label: (item) => `${item.dataset.label}: ${Number(item.parsed.y).toPrecision(4)} (step ${item.parsed.x})`,
              },
            },
          },
        },
      });
      chart.$metric = metric;
      charts.push(chart);
    }
    root.dataset.chartCount = String(charts.length);
  }

  function update() {
    sliderValue.textContent = Number(slider.value).toFixed(2);
    for (const chart of charts) {
      chart.data.datasets = datasets(chart.$metric);
      chart.options.scales.y = yScale();
      chart.update();
    }
  }

  slider.addEventListener("input", update);
  logScale.addEventListener("change", update);

  const onlyDiff = document.querySelector("[data-testid=only-differences]");
  onlyDiff?.addEventListener("change", () => {
    for (const row of document.querySelectorAll("[data-testid=config-compare] tbody tr")) {
      row.hidden = onlyDiff.checked && row.dataset.differs !== "true";
    }
  });

  getJson(root.dataset.api)
    .then((body) => {
      data = body;
      const count = Object.keys(data.metrics).length;
      status.textContent = count ? `${count} metrics` : "No metric recorded yet by these runs.";
      draw();
    })
    .catch((error) => {
      status.textContent = `Could not load the curves (${error.message}).`;
    });
}

const root = document.getElementById("run-compare");
if (root) start(root);
