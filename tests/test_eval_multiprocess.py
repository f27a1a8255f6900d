"""``accelerate launch --multi_gpu --num_processes 2 -m kwaiformers.cli eval aime ...`` on CPU: the
processes share the missing generations, the shards are merged without duplicates or gaps, a
crashed multi-process run (main cache + a leftover shard) resumes without regenerating, and the
results equal the 1-process run's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from utils import make_tiny_qwen3, make_tiny_tokenizer

from kwaiformers.evaluation.runner import CACHE_FILE, META_FILE, GenerationCache

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.multiprocess

N_PROBLEMS, N = 7, 2


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_eval_shards_merges_and_resumes_across_processes(tmp_path):
    from kwaiformers.cli import main
    from kwaiformers.federated.launch import free_port

    tok = make_tiny_tokenizer()
    model_dir = tmp_path / "tiny"
    make_tiny_qwen3(tok).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    data = tmp_path / "aime.jsonl"
    data.write_text("".join(json.dumps({"id": 100 + i, "problem": f"Find {i}+{i}.", "answer": str(2 * i),
                                        "year": 2024}) + "\n" for i in range(N_PROBLEMS)))
    args = ["eval", "aime", "--dataset", str(data), "--model", str(model_dir), "--n", str(N), "--k", "1,2",
            "--max-new-tokens", "4", "--batch-size", "2", "--temperature", "0", "--model-name", "tiny",
            "--no-progress", "--chat-template-kwargs", '{"enable_thinking": false}']
    # the 1-process reference
    ref = tmp_path / "ref"
    assert main([*args, "--output-dir", str(ref)]) == 0
    reference = {(r["sample_id"], r["sample_index"]): r["text"] for r in _rows(ref / CACHE_FILE)}
    assert len(reference) == N_PROBLEMS * N

    # a crashed 2-process run: 3 generations in the main cache, 2 in process 1's shard
    out = tmp_path / "run"
    out.mkdir()
    (out / META_FILE).write_text((ref / META_FILE).read_text())
    keys = sorted(reference)
    marked = {k: f"cached {k}" for k in keys[:5]}
    for rows, name in ((keys[:3], CACHE_FILE), (keys[3:5], "generations.rank1.jsonl")):
        (out / name).write_text("".join(json.dumps({"sample_id": k[0], "sample_index": k[1], "text": marked[k],
                                                    "finish_reason": "stop", "num_tokens": 1}) + "\n"
                                        for k in rows))
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1", PYTHONPATH=str(ROOT / "src"))
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), "-m", "kwaiformers.cli", *args, "--output-dir", str(out)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-4000:]
    assert res.stdout.count("task aime") == 1  # the summary is printed once... by process 0

    rows = _rows(out / CACHE_FILE)
    got = [(r["sample_id"], r["sample_index"]) for r in rows]
    assert len(got) == len(set(got)) == N_PROBLEMS * N  # no duplicates, no gaps
    assert not GenerationCache(out).shard_paths()  # shards merged and removed
    texts = {(r["sample_id"], r["sample_index"]): r["text"] for r in rows}
    for k in keys:  # cached rows kept (not regenerated); the rest = the 1-process generations
        assert texts[k] == marked.get(k, reference[k]), k
    results = json.loads((out / "results.json").read_text())
    assert results["num_problems"] == N_PROBLEMS and results["n"] == N
