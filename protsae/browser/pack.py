"""Compact encodings of the browser's per-latent data, and the colour scale, shared with its
JavaScript (``assets/protsae.js`` decodes and colours the same way; the tests hold the two to it).

* A track (the residues where a latent is active, and their values) is base64 of, per active
  residue, a little-endian uint16: the gap to the previous active residue (the first from -1) in
  its top 4 bits and the value as a 12-bit level of value / scale x 4095, rounded, with ``scale``
  the latent's largest activation shown. A gap of 15 or more stores 15 there and the rest of it
  as a LEB128 varint after the uint16. Residues of a contig thus take 2 bytes. Values come back
  within scale / 8190 (0.012% of the scale), finer than the float16 activations (0.05-0.1%
  relative) they were computed from.
* Backbone coordinates are base64 of little-endian int16 hundredths of an Angstrom (N, CA, C, O
  of each residue, x y z), relative to the first CA; chains up to 327 A across fit.
"""

from __future__ import annotations

import base64
import math
from itertools import pairwise

import numpy as np

TRACK_LEVELS = 4095
_GAP_ESCAPE = 15
LOW_COLOUR = (255, 245, 240)
HIGH_COLOUR = (203, 24, 29)
"""The activation colour scale (Colorbrewer Reds' ends): norm 0 to 1, linear in RGB."""


def pack_tracks(offsets: np.ndarray, positions: np.ndarray, values: np.ndarray, scales: np.ndarray) -> list[str]:
    """Many tracks at once: track i is ``positions[offsets[i]:offsets[i + 1]]`` (strictly
    ascending, >= 0) with its values, on the scale ``scales[i]``."""
    offsets = np.asarray(offsets, np.int64)
    positions, scales = np.asarray(positions, np.int64), np.asarray(scales, np.float64)
    counts = np.diff(offsets)
    if np.any(scales[counts > 0] <= 0) or np.any(~np.isfinite(scales[counts > 0])):
        raise ValueError(f"track scale must be > 0, got {scales[counts > 0].min()}")
    first = np.zeros(len(positions), bool)
    first[offsets[:-1][counts > 0]] = True
    previous = np.where(first, -1, np.r_[-1, positions[:-1]])
    gaps = positions - previous - 1
    if np.any(gaps < 0):
        raise ValueError("track positions must be >= 0 and strictly ascending")
    entry_scale = np.repeat(scales, counts)
    levels = np.rint(np.clip(np.asarray(values, np.float64) / entry_scale, 0, 1) * TRACK_LEVELS).astype(np.int64)
    # The uint16 (gap nibble, 12-bit level), then the varint of gap - 15 where the nibble is 15.
    escaped = gaps >= _GAP_ESCAPE
    rest = np.where(escaped, gaps - _GAP_ESCAPE, 0)
    n_rest_bytes = np.where(escaped, 1 + sum((rest >= 1 << (7 * b)).astype(np.int64) for b in range(1, 9)), 0)
    entry_bytes = 2 + n_rest_bytes
    starts = np.cumsum(entry_bytes) - entry_bytes
    out = np.zeros(int(entry_bytes.sum()), np.uint8)
    word = (np.minimum(gaps, _GAP_ESCAPE) << 12) | levels
    out[starts] = word & 0xFF
    out[starts + 1] = word >> 8
    for b in range(int(n_rest_bytes.max()) if gaps.size else 0):
        has = n_rest_bytes > b
        more = (n_rest_bytes[has] > b + 1).astype(np.int64) << 7
        out[starts[has] + 2 + b] = ((rest[has] >> (7 * b)) & 0x7F) | more
    bounds = np.r_[0, np.cumsum(entry_bytes)][offsets]
    data = out.tobytes()
    return [base64.b64encode(data[a:b]).decode("ascii") for a, b in pairwise(bounds.tolist())]


def pack_track(positions: np.ndarray, values: np.ndarray, scale: float) -> str:
    """One encoded track (see the module docstring); positions strictly ascending, >= 0."""
    positions = np.asarray(positions, np.int64)
    return pack_tracks(np.array([0, len(positions)]), positions, values, np.array([scale]))[0]


def unpack_track(text: str, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """positions (int64) and values (float64) of a packed track (what the page shows)."""
    data = base64.b64decode(text)
    positions, values, i, position = [], [], 0, -1
    while i < len(data):
        word = data[i] | data[i + 1] << 8
        i += 2
        gap = word >> 12
        if gap == _GAP_ESCAPE:
            shift = 0
            while True:
                byte = data[i]
                i += 1
                gap += (byte & 0x7F) << shift
                shift += 7
                if byte < 0x80:
                    break
        position += gap + 1
        positions.append(position)
        values.append((word & 0xFFF) / TRACK_LEVELS * scale)
    return np.array(positions, np.int64), np.array(values, np.float64)


def pack_coords(coords: np.ndarray) -> str:
    """(n, 4, 3) Angstrom as base64 int16 hundredths relative to the first CA."""
    centred = np.asarray(coords, np.float64) - np.asarray(coords, np.float64)[0, 1]
    hundredths = np.rint(centred * 100)
    if hundredths.size and np.abs(hundredths).max() > np.iinfo(np.int16).max:
        raise ValueError("structure spans more than 327 A from its first CA: cannot pack as int16")
    return base64.b64encode(hundredths.astype("<i2").tobytes()).decode("ascii")


def unpack_coords(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<i2").reshape(-1, 4, 3).astype(np.float64) / 100


def colour(norm: float) -> tuple[int, int, int]:
    """The RGB of an activation at ``norm`` (value / the latent's largest) on the page's scale."""
    t = min(max(float(norm), 0.0), 1.0)
    # floor(x + 0.5), not round(): the page's Math.round rounds halves up, Python's to even.
    return tuple(math.floor(lo + (hi - lo) * t + 0.5) for lo, hi in zip(LOW_COLOUR, HIGH_COLOUR))
