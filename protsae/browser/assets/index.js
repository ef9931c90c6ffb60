// The site's index: every SAE of the run with its metrics and a link to its latents.
"use strict";
(() => {
  const { element, number } = protsae;
  const { rows } = protsae.data.saes;
  const columns = [
    ["SAE", (r) => element("a", { href: `${r.path}/index.html`, text: `layer ${r.layer} · ${r.name}` })],
    ["latents", (r) => r.width.toLocaleString()],
    ["FVU", (r) => number(r.heldout_fvu)],
    ["L0", (r) => number(r.heldout_l0)],
    ["dead share", (r) => number(r.dead_share)],
    ["delta CE", (r) => number(r.delta_ce)],
    ["family-specific", (r) => (r.n_family_specific === null ? "" : String(r.n_family_specific))],
    ["pattern mix", (r) => patternBar(r.patterns)],
  ];
  const table = document.getElementById("saes");
  table.append(element("tr", {}, ...columns.map(([h]) => element("th", { text: h }))));
  for (const r of rows) {
    table.append(element("tr", { "data-sae": r.path }, ...columns.map(([, f]) => element("td", {}, f(r)))));
  }

  // The share of each activation pattern among the SAE's latents, as one stacked bar.
  function patternBar(patterns) {
    const bar = element("div", { class: "patterns" });
    const total = Object.values(patterns || {}).reduce((a, b) => a + b, 0);
    if (!total) return bar;
    for (const [name, count] of Object.entries(patterns)) {
      if (!count) continue;
      const part = element("span", { class: `pattern ${name}`, title: `${name}: ${count} (${((100 * count) / total).toFixed(1)}%)` });
      part.style.width = `${(100 * count) / total}%`;
      bar.append(part);
    }
    return bar;
  }
})();
