"""The router's open-set profile on synthetic embeddings: tasks of very different spread, a novel cluster between
them, calibration at a quantile of known requests, and a profile that survives a save/load (and a damaged one that is
named, not loaded)."""

from __future__ import annotations

import numpy as np
import pytest

from mllmcl.continual.open_set import PROFILE_WEIGHTS, NoveltyProfile, compact
from mllmcl.errors import ModelLoadError


def _tasks(rng, n: int = 120, dim: int = 16) -> dict[str, np.ndarray]:
    tight = rng.normal(0.0, 0.1, (n, dim))  # e.g. charts: every image alike
    wide = rng.normal(0.0, 3.0, (n, dim)) + 10.0  # e.g. photos: images vary a lot
    return {"tight": tight, "wide": wide}


def test_a_novel_kind_is_farther_than_every_known_request_of_a_differently_spread_task():
    rng = np.random.default_rng(0)
    fit, held_out = _tasks(rng), _tasks(rng)
    profile = NoveltyProfile.fit(fit).calibrate(np.concatenate(list(held_out.values())), 0.99)
    # a cluster between the two tasks: close to the tight task's mean in plain distance, but far in its own units
    novel = rng.normal(0.0, 0.1, (100, 16)) + 1.5
    known = np.concatenate(list(_tasks(rng).values()))
    known_d, nearest = profile.distances(known)
    novel_d, _ = profile.distances(novel)
    assert np.mean(known_d > profile.threshold) <= 0.05  # calibrated at 1%, estimated from 240 requests
    assert np.mean(novel_d > profile.threshold) >= 0.95
    assert set(nearest[:120]) == {"tight"} and set(nearest[120:]) == {"wide"}  # each known request: its own task


def test_quantile_one_switches_the_open_set_off():
    rng = np.random.default_rng(1)
    profile = NoveltyProfile.fit(_tasks(rng)).calibrate(np.zeros((5, 16)), 1.0)
    assert profile.threshold == float("inf")


def test_a_profile_survives_save_and_load_and_a_damaged_one_is_named(tmp_path):
    rng = np.random.default_rng(2)
    profile = NoveltyProfile.fit(_tasks(rng)).calibrate(np.concatenate(list(_tasks(rng).values())), 0.95)
    profile.save(tmp_path)
    loaded = NoveltyProfile.load(tmp_path)
    probe = rng.normal(0, 1, (7, 16))
    assert set(loaded.tasks) == {"tight", "wide"} and loaded.threshold == pytest.approx(profile.threshold)
    np.testing.assert_allclose(loaded.distances(probe)[0], profile.distances(probe)[0], rtol=1e-5)
    (tmp_path / PROFILE_WEIGHTS).write_bytes(b"\x00" * 10)
    with pytest.raises(ModelLoadError, match=PROFILE_WEIGHTS):
        NoveltyProfile.load(tmp_path)
    assert NoveltyProfile.load(tmp_path / "no-profile") is None  # a router trained before profiles existed


def test_wide_embeddings_are_projected_to_a_fixed_small_size_keeping_distances():
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (20, 4096)).astype(np.float32)
    small = compact(x)
    assert small.shape == (20, 64)
    np.testing.assert_array_equal(compact(x), small)  # the same projection every time (fixed seed)
    ratio = np.linalg.norm(small[0] - small[1]) / np.linalg.norm(x[0] - x[1])
    assert 0.6 < ratio < 1.4
    assert compact(x[:, :32]).shape == (20, 32)  # narrow ones are kept as they are


def test_a_task_with_two_looks_gets_a_gaussian_for_each():
    rng = np.random.default_rng(4)
    looks = np.concatenate([rng.normal(0, 0.2, (150, 8)), rng.normal(0, 0.2, (150, 8)) + 4.0])
    profile = NoveltyProfile.fit({"sci": looks}).calibrate(
        np.concatenate([rng.normal(0, 0.2, (100, 8)), rng.normal(0, 0.2, (100, 8)) + 4.0]), 0.99
    )
    assert len(profile.tasks) > 1 and set(profile.tasks) == {"sci"}
    between = rng.normal(0, 0.2, (50, 8)) + 2.0  # where one wide Gaussian over both looks would put its centre
    assert np.mean(profile.distances(between)[0] > profile.threshold) >= 0.95
