"""KuaiRand-shaped user simulator: schema, determinism and ground-truth sanity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from kwaiformers.data.loaders import load_kuairand
from kwaiformers.data.simulator import (
    KUAIRAND_LOG_COLUMNS,
    KUAIRAND_USER_COLUMNS,
    KUAIRAND_VIDEO_COLUMNS,
    SimulatorConfig,
    UserSimulator,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def sim_logs():
    sim = UserSimulator(config=SimulatorConfig(log_exposure_prob=True, random_exposure_rate=0.2))
    logs = sim.generate_logs(num_users=120, num_items=150, days=3, seed=5)
    return sim, logs


def test_kuairand_schema(sim_logs):
    sim, logs = sim_logs
    assert list(logs.log_standard.columns)[: len(KUAIRAND_LOG_COLUMNS)] == list(KUAIRAND_LOG_COLUMNS)
    assert list(logs.user_features.columns) == list(KUAIRAND_USER_COLUMNS)
    assert list(logs.video_features_basic.columns) == list(KUAIRAND_VIDEO_COLUMNS)
    std, rnd = logs.log_standard, logs.log_random
    assert (std["is_rand"] == 0).all() and (rnd["is_rand"] == 1).all() and len(rnd) > 0
    for frame in (std, rnd):
        assert frame["video_id"].between(0, 149).all() and frame["user_id"].between(0, 119).all()
        assert (frame["play_time_ms"] <= frame["duration_ms"]).all()
        assert (frame["play_time_ms"] >= 0).all()
        # sorted by user, then time
        key = frame["user_id"].to_numpy() * 10**13 + frame["time_ms"].to_numpy()
        assert (np.diff(key) >= 0).all()
        assert set(frame["date"].unique()) <= {20220408, 20220409, 20220410}
    assert np.allclose(rnd["exposure_prob"], 1 / 150)
    assert (std["exposure_prob"] > 0).all() and (std["exposure_prob"] <= 1).all()
    assert len(logs.item_text) == 150 and "tags:" in logs.item_text[0]
    dur = logs.video_features_basic["video_duration"].to_numpy()
    assert np.array_equal(dur[std["video_id"].to_numpy()], std["duration_ms"].to_numpy())


def test_determinism():
    a = UserSimulator().generate_logs(num_users=40, num_items=50, days=2, seed=1)
    b = UserSimulator().generate_logs(num_users=40, num_items=50, days=2, seed=1)
    c = UserSimulator().generate_logs(num_users=40, num_items=50, days=2, seed=2)
    pd.testing.assert_frame_equal(a.log_standard, b.log_standard)
    pd.testing.assert_frame_equal(a.user_features, b.user_features)
    assert a.item_text == b.item_text
    assert not a.log_standard[["video_id", "play_time_ms"]].equals(c.log_standard[["video_id", "play_time_ms"]])


def test_ground_truth_sanity(sim_logs):
    sim, logs = sim_logs
    # for a fixed item, higher affinity -> longer expected play time
    users = np.arange(120)
    for item in (0, 7, 42):
        truth = sim.score(users, np.full(120, item))
        order = np.argsort(truth["affinity"])
        assert np.all(np.diff(truth["expected_play_time"][order]) > 0)
        assert np.allclose(truth["expected_play_time"], truth["duration"] * truth["completion_rate"])
    for user in (0, 5):  # for a fixed user, dislike probability falls with affinity
        truth = sim.score(np.full(150, user), np.arange(150))
        order = np.argsort(truth["affinity"])
        assert np.all(np.diff(truth["dislike_prob"][order]) < 0)
        assert np.all(np.diff(truth["like_prob"][order]) > 0)
    # realised play times follow the ground truth on the random (unbiased) exposures
    rnd = logs.log_random
    truth = sim.score(rnd["user_id"].to_numpy(), rnd["video_id"].to_numpy())
    realised = rnd["play_time_ms"].to_numpy() / 1000
    corr = np.corrcoef(truth["expected_play_time"], realised)[0, 1]
    assert corr > 0.5
    assert abs(realised.mean() / truth["expected_play_time"].mean() - 1) < 0.1
    # the logging policy exposes higher-affinity items than random exposure
    std = logs.log_standard
    a_std = sim.score(std["user_id"].to_numpy(), std["video_id"].to_numpy())["affinity"].mean()
    assert a_std > truth["affinity"].mean() + 0.3
    # the oracle's top items beat random items on expected play time
    top = sim.oracle_top_k([0, 1, 2], k=5)
    best = sim.score(np.array([0, 1, 2])[:, None], top)["expected_play_time"].mean()
    assert best > sim.score(np.zeros(150, dtype=int), np.arange(150))["expected_play_time"].mean()


def test_score_torch_and_validation(sim_logs):
    sim, _ = sim_logs
    out = sim.score(torch.tensor([[0], [1]]), torch.tensor([[3, 4, 5], [6, 7, 8]]))
    assert out["expected_play_time"].shape == (2, 3) and out["expected_play_time"].dtype == torch.float32
    with pytest.raises(ValueError, match="item_ids must be in"):
        sim.score([0], [150])
    with pytest.raises(TypeError, match="integers"):
        sim.score([0.5], [1])
    with pytest.raises(ValueError, match="num_users"):
        UserSimulator(num_users=0)
    with pytest.raises(ValueError, match="random_exposure_rate"):
        SimulatorConfig(random_exposure_rate=2.0)


def test_written_files_load_like_in_memory(tmp_path, sim_logs):
    _, logs = sim_logs
    paths = logs.write(tmp_path, suffix="sim")
    assert {p.rsplit("/", 1)[-1] for p in paths} >= {"log_standard_sim.csv", "log_random_sim.csv",
                                                     "user_features_sim.csv",
                                                     "video_features_basic_sim.csv"}
    from_files = load_kuairand(tmp_path, variant="sim")
    in_memory = logs.to_dataset()
    a = from_files["interactions"].to_pandas()
    b = in_memory["interactions"].to_pandas()
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12)
    assert from_files["users"].num_rows == 120 and from_files["items"].num_rows == 150
