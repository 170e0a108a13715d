/* The Monitoring page: every 5 s while visible, redraw each tracked version's PSI per feature
   over time (one line per feature, and the PSI threshold) from /ui/api/monitoring; x is
   seconds ago. */
(function () {
  "use strict";
  const box = document.getElementById("drift");
  if (!box || !window.MP) return;

  function draw(data) {
    for (const svg of box.querySelectorAll("svg[data-ref]")) {
      const ref = svg.dataset.ref;
      const features = data.history[ref] || {};
      const series = MP.ago(Object.entries(features).map(([name, points]) => ({
        name, points: points.filter(p => p[1] !== null),
      })));
      const version = data.versions.find(v => v.model + ":" + v.version === ref);
      const times = series.flatMap(s => s.points.map(p => p[0]));
      if (version && times.length) {
        const psi = version.thresholds.psi;
        series.push({ name: "PSI threshold", points: [[Math.min(...times), psi], [Math.max(...times), psi]] });
      }
      MP.lineChart(svg, series, {});
      const list = box.querySelector('ul[data-legend="' + CSS.escape(ref) + '"]');
      if (list) MP.legend(list, series);
    }
  }

  MP.api("GET", box.dataset.url).then(r => { if (r.status === 200) draw(r.data); });
  MP.live(box.dataset.url, 5000, draw);
})();
