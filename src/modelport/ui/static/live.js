/* Shared by the live pages (after app.js): MP.legend(list, series) fills a <ul class="legend">
   with one swatch per series that has points, coloured by the series' index as
   MP.lineChart draws it; MP.ago(series) turns epoch-second x values into seconds ago. */
(function () {
  "use strict";
  if (!window.MP) return;
  MP.legend = function (list, series) {
    const items = [];
    series.forEach((s, i) => {
      if (!s.points.length) return;
      const li = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch s" + (i % 5 + 1);
      li.append(swatch, document.createTextNode(s.name));
      items.push(li);
    });
    list.replaceChildren(...items);
  };
  MP.ago = function (series) {
    const now = Date.now() / 1000;
    return series.map(s => ({ name: s.name, points: s.points.map(p => [p[0] - now, p[1]]) }));
  };
})();
