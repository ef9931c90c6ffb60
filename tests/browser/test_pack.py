"""The compact encodings of the browser's data files, and the colour scale."""

import numpy as np
import pytest

from protsae.browser.pack import (
    colour,
    pack_coords,
    pack_track,
    pack_tracks,
    unpack_coords,
    unpack_track,
)


def test_track_round_trip_within_the_quantisation_step():
    rng = np.random.default_rng(0)
    positions = np.r_[np.sort(rng.choice(5000, size=299, replace=False)), 70_000]  # gaps of 1-3 bytes
    values = rng.uniform(0.001, 2.5, size=300).astype(np.float32)
    back_pos, back_val = unpack_track(pack_track(positions, values, 2.5), 2.5)
    assert back_pos.tolist() == positions.tolist()  
    assert np.abs(back_val - values).max() <= 2.5 / 4095 / 2 + 1e-7


def test_track_needs_ascending_positions_and_a_scale():
    with pytest.raises(ValueError, match="ascending"):
        pack_track(np.array([3, 2]), np.array([1.0, 1.0]), 1.0)
    with pytest.raises(ValueError, match="scale"):
        pack_track(np.array([1]), np.array([1.0]), 0.0)
    assert unpack_track(pack_track(np.array([], int), np.array([]), 1.0), 1.0)[0].size == 0


def test_coords_round_trip_to_a_hundredth_of_an_angstrom():
    coords = np.random.default_rng(1).uniform(-80, 80, size=(50, 4, 3))
    back = unpack_coords(pack_coords(coords))
    assert np.abs((back + coords[0, 1]) - coords).max() <= 0.005 + 1e-9
    with pytest.raises(ValueError, match="327"):
        pack_coords(np.array([[[0, 0, 0]] * 4, [[400, 0, 0]] * 4], float))


def test_colour_scale_ends_and_rounding():
    assert colour(0) == (255, 245, 240) and colour(1) == (203, 24, 29)
    assert colour(2) == colour(1) and colour(-1) == colour(0)
    assert colour(0.5) == (229, 135, 135)  # 134.5 rounds up, as the page's Math.round does


def test_many_tracks_at_once_equal_one_at_a_time():
    rng = np.random.default_rng(2)
    tracks = [np.sort(rng.choice(3000, size=n, replace=False)) for n in (5, 0, 1, 40)]
    values = [rng.uniform(0.01, 1, size=len(t)) for t in tracks]
    scales = np.array([1.0, 0.5, 2.0, 1.5])
    offsets = np.r_[0, np.cumsum([len(t) for t in tracks])]
    together = pack_tracks(offsets, np.concatenate(tracks), np.concatenate(values), scales)
    assert together == [pack_track(t, v, s) for t, v, s in zip(tracks, values, scales)]
    assert together[1] == ""
    with pytest.raises(ValueError, match="ascending"):
        pack_tracks(np.array([0, 2]), np.array([4, 4]), np.array([1.0, 1.0]), np.array([1.0]))
