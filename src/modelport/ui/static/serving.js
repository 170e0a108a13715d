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

  const CSS_OF = { READY: "ok", LOADING: "warn" };
  function mark(node, state) {
    node.textContent = state;
    node.className = "state " + (CSS_OF[state] || "bad");
  }

  /* the state and reason of each row as the repository index reports them now; a version
     loaded or dropped since the page was drawn is announced (the table keeps its rows) */
  function states(data) {
    const seen = new Set();
    for (const m of data.models) {
      const ref = m.name + ":" + (m.version === null ? "" : m.version);
      seen.add(ref);
      const state = document.querySelector('#models [data-ref="' + CSS.escape(ref) + '"]');
      const reason = document.querySelector('#models [data-reason="' + CSS.escape(ref) + '"]');
      if (state) mark(state, m.state);
      if (reason) reason.textContent = m.reason || "—";
    }
    const shown = [...document.querySelectorAll("#models [data-ref]")];
    for (const node of shown) if (!seen.has(node.dataset.ref)) mark(node, "not loaded");
    const changed = shown.length !== seen.size || shown.some(n => !seen.has(n.dataset.ref));
    const banner = document.getElementById("changed");
    if (banner && changed) {
      banner.textContent = "The loaded versions changed since this page was drawn: reload to see them.";
      banner.hidden = false;
    }
    const ready = document.querySelector("#ready .state");
    if (ready) mark(ready, data.ready ? "READY" : "LOADING");
  }

  function draw(data) {
    states(data);
    for (const svg of box.querySelectorAll("svg[data-series]")) {
      const key = svg.dataset.series;
      const series = MP.ago(lines(data, key));
      MP.lineChart(svg, series, { unit: svg.dataset.unit });
      MP.legend(document.getElementById("legend-" + key), series);
    }
    const note = document.getElementById("live-note");
    if (note) note.textContent = data.series.samples + " samples, the last " +
      new Date().toLocaleTimeString() + "; x axis: seconds ago.";
  }

  MP.api("GET", box.dataset.url).then(r => { if (r.status === 200) draw(r.data); });
  MP.live(box.dataset.url, 2000, draw);
})();
