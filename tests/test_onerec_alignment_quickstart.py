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
