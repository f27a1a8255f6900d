"""``kwaiformers simulate`` and ``kwaiformers semantic-ids`` end to end on tiny sizes."""

from __future__ import annotations

import json

import pytest

from kwaiformers.cli import main
from kwaiformers.models.onerec.semantic_ids import SemanticIdIndex, SemanticIdTokenizer

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def test_simulate_then_semantic_ids(tmp_path, capsys):
    logs = tmp_path / "simlogs"
    assert main(["simulate", "--out", str(logs), "--users", "30", "--items", "40", "--days", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["standard_impressions"] > 0
    assert (logs / "log_standard_sim.csv").is_file() and (logs / "video_text_sim.csv").is_file()
    out = tmp_path / "sid"
    assert main(["semantic-ids", "--kuairand", str(logs), "--variant", "sim", "--dim", "8",
                 "--codebook-size", "4", "--levels", "2", "--disambiguate", "--out", str(out)]) == 0
    report = json.loads((out / "quality_report.json").read_text())
    assert report["num_items"] == 40 and len(report["entropy"]) == 2
    tok = SemanticIdTokenizer.from_pretrained(out)
    index = SemanticIdIndex.from_pretrained(out)
    assert tok.codebook_sizes == [4, 4] and index.num_levels == 3 and index.disambiguated
    assert index.num_tuples == index.num_items == 40  # one-to-one after disambiguation
    capsys.readouterr()
    assert main(["semantic-ids", "--out", str(out)]) == 2  # no dataset given: a user error
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--kuairand" in err[0]
