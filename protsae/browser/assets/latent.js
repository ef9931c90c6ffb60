// One latent's page: its facts, histogram, example proteins by activation bin (every residue
// coloured by activation, rows aligned on their top residue), annotation-gap candidates, probe
// coefficients, steering and its family alignment, and structures coloured by activation.
// Its data file loads only now, with the sequence chunks and structures it needs.
"use strict";
(async () => {
  const { element, number, css, colour } = protsae;
  const CELL = 9; // px per residue (protsae.css .res)
  const page = window.PROTSAE_PAGE;
  const main = document.getElementById("latent");
  const status = document.getElementById("status");
  const latent = Number.parseInt(protsae.param("latent"), 10);
  if (!(latent >= 0 && latent < page.n_latents)) {
    status.textContent = `No latent ${protsae.param("latent")}: this SAE has latents 0 to ${page.n_latents - 1}.`;
    return;
  }
  document.getElementById("title").textContent = `Latent ${latent} · ${page.sae.name} · layer ${page.sae.layer}`;
  document.title = `protsae · ${page.sae.name} · latent ${latent}`;
  const prev = document.getElementById("prev");
  const next = document.getElementById("next");
  prev.href = `latent.html?latent=${(latent + page.n_latents - 1) % page.n_latents}`;
  next.href = `latent.html?latent=${(latent + 1) % page.n_latents}`;

  await protsae.load(`latents/${latent}.js`);
  const d = protsae.data.latents[latent];
  // A bin's examples come as columns (p, c, m, top, t); make them rows.
  for (const bin of d.bins) bin.examples = bin.examples.p.map((p, i) => Object.fromEntries(Object.keys(bin.examples).map((k) => [k, bin.examples[k][i]])));
  const examples = d.bins.flatMap((b) => b.examples).concat(d.structures);
  const chunks = [...new Set(examples.map((e) => e.c))];
  await Promise.all(chunks.map((c) => protsae.load(`${page.prefix}proteins/${c}.js`)));
  status.remove();

  const section = (title, ...children) => element("section", { class: "block" }, element("h2", { text: title }), ...children);
  const row = d.row;

  // Facts.
  const facts = [
    ["pattern", row.pattern],
    ["family", row.family ? `${row.family} ${row.family_name}` : "none"],
    ["test F1", number(row.test_f1)],
    ["precision", number(row.test_precision)],
    ["recall", number(row.test_recall)],
    ["threshold (of the latent's max)", number(row.threshold, 2)],
    ["train F1", d.family ? number(d.family.train_f1) : ""],
    ["F1 sweep", d.family ? d.family.status.replaceAll("_", " ") : ""],
    ["fires on", `${d.n_proteins.toLocaleString()} proteins (density ${number(row.density)})`],
    ["largest activation", number(row.max, 4)],
  ];
  if (row.probes) facts.push(["top probe associations", row.probes]);
  const dl = element("dl", { class: "facts" });
  for (const [k, v] of facts) dl.append(element("dt", { text: k }), element("dd", { text: v }));
  main.append(section("Summary", dl));

  // Histogram of per-protein maxima.
  main.append(section("Per-protein maxima", histogram(d.histogram)));

  // Example proteins by bin.
  for (const bin of d.bins) {
    const title = `Activation ${bin.name} of the maximum: ${bin.examples.length} of ${bin.n.toLocaleString()} proteins`;
    main.append(section(title, bin.examples.length ? tracks(bin.examples, `bin-${bin.name}`) : element("p", { text: "none" })));
  }

  // Structures.
  if (d.structures.length) {
    const holder = element("div", { class: "structures" });
    main.append(section("Structures, coloured by activation", holder));
    for (const s of d.structures) {
      await protsae.load(`${page.prefix}structures/${s.s}.js`);
      holder.append(structure(s));
    }
  }

  if (d.gaps.length) {
    const t = tableOf(["protein", "activation", "of max", "rank", "its families"],
      d.gaps.map((g) => [g.protein, number(g.activation), number(g.normalised), g.rank, g.protein_families || ""]));
    main.append(section("Annotation-gap candidates (above threshold, without the family's label)", t));
  }
  if (d.probes.length) {
    const t = tableOf(["task", "class", "sign", "rank", "coefficient"],
      d.probes.map((p) => [p.task, p.class, p.sign, p.rank, number(p.coefficient)]));
    main.append(section("Probe coefficients that name this latent", t));
  }
  if (d.steering) main.append(section("Steering", ...steering(d.steering)));
  if (d.neighbours && d.neighbours.length) {
    const t = element("table", { class: "plain neighbours" });
    t.append(element("tr", {}, ...["edge", "direction", "layer", "latent", "weight"].map((h) => element("th", { text: h }))));
    for (const n of d.neighbours) {
      const target = n.href ? element("a", { href: n.href, text: String(n.latent) }) : element("span", { text: String(n.latent) });
      t.append(element("tr", {}, element("td", { text: n.kind }), element("td", { text: n.direction }),
        element("td", { text: String(n.layer) }), element("td", {}, target), element("td", { text: number(n.weight) })));
    }
    main.append(section("Feature network (causal: mean drop of the target when this latent is removed; co-activation: NPMI; decoder: cosine)", t));
  }
  document.body.dataset.ready = "true";

  // ---------------------------------------------------------------------------------------------

  function histogram(counts) {
    const width = 480, height = 160, left = 44, bottom = 34, top = 8;
    const max = Math.max(1, ...counts);
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("class", "histogram");
    const add = (tag, attributes, text) => {
      const node = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
      if (text !== undefined) node.textContent = text;
      svg.append(node);
      return node;
    };
    const w = (width - left - 8) / counts.length;
    counts.forEach((c, i) => {
      const h = ((height - bottom - top) * c) / max;
      const bar = add("rect", { x: left + i * w, y: height - bottom - h, width: w - 1, height: h, fill: css(colour((i + 1) / counts.length)) });
      bar.append(Object.assign(document.createElementNS(ns, "title"), { textContent: `${(i / counts.length).toFixed(2)}-${((i + 1) / counts.length).toFixed(2)}: ${c} proteins` }));
    });
    add("line", { x1: left, y1: height - bottom, x2: width - 8, y2: height - bottom, stroke: "#333" });
    add("line", { x1: left, y1: top, x2: left, y2: height - bottom, stroke: "#333" });
    for (const t of [0, 0.25, 0.5, 0.75, 1]) add("text", { x: left + t * (width - left - 8), y: height - bottom + 14, "text-anchor": "middle" }, String(t));
    add("text", { x: left + (width - left) / 2, y: height - 4, "text-anchor": "middle" }, "protein's max activation / latent's max");
    add("text", { x: left - 6, y: top + 10, "text-anchor": "end" }, String(max));
    add("text", { x: left - 6, y: height - bottom, "text-anchor": "end" }, "0");
    add("text", { x: 12, y: (height - bottom) / 2, transform: `rotate(-90 12 ${(height - bottom) / 2})`, "text-anchor": "middle" }, "proteins");
    return svg;
  }

  // Sequence rows, each residue coloured by activation, aligned on each row's top residue.
  function tracks(list, name) {
    const holder = element("div", { class: "tracks", "data-bin": name });
    const labels = element("div", { class: "labels" });
    const rows = element("div", { class: "sequences" });
    const anchor = Math.max(...list.map((e) => e.top));
    for (const e of list) {
      const sequence = protsae.data.proteins[e.p];
      const track = protsae.unpackTrack(e.t, d.scale);
      const value = new Map(track.positions.map((p, i) => [p, track.values[i]]));
      labels.append(element("div", { class: "label", text: `${e.p} ${number(e.m)}` }));
      const line = element("div", { class: "seq", "data-protein": e.p });
      // Whole-pixel cells (protsae.css), so the top residues line up exactly.
      const pad = element("span", { class: "pad" });
      pad.style.width = `${(anchor - e.top) * CELL}px`;
      line.append(pad);
      for (let p = 0; p < sequence.length; p++) {
        const v = value.get(p);
        const residue = element("span", { class: "res", text: sequence[p], title: `${p + 1} ${sequence[p]} ${v === undefined ? "0" : number(v, 4)}` });
        residue.dataset.pos = String(p);
        if (v !== undefined) {
          residue.style.backgroundColor = css(colour(v / d.scale));
          residue.dataset.value = String(v);
        }
        if (p === e.top) residue.classList.add("top");
        line.append(residue);
      }
      rows.append(line);
    }
    holder.append(labels, rows);
    // Bring the aligned top residues into view.
    requestAnimationFrame(() => { rows.scrollLeft = Math.max(0, anchor * CELL - rows.clientWidth / 3); });
    return holder;
  }

  function structure(s) {
    const data = protsae.data.structures[s.p];
    const track = protsae.unpackTrack(s.t, d.scale);
    const value = new Map(track.positions.map((p, i) => [p + 1, track.values[i]]));
    const box = element("figure", { class: "structure" });
    const canvas = element("div", { class: "viewer", "data-protein": s.p });
    box.append(canvas, element("figcaption", { text: `${s.p}: max ${number(s.m)}` }));
    requestAnimationFrame(() => {
      const viewer = $3Dmol.createViewer(canvas, { backgroundColor: "white", antialias: true });
      viewer.addModel(pdb(data), "pdb");
      viewer.setStyle({}, { cartoon: { colorfunc: (atom) => {
        const v = value.get(atom.resi);
        return v === undefined ? "#c8c8c8" : css(colour(v / d.scale));
      } } });
      viewer.zoomTo();
      viewer.render();
      canvas.dataset.rendered = "true";
    });
    return box;
  }

  // The backbone as PDB text (3Dmol assigns secondary structure from DSSP records or computes it).
  function pdb(data) {
    const three = { A: "ALA", R: "ARG", N: "ASN", D: "ASP", C: "CYS", Q: "GLN", E: "GLU", G: "GLY", H: "HIS", I: "ILE",
      L: "LEU", K: "LYS", M: "MET", F: "PHE", P: "PRO", S: "SER", T: "THR", W: "TRP", Y: "TYR", V: "VAL" };
    const xyz = protsae.unpackCoords(data.coords);
    const names = ["N", "CA", "C", "O"];
    const lines = [];
    const pad = (text, width, right = false) => (right ? String(text).padEnd(width) : String(text).padStart(width));
    let serial = 1;
    for (let r = 0; r < data.sequence.length; r++) {
      for (let a = 0; a < 4; a++) {
        const o = (r * 4 + a) * 3;
        lines.push(`ATOM  ${pad(serial++, 5)}  ${pad(names[a], 3, true)} ${three[data.sequence[r]] || "UNK"} A${pad(r + 1, 4)}    ` +
          `${pad(xyz[o].toFixed(3), 8)}${pad(xyz[o + 1].toFixed(3), 8)}${pad(xyz[o + 2].toFixed(3), 8)}  1.00  0.00           ${names[a][0]}`);
      }
    }
    return lines.join("\n");
  }

  function tableOf(header, rows) {
    const t = element("table", { class: "plain" });
    t.append(element("tr", {}, ...header.map((h) => element("th", { text: h }))));
    for (const r of rows) t.append(element("tr", {}, ...r.map((v) => element("td", { text: String(v) }))));
    return t;
  }

  function steering(s) {
    const parts = [element("p", { text: `Family alignment: ${s.n_top} top sequences and ${s.n_hits} BLAST hits of the family (${s.status}).` })];
    const rows = s.by_multiplier.map((m) => [m.kind, m.multiplier, number(m.unchanged_vs_original), number(m.unchanged_vs_unsteered), number(m.to_consensus), number(m.consensus_logprob_shift)]);
    parts.push(tableOf(["steered", "multiplier", "unchanged vs original", "unchanged vs unsteered", "changed → consensus", "consensus log-prob shift"], rows));
    if (s.alignment) {
      const block = element("div", { class: "alignment" });
      const labels = element("div", { class: "labels" });
      const text = element("div", { class: "sequences" });
      labels.append(element("div", { class: "label", text: "conservation" }), element("div", { class: "label", text: "consensus" }));
      text.append(element("div", { class: "seq symbols", text: s.alignment.symbols }), element("div", { class: "seq", text: s.alignment.consensus }));
      for (const [id, role, line] of s.alignment.rows) {
        labels.append(element("div", { class: `label ${role}`, text: `${id} (${role})` }));
        text.append(element("div", { class: "seq", text: line }));
      }
      block.append(labels, text);
      parts.push(block);
    }
    return parts;
  }
})().catch((error) => {
  const status = document.getElementById("status") || document.body;
  status.textContent = `Could not show this latent: ${error.message}`;
  throw error;
});
