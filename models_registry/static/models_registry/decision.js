// Decision page: the win-rate chart (wins / ties / losses against the champion and the 95%
// interval), drawn from the canvas's data-chart attribute (JSON, HTML-escaped by the template).
// No inline script (the site's CSP).
(function () {
  "use strict";
  const canvas = document.getElementById("win-chart");
  if (!canvas || !canvas.dataset.chart || typeof Chart === "undefined") return;
  const data = JSON.parse(canvas.dataset.chart);
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  const total = data.wins + data.ties + data.losses;
  const share = (n) => (total ? n / total : 0);
  const datasets = [
    { label: "Candidate wins", data: [share(data.wins)], backgroundColor: "#1f8a4c" },
    { label: "Ties", data: [share(data.ties)], backgroundColor: "#98a2b3" },
    { label: "Champion wins", data: [share(data.losses)], backgroundColor: "#c0392b" },
  ];
  new Chart(canvas, {
    type: "bar",
    data: { labels: ["Blind review"], datasets: datasets },
    options: {
      indexAxis: "y",
      scales: { x: { stacked: true, min: 0, max: 1 }, y: { stacked: true } },
      plugins: {
        subtitle: {
          display: data.win_rate !== null,
          text: data.win_rate === null ? "" :
            "win rate " + data.win_rate.toFixed(3) + " (95% CI " + data.ci[0].toFixed(3) + "–" +
            data.ci[1].toFixed(3) + ")" +
            (data.min_win_rate !== null ? " · required " + data.min_win_rate : ""),
        },
      },
    },
  });
  canvas.dataset.drawn = "true";
})();
