/* The Monitoring page: every 5 s while visible, redraw each tracked version's PSI per feature
   over time (one line per feature, and the PSI threshold) from /ui/api/monitoring; x is
   seconds ago. */
(function () {
  "use strict";
  const box = document.getElementById("drift");
  if (!box || !window.MP) return;

  function draw(data) {
    const now = Date.now() / 1000;
    for (const svg of box.querySelectorAll("svg[data-ref]")) {
      const ref = svg.dataset.ref;
      const features = data.history[ref] || {};
      const series = Object.entries(features).map(([name, points]) => ({
        name, points: points.filter(p => p[1] !== null).map(p => [p[0] - now, p[1]]),
      }));
      const version = data.versions.find(v => v.model + ":" + v.version === ref);
      const times = series.flatMap(s => s.points.map(p => p[0]));
      if (version && times.length) {
        const psi = version.thresholds.psi;
        series.push({ name: "PSI threshold", points: [[Math.min(...times), psi], [Math.max(...times), psi]] });
      }
      MP.lineChart(svg, series, {});
      const list = box.querySelector('ul[data-legend="' + CSS.escape(ref) + '"]');
      if (!list) continue;
      list.replaceChildren(...series.map((s, i) => {
        const li = document.createElement("li");
        const sw = document.createElement("span");
        sw.className = "swatch s" + (i % 5 + 1);
        li.append(sw, document.createTextNode(s.name));
        return li;
      }));
    }
  }

  MP.api("GET", box.dataset.url).then(r => { if (r.status === 200) draw(r.data); });
  MP.live(box.dataset.url, 5000, draw);
})();
