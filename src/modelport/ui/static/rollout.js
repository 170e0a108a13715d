/* A rollout's page: while it is open, poll the rollout and say when it moved (the controller
   advanced it, or someone acted). The action forms keep the state the page showed, so acting
   on a stale page answers 409. */
(function () {
  "use strict";
  const live = document.getElementById("live");
  const stale = document.getElementById("stale");
  if (!live || !stale || !window.MP) return;
  const shown = [live.dataset.id, live.dataset.state, live.dataset.step].join(":");
  MP.live(live.dataset.url, 3000, data => {
    const r = data.status.rollout;
    if ([r.id, r.state, r.step].join(":") === shown) return;
    stale.textContent = "Rollout #" + r.id + " is " + data.status.step + " now (this page shows " +
      live.dataset.state + ", step " + (Number(live.dataset.step) + 1) + "). Reload to act on the current state.";
    stale.hidden = false;
  });
})();
