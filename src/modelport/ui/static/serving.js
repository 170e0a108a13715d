/* The Serving page: poll /ui/api/serving every 2 s while visible and redraw the live charts.
   Each chart is an <svg data-series="rps"> filled by MP.lineChart; x is seconds ago. After the
   first answer the page asks only for the points after the last one it has (?since=ms), keeps
   them here, and forgets those older than the server keeps (KEEP_S). */
(function () {
  "use strict";
  const box = document.getElementById("charts");
  if (!box || !window.MP) return;
  const LATENCY = [["p50_ms", "p50"], ["p90_ms", "p90"], ["p99_ms", "p99"]];
  const KEEP_S = 600;
  const kept = { versions: {}, all: {}, samples: 0 };
  let last = 0;

  function append(into, from, oldest) {
    for (const [name, points] of Object.entries(from)) {
      const mine = (into[name] || []).concat(points).filter(p => p[0] >= oldest);
      into[name] = mine;
      for (const p of points) last = Math.max(last, p[0]);
    }
  }

  function merge(series) {
    const oldest = last - KEEP_S;  // the server's clock, as its points carry it
    for (const [ref, figures] of Object.entries(series.versions)) {
      append(kept.versions[ref] = kept.versions[ref] || {}, figures, oldest);
    }
    append(kept.all, series.all, oldest);
    kept.samples = series.samples;
  }

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
    merge(data.series);
    data = { ...data, series: kept };
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

  async function tick() {
    if (document.visibilityState === "visible") {
      try {
        const url = box.dataset.url + (last ? "?since=" + Math.ceil(last * 1000) : "");
        const reply = await MP.api("GET", url);
        if (reply.status === 200) draw(reply.data);
      } catch (e) { /* the next tick tries again */ }
    }
    setTimeout(tick, 2000);
  }
  tick();
})();
