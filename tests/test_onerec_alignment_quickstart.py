"""`kwaiformers quickstart --smoke`: the whole pipeline, offline, tiny sizes."""

from __future__ import annotations

import argparse
import json
import math


def test_quickstart_smoke(tmp_path, capsys):
    from kwaiformers import quickstart

    parser = argparse.ArgumentParser()
    quickstart.add_arguments(parser)
    args = parser.parse_args(["--smoke", "--output-dir", str(tmp_path), "--no-progress"])
    assert quickstart.run(args) == 0
    printed = capsys.readouterr().out
    assert "Recall@10" in printed and "identical" in printed
    results = json.loads((tmp_path / "results.json").read_text())
    for side in ("sft", "aligned"):
        for key in ("expected_play_time", "completion_rate", "dislike_rate", "recall@10", "legality"):
            assert math.isfinite(results[side][key]), (side, key)
        assert 0 <= results[side]["dislike_rate"] <= 1 and 0 <= results[side]["legality"] <= 1
    assert results["reload_identical"] is True
    assert (tmp_path / "quickstart.png").stat().st_size > 10_000
    assert (tmp_path / "aligned" / "config.json").exists()
    assert all(math.isfinite(h["loss"]) for h in results["align_log"])
    assert len(results["pretrain_log"]) > 0


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
