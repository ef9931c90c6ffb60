// The SAE page: every latent in one table, sortable, filterable and searchable; only the rows in
// view are in the document, so 16,384 latents scroll as fast as 64.
"use strict";
(() => {
  const { table } = protsae.data;
  const { element, number } = protsae;
  const columns = table.columns;
  const n = columns.latent.length;
  const ROW = 26;
  const SPEC = [
    { key: "latent", label: "latent", kind: "int" },
    { key: "pattern", label: "pattern", kind: "text" },
    { key: "family", label: "family", kind: "text" },
    { key: "family_name", label: "family name", kind: "text", wide: true },
    { key: "test_f1", label: "test F1", kind: "num" },
    { key: "test_precision", label: "precision", kind: "num" },
    { key: "test_recall", label: "recall", kind: "num" },
    { key: "threshold", label: "threshold", kind: "num" },
    { key: "density", label: "density", kind: "num" },
    { key: "max", label: "max", kind: "num" },
    { key: "probes", label: "top probe associations", kind: "text", wide: true },
  ];
  if (columns.steer_to_consensus && table.steering_multiplier !== null) {
    SPEC.push({ key: "steer_to_consensus", label: `steered → consensus (×${table.steering_multiplier})`, kind: "num" });
  }
  const cutoff = table.sae.f1_cutoff;

  document.getElementById("sae-meta").textContent =
    `${n.toLocaleString()} latents · variant ${table.sae.variant} · k ${table.sae.k} · ` +
    `trained on ${table.sae.dataset} · latents read on ${table.sae.evalset}`;

  // Filters.
  const patternFilter = document.getElementById("pattern-filter");
  for (const name of [...new Set(columns.pattern)].filter(Boolean).sort()) {
    patternFilter.append(element("option", { value: name, text: name }));
  }
  const familyFilter = document.getElementById("family-filter");
  const families = new Map();
  columns.family.forEach((acc, i) => {
    if (acc && columns.test_f1[i] !== null && columns.test_f1[i] >= cutoff) families.set(acc, columns.family_name[i]);
  });
  for (const [acc, name] of [...families].sort()) {
    familyFilter.append(element("option", { value: acc, text: `${acc} ${name}` }));
  }
  const search = document.getElementById("search");

  // Header with sort buttons.
  const head = document.getElementById("table-head");
  let sortKey = null;
  let sortDescending = true;
  for (const spec of SPEC) {
    const cell = element("button", { class: `cell ${spec.kind}${spec.wide ? " wide" : ""}`, "data-key": spec.key, text: spec.label });
    cell.addEventListener("click", () => {
      sortDescending = sortKey === spec.key ? !sortDescending : spec.kind !== "text";
      sortKey = spec.key;
      update();
    });
    head.append(cell);
  }

  const container = document.getElementById("table");
  const spacer = document.getElementById("table-spacer");
  const count = document.getElementById("row-count");
  let shown = [];

  function matches(i, query) {
    if (!query) return true;
    if (String(i) === query) return true;
    const q = query.toLowerCase();
    if (columns.family[i].toLowerCase().includes(q) || columns.family_name[i].toLowerCase().includes(q)) return true;
    return columns.proteins[i].toLowerCase().split(" ").includes(q);
  }

  function compare(key, kind) {
    const values = columns[key];
    return (a, b) => {
      const x = values[a];
      const y = values[b];
      const missingX = x === null || x === "";
      const missingY = y === null || y === "";
      if (missingX || missingY) return missingX === missingY ? a - b : missingX ? 1 : -1;
      const order = kind === "text" ? String(x).localeCompare(String(y)) : x - y;
      return (sortDescending ? -order : order) || a - b;
    };
  }

  function update() {
    const query = search.value.trim();
    const pattern = patternFilter.value;
    const family = familyFilter.value;
    shown = [];
    for (let i = 0; i < n; i++) {
      if (pattern && columns.pattern[i] !== pattern) continue;
      if (family === "*" && !(columns.test_f1[i] !== null && columns.test_f1[i] >= cutoff)) continue;
      if (family && family !== "*" && columns.family[i] !== family) continue;
      if (matches(i, query)) shown.push(i);
    }
    if (sortKey) {
      const spec = SPEC.find((s) => s.key === sortKey);
      shown.sort(compare(sortKey, spec.kind));
    }
    for (const cell of head.children) {
      cell.classList.toggle("sorted", cell.dataset.key === sortKey);
      cell.dataset.order = cell.dataset.key === sortKey ? (sortDescending ? "descending" : "ascending") : "";
    }
    count.textContent = `${shown.length.toLocaleString()} of ${n.toLocaleString()} latents`;
    spacer.style.height = `${shown.length * ROW}px`;
    container.scrollTop = 0;
    render();
  }

  function cellText(spec, i) {
    const value = columns[spec.key][i];
    if (spec.kind === "num") return number(value);
    return value === null ? "" : String(value);
  }

  function render() {
    const first = Math.max(0, Math.floor(container.scrollTop / ROW) - 5);
    const last = Math.min(shown.length, first + Math.ceil(container.clientHeight / ROW) + 10);
    for (const row of [...container.querySelectorAll(".row")]) row.remove();
    for (let r = first; r < last; r++) {
      const i = shown[r];
      const row = element("div", { class: "row", "data-latent": String(i) });
      row.style.top = `${r * ROW}px`;
      for (const spec of SPEC) {
        const cell = element("span", { class: `cell ${spec.kind}${spec.wide ? " wide" : ""}`, "data-key": spec.key });
        if (spec.key === "latent") cell.append(element("a", { href: `latent.html?latent=${i}`, text: String(i) }));
        else cell.textContent = cellText(spec, i);
        row.append(cell);
      }
      container.append(row);
    }
  }

  container.addEventListener("scroll", render);
  window.addEventListener("resize", render);
  search.addEventListener("input", update);
  patternFilter.addEventListener("change", update);
  familyFilter.addEventListener("change", update);
  update();
})();
