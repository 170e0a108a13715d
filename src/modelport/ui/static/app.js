/* modelport dashboard helper: fetch with the CSRF token, confirmed actions, live refresh,
   and a small SVG line chart. Hand-written, no dependencies.

   MP.api("POST", "/ui/api/...", {version: 3})  -> Promise<{status, data}>
   <form data-action data-confirm="Move production to version 3?"> ... </form>
       submitted through MP.api after a confirmation dialog; the reply is shown in a toast,
       then the page reloads (or a 409's current state is shown)
   MP.live("/ui/api/models/x", 5000, data => ...)  polls while the tab is visible
   MP.lineChart(svgElement, [{name, points: [[t, y], ...]}, ...], {unit: "ms"}) */
(function () {
  "use strict";
  const MP = {};

  MP.csrf = function () {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  };

  MP.api = async function (method, url, body) {
    const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (method !== "GET") {
      init.headers["X-CSRF-Token"] = MP.csrf();
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body || {});
    }
    const response = await fetch(url, init);
    let data = null;
    try { data = await response.json(); } catch (e) { data = { error: response.statusText }; }
    return { status: response.status, data };
  };

  MP.toast = function (text, bad) {
    const box = document.getElementById("toast");
    if (!box) return;
    const p = document.createElement("p");
    p.textContent = text;
    if (bad) p.className = "bad";
    box.replaceChildren(p);
  };

  MP.live = function (url, ms, render) {
    let timer = null;
    async function tick() {
      if (document.visibilityState === "visible") {
        try {
          const reply = await MP.api("GET", url);
          if (reply.status === 200) render(reply.data);
        } catch (e) { /* the next tick tries again */ }
      }
      timer = setTimeout(tick, ms);
    }
    timer = setTimeout(tick, ms);
    return () => clearTimeout(timer);
  };

  function formData(form) {
    const out = {};
    for (const [key, value] of new FormData(form).entries()) {
      if (key !== "csrf" && key !== "next") out[key] = value;
    }
    return out;
  }

  function confirmDialog(message) {
    return new Promise(resolve => {
      const dialog = document.createElement("dialog");
      dialog.setAttribute("aria-labelledby", "confirm-text");
      const p = document.createElement("p");
      p.id = "confirm-text";
      p.textContent = message;
      const bar = document.createElement("div");
      bar.className = "actions";
      const no = document.createElement("button");
      no.type = "button"; no.className = "secondary"; no.textContent = "Cancel";
      const yes = document.createElement("button");
      yes.type = "button"; yes.textContent = "Confirm"; yes.dataset.confirmYes = "";
      bar.append(no, yes);
      dialog.append(p, bar);
      document.body.append(dialog);
      const done = answer => { dialog.close(); dialog.remove(); resolve(answer); };
      no.addEventListener("click", () => done(false));
      yes.addEventListener("click", () => done(true));
      dialog.addEventListener("cancel", event => { event.preventDefault(); done(false); });
      dialog.showModal();
      yes.focus();
    });
  }
  MP.confirm = confirmDialog;

  function describe(reply) {
    const data = reply.data || {};
    if (reply.status === 409 && "current" in data) {
      const now = data.current === null ? "nowhere" : "version " + data.current;
      return data.error + ". It names " + now + " now; reload before acting again.";
    }
    return data.error || ("failed with status " + reply.status);
  }

  async function submit(event) {
    const form = event.target.closest("form[data-action]");
    if (!form) return;
    event.preventDefault();
    const fields = formData(form);
    const message = (form.dataset.confirm || "Are you sure?")
      .replace(/\{(\w+)\}/g, (_, key) => fields[key] ?? "");
    if (!(await confirmDialog(message))) return;
    for (const button of form.querySelectorAll("button")) button.disabled = true;
    let reply;
    try {
      reply = await MP.api("POST", form.action, fields);
    } catch (e) {
      reply = { status: 0, data: { error: "the server did not answer" } };
    }
    for (const button of form.querySelectorAll("button")) button.disabled = false;
    if (reply.status >= 200 && reply.status < 300) {
      MP.toast(reply.data.message || "done");
      setTimeout(() => window.location.reload(), 600);
    } else {
      MP.toast(describe(reply), true);
      const stale = document.getElementById("stale");
      if (reply.status === 409 && stale) {
        stale.textContent = describe(reply);
        stale.hidden = false;
      }
    }
  }

  MP.lineChart = function (svg, series, options) {
    const opts = options || {};
    const W = 640, H = 200, L = 48, R = 10, T = 10, B = 24;
    const ns = "http://www.w3.org/2000/svg";
    const all = series.flatMap(s => s.points);
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.replaceChildren();
    const el = (name, attrs, text) => {
      const node = document.createElementNS(ns, name);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
      if (text !== undefined) node.textContent = text;
      svg.append(node);
      return node;
    };
    if (!all.length) { el("text", { x: L, y: H / 2 }, "no data yet"); return; }
    const xs = all.map(p => p[0]), ys = all.map(p => p[1]);
    const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1e-9);
    const y0 = Math.min(0, ...ys), y1 = Math.max(...ys, y0 + 1e-9);
    const X = x => L + (x - x0) / (x1 - x0) * (W - L - R);
    const Y = y => H - B - (y - y0) / (y1 - y0) * (H - T - B);
    el("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B });
    for (const f of [0, 0.5, 1]) {
      const v = y0 + f * (y1 - y0);
      el("line", { class: "grid-line", x1: L, y1: Y(v), x2: W - R, y2: Y(v) });
      el("text", { class: "label", x: 4, y: Y(v) + 4 }, v.toPrecision(3) + (opts.unit || ""));
    }
    series.forEach((s, i) => {
      if (!s.points.length) return;
      const d = s.points.map((p, j) => (j ? "L" : "M") + X(p[0]).toFixed(1) + " " +
                                       Y(p[1]).toFixed(1)).join(" ");
      el("path", { class: "line s" + (i % 5 + 1), d, fill: "none" });
    });
    svg.setAttribute("data-points", String(all.length));
  };

  document.addEventListener("submit", submit);
  window.MP = MP;
  document.dispatchEvent(new CustomEvent("mp:ready"));
})();
