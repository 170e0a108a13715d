/* The Model page: while it is open, poll the model's aliases and say when one moved under it.
   The forms keep the version the page showed, so acting on a stale page answers 409. */
(function () {
  "use strict";
  const live = document.getElementById("live");
  const stale = document.getElementById("stale");
  if (!live || !stale || !window.MP) return;
  const seen = {};
  for (const pair of (live.dataset.aliases || "").split(",")) {
    if (!pair) continue;
    const [alias, version] = pair.split("=");
    seen[alias] = Number(version);
  }
  MP.live(live.dataset.url, 5000, data => {
    const moved = [];
    const now = {};
    for (const a of data.aliases) now[a.alias] = a.version;
    for (const [alias, version] of Object.entries(seen)) {
      if (now[alias] !== version) {
        moved.push(alias + (alias in now ? " now names version " + now[alias] : " was removed") +
                   " (this page shows version " + version + ")");
      }
    }
    for (const alias of Object.keys(now)) {
      if (!(alias in seen)) moved.push("new alias " + alias + " names version " + now[alias]);
    }
    if (moved.length) {
      stale.textContent = "Changed since this page loaded: " + moved.join("; ") + ". Reload to act on the current state.";
      stale.hidden = false;
    }
  });
})();
