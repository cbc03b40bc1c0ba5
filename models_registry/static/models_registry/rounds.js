// Rounds page: reward-model held-out accuracy and blind win rate (with its 95% interval as
// error bars drawn by a small plugin) against the labels in each round's snapshot, from the
// canvas's data-chart attribute (JSON, HTML-escaped by the template). No inline script (CSP).
(function () {
  "use strict";
  const canvas = document.getElementById("rounds-chart");
  if (!canvas || !canvas.dataset.chart || typeof Chart === "undefined") return;
  const data = JSON.parse(canvas.dataset.chart);
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  const intervals = {
    id: "winRateIntervals",
    afterDatasetsDraw(chart) {
      const meta = chart.getDatasetMeta(1);
      const y = chart.scales.y;
      const ctx = chart.ctx;
      ctx.save();
      ctx.strokeStyle = "#1f8a4c";
      meta.data.forEach((point, i) => {
        const item = data.win_rate[i];
        ctx.beginPath();
        ctx.moveTo(point.x, y.getPixelForValue(item.low));
        ctx.lineTo(point.x, y.getPixelForValue(item.high));
        ctx.stroke();
      });
      ctx.restore();
    },
  };
  new Chart(canvas, {
    type: "line",
    data: {
      datasets: [
        { label: "Reward-model held-out accuracy", data: data.accuracy, borderColor: "#2f6fb0",
          backgroundColor: "#2f6fb0" },
        { label: "Blind win rate (95% CI)", data: data.win_rate, borderColor: "#1f8a4c",
          backgroundColor: "#1f8a4c" },
      ],
    },
    options: {
      parsing: { xAxisKey: "x", yAxisKey: "y" },
      scales: {
        x: { type: "linear", title: { display: true, text: "Labels in the round's snapshot" } },
        y: { min: 0, max: 1 },
      },
    },
    plugins: [intervals],
  });
  canvas.dataset.drawn = "true";
  canvas.dataset.points = String(data.accuracy.length + data.win_rate.length);
})();
