/* The Serving page: poll /ui/api/serving every 2 s while visible and redraw the live charts.
   Each chart is an <svg data-series="rps"> filled by MP.lineChart; x is seconds ago. */
(function () {
  "use strict";
  const box = document.getElementById("charts");
  if (!box || !window.MP) return;
  const LATENCY = [["p50_ms", "p50"], ["p90_ms", "p90"], ["p99_ms", "p99"]];

  function lines(data, key) {
    if (key === "latency") {
      return LATENCY.map(([k, label]) => ({ name: label, points: data.series.all[k] || [] }));
    }
    return Object.entries(data.series.versions).map(([ref, s]) => ({ name: ref, points: s[key] || [] }));
  }

  /* colours follow the series' index (as MP.lineChart draws them); series without a point
     in the window are left out of the legend */
  function legend(list, series) {
    const items = [];
    series.forEach((s, i) => {
      if (!s.points.length) return;
      const li = document.createElement("li");
      const sw = document.createElement("span");
      sw.className = "swatch s" + (i % 5 + 1);
      li.append(sw, document.createTextNode(s.name));
      items.push(li);
    });
    list.replaceChildren(...items);
  }

  function draw(data) {
    const now = Date.now() / 1000;
    for (const svg of box.querySelectorAll("svg[data-series]")) {
      const key = svg.dataset.series;
      const series = lines(data, key).map(s => ({
        name: s.name, points: s.points.map(p => [p[0] - now, p[1]]),
      }));
      MP.lineChart(svg, series, { unit: svg.dataset.unit });
      legend(document.getElementById("legend-" + key), series);
    }
    const note = document.getElementById("live-note");
    if (note) note.textContent = data.series.samples + " samples, the last " +
      new Date().toLocaleTimeString() + "; x axis: seconds ago.";
  }

  MP.api("GET", box.dataset.url).then(r => { if (r.status === 200) draw(r.data); });
  MP.live(box.dataset.url, 2000, draw);
})();
