"""Compact encodings of the browser's per-latent data, and the colour scale, shared with its
JavaScript (``assets/protsae.js`` decodes and colours the same way; the tests hold the two to it).

* A track (the residues where a latent is active, and their values) is base64 of, per active
  residue, the gap to the previous active residue (LEB128 varint; the first from -1) and the value
  as a little-endian uint16 of value / scale x 65535, rounded, with ``scale`` the latent's largest
  activation over the dataset. Values come back within scale / 131070 (0.0008% of the scale), far
  finer than the float16 activations they were computed from.
* Backbone coordinates are base64 of little-endian int16 hundredths of an Angstrom (N, CA, C, O
  of each residue, x y z), relative to the first CA; chains up to 327 A across fit.
"""

from __future__ import annotations

import base64
import math

import numpy as np

TRACK_LEVELS = 65535
LOW_COLOUR = (255, 245, 240)
HIGH_COLOUR = (203, 24, 29)
"""The activation colour scale (Colorbrewer Reds' ends): norm 0 to 1, linear in RGB."""


def _varints(values: np.ndarray) -> bytes:
    out = bytearray()
    for value in values.tolist():
        while value >= 0x80:
            out.append((value & 0x7F) | 0x80)
            value >>= 7
        out.append(value)
    return bytes(out)


def quantise(values: np.ndarray, scale: float) -> np.ndarray:
    """Values as uint16 levels of ``scale`` (clipped to [0, scale])."""
    if not scale > 0:
        raise ValueError(f"track scale must be > 0, got {scale}")
    return np.rint(np.clip(np.asarray(values, np.float64) / scale, 0, 1) * TRACK_LEVELS).astype(np.uint16)


def pack_track(positions: np.ndarray, values: np.ndarray, scale: float) -> str:
    """The encoded track (see the module docstring); positions strictly ascending, >= 0."""
    positions = np.asarray(positions, np.int64)
    if positions.size and (positions[0] < 0 or np.any(np.diff(positions) <= 0)):
        raise ValueError("track positions must be >= 0 and strictly ascending")
    gaps = np.diff(np.r_[-1, positions]) - 1
    levels = quantise(values, scale)
    out = bytearray()
    for gap, level in zip(gaps.tolist(), levels.tolist()):
        out += _varints(np.array([gap]))
        out += int(level).to_bytes(2, "little")
    return base64.b64encode(bytes(out)).decode("ascii")


def unpack_track(text: str, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """positions (int64) and values (float64) of a packed track (what the page shows)."""
    data = base64.b64decode(text)
    positions, values, i, position = [], [], 0, -1
    while i < len(data):
        gap, shift = 0, 0
        while True:
            byte = data[i]
            i += 1
            gap |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        position += gap + 1
        positions.append(position)
        values.append(int.from_bytes(data[i:i + 2], "little") / TRACK_LEVELS * scale)
        i += 2
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
