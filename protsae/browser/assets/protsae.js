// protsae latent browser: what every page shares. Data files are scripts that call
// protsae.<kind>(payload); pages load them with <script src>, which works from file://.
"use strict";
const protsae = (() => {
  // The activation colour scale (protsae/browser/pack.py holds the same numbers).
  const LOW = [255, 245, 240];
  const HIGH = [203, 24, 29];
  const LEVELS = 4095;
  const data = { table: null, saes: null, latents: {}, proteins: {}, structures: {} };

  function colour(norm) {
    const t = Math.min(Math.max(norm, 0), 1);
    return LOW.map((lo, i) => Math.floor(lo + (HIGH[i] - lo) * t + 0.5));
  }
  const css = (rgb) => `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`;

  function load(src) {
    return new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = src;
      script.onload = () => resolve();
      script.onerror = () => reject(new Error(`could not load ${src}`));
      document.head.appendChild(script);
    });
  }

  function bytes(b64) {
    const text = atob(b64);
    const out = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
    return out;
  }

  // A packed track (protsae/browser/pack.py): per active residue a uint16 with the gap to the
  // previous one in its top 4 bits (15: a varint of the rest follows) and a 12-bit level of the
  // latent's maximum.
  function unpackTrack(b64, scale) {
    const raw = bytes(b64);
    const positions = [];
    const values = [];
    let i = 0;
    let position = -1;
    while (i < raw.length) {
      const word = raw[i] | (raw[i + 1] << 8);
      i += 2;
      let gap = word >> 12;
      if (gap === 15) {
        let shift = 0;
        for (;;) {
          const byte = raw[i++];
          gap += (byte & 0x7f) * 2 ** shift;
          shift += 7;
          if (byte < 0x80) break;
        }
      }
      position += gap + 1;
      positions.push(position);
      values.push(((word & 0xfff) / LEVELS) * scale);
    }
    return { positions, values };
  }

  // Packed backbone: int16 hundredths of an Angstrom, N CA C O per residue.
  function unpackCoords(b64) {
    const raw = bytes(b64);
    const view = new DataView(raw.buffer);
    const out = new Float64Array(raw.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = view.getInt16(2 * i, true) / 100;
    return out;
  }

  const number = (value, digits = 3) =>
    value === null || value === undefined || Number.isNaN(value) ? "" : Number(value).toPrecision(digits);

  function element(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) {
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function param(name) {
    return new URLSearchParams(window.location.search).get(name);
  }

  return {
    data, colour, css, load, unpackTrack, unpackCoords, number, element, param,
    table: (payload) => { data.table = payload; },
    saes: (payload) => { data.saes = payload; },
    latent: (payload) => { data.latents[payload.latent] = payload; },
    proteins: (payload) => { Object.assign(data.proteins, payload); },
    structure: (payload) => { data.structures[payload.id] = payload; },
  };
})();
