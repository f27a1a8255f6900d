"""`kwaiformers quickstart --smoke`: the whole pipeline, offline, tiny sizes."""

from __future__ import annotations

import argparse
import json
import math


def test_quickstart_smoke(tmp_path, capsys):
    from kwaiformers import quickstart

    parser = argparse.ArgumentParser()
    quickstart.add_arguments(parser)
    # the smoke sizes are too small to personalise: the comparison needs --allow-context-blind
    args = parser.parse_args(["--smoke", "--output-dir", str(tmp_path), "--no-progress",
                              "--allow-context-blind"])
    assert quickstart.run(args) == 0
    printed = capsys.readouterr().out
    assert "personalisation diagnostic" in printed and "context-blind" in printed
    assert "NTP control" in printed and "GBPO + NTP" in printed and "identical" in printed
    assert "paired difference vs NTP control" in printed
    results = json.loads((tmp_path / "results.json").read_text())
    assert not results["diagnostic"]["personalised"] and results["refused"]
    assert results["data"]["item_coverage"] == 1.0
    arms = results["arms"]
    for arm in ("ntp", "gbpo"):
        assert sorted(arms[arm]) == ["0", "1"]
        for metrics in arms[arm].values():
            for key in ("expected_play_time", "completion_rate", "dislike_rate", "mean_duration",
                        "recall@10", "ndcg@10"):
                assert math.isfinite(metrics[key]), (arm, key)
            assert 0 <= metrics["dislike_rate"] <= 1
    assert results["reload_identical"] is True
    assert (tmp_path / "quickstart.png").stat().st_size > 10_000
    assert (tmp_path / "aligned" / "config.json").exists()
    assert all(math.isfinite(h["loss"]) for h in results["align_log"])
    assert len(results["pretrain_log"]) > 0


def test_quickstart_refuses_a_context_blind_base(monkeypatch, capsys):
    from kwaiformers import quickstart
    from kwaiformers.trainers.onerec_rl_recipe import context_blind_message

    diag = {"failed": ["the users' top-10 lists hold 11 distinct items"], "model_nll": [2.0],
            "popularity_nll": [2.0], "model_loss": 2.0, "popularity_loss": 2.0, "loss_gain": 0.0,
            "distinct_items": 11, "catalogue_items": 400, "mean_jaccard": 0.99,
            "first_level_kl": 1e-6, "num_users": 600, "num_rows": 600, "k": 10, "personalised": False}
    msg = context_blind_message(diag)
    assert "context-blind" in msg and "11 distinct items" in msg
    assert "--pretrain-steps" in msg and "--policy-temperature" in msg
    # the command prints the diagnostic and the refusal, no table, exit status 1
    monkeypatch.setattr(quickstart, "run_quickstart", lambda args: {"diagnostic": diag, "refused": msg})
    assert quickstart.run(argparse.Namespace()) == 1
    printed = capsys.readouterr().out
    assert "CONTEXT-BLIND" in printed and "refused:" in printed and "NTP control" not in printed


def test_quickstart_rejects_bad_sizes(tmp_path):
    import pytest

    from kwaiformers import quickstart

    parser = argparse.ArgumentParser()
    quickstart.add_arguments(parser)
    args = parser.parse_args(["--smoke", "--num-users", "0", "--output-dir", str(tmp_path)])
    with pytest.raises(ValueError, match="--num-users must be > 0"):
        quickstart.run(args)


def test_onerec_rl_recipe_ecpo_v1_from_yaml(tmp_path, capsys):
    """`kwaiformers train onerec-rl` path: YAML -> data -> tiny V1 -> P-Score -> ECPO -> eval."""
    import yaml

    from kwaiformers.cli import main

    cfg = {
        "algorithm": "ecpo", "seed": 0, "output_dir": str(tmp_path / "run"),
        "data": {"num_users": 40, "num_items": 60, "days": 2, "short_len": 4, "long_len": 4},
        "model": {"version": "v1", "hidden_size": 16, "num_heads": 2, "pretrain_steps": 2},
        "reward_model": {"train_steps": 2},
        "trainer": {"max_steps": 1, "per_device_train_batch_size": 8, "num_generations": 4,
                    "format_reward_k": 1, "logging_steps": 1},
        "eval": {"max_users": 8},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", "onerec-rl", "--config", str(path), "--no-progress"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    out = json.loads(last)
    assert math.isfinite(out["after"]["legality"]) and math.isfinite(out["after"]["expected_play_time"])
    assert (tmp_path / "run" / "final" / "config.json").exists()
