"""Every trainer under 2-process data parallelism (gloo, CPU) equals the same run in one process.

One ``accelerate launch --multi_gpu --num_processes 2`` group runs all scenarios of
``tests/multiprocess_trainers.py`` (start-up is paid once) while the 1-process reference runs
alongside; both use the same seed, data and *global* batch (per-device batch = global / world).

Tolerances: the two runs do the same arithmetic except that the 2-process run sums the batch in
two halves (per-rank means, DDP's gradient average, gathered statistics), so results differ by
float32 re-association only. Measured: parameter differences <= 6e-6 after 3 AdamW steps at lr
1e-2 (a wrong gradient, e.g. one rank's half of the batch, moves parameters by ~lr = 1e-2), and
identical discrete outputs (beam-search recommendations, MoE routing statistics, DARS / format
reward decisions). Hence: losses and logged metrics ``rtol=1e-4``, parameters ``atol=5e-5``,
recommendations exact.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKER = HERE / "multiprocess_trainers.py"
pytestmark = pytest.mark.multiprocess

SCENARIOS = ["fsdp_refused", "moe_ddp", "pretrain_v1_moe", "pretrain_v2", "ecpo", "gbpo", "gbpo_hybrid",
             "sft", "gppo", "gppo_resample", "keye_sft"]
_VOLATILE = {"step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second",
             "test_runtime", "test_samples_per_second", "test_steps_per_second", "total_flos"}


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1", PYTHONPATH=str(ROOT / "src"))
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def launch_command(out: Path, port: int) -> list[str]:
    """The documented launch (docs: "Scaling out"), here on 2 CPU processes."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(port), str(WORKER), str(out), *SCENARIOS]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``{"one": dir, "two": dir}`` after both runs finished (each writes one JSON per scenario)."""
    from kwaiformers.federated.launch import free_port

    base = tmp_path_factory.mktemp("trainers_mp")
    one, two = base / "one", base / "two"
    procs = {
        "two": subprocess.Popen(launch_command(two, free_port()), env=_env(), cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
        "one": subprocess.Popen([sys.executable, str(WORKER), str(one), *SCENARIOS], env=_env(), cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
    }
    deadline = time.monotonic() + 280
    for name, proc in procs.items():
        try:
            out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for p in procs.values():
                p.kill()
            pytest.fail(f"the {name}-process run did not finish in time (hang?)")
        assert proc.returncode == 0, out[-4000:]
    return {"one": one, "two": two}


def _load(runs, name: str):
    from safetensors.torch import load_file

    out = {}
    for key, path in runs.items():
        out[key] = (json.loads((path / f"{name}.json").read_text()),
                    load_file(str(path / f"{name}.safetensors")))
    return out


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6)


def _assert_same(runs, name: str, *, min_steps: int) -> dict:
    """Same logged losses/metrics at every step, same final parameters, ranks identical."""

    res = _load(runs, name)
    (one, w1), (two, w2) = res["one"], res["two"]
    h1, h2 = one["history"], two["history"]
    assert len(h1) == len(h2) and sum("loss" in h for h in h1) >= min_steps
    for a, b in zip(h1, h2):
        assert set(a) == set(b), (name, set(a) ^ set(b))
        for key in set(a) - _VOLATILE:
            assert _close(a[key], b[key]), (name, a.get("step"), key, a[key], b[key])
    assert set(w1) == set(w2)
    worst = max(float((w1[k].double() - w2[k].double()).abs().max()) for k in w1)
    assert worst < 5e-5, (name, worst)
    # training moved the parameters far more than the tolerance (the check can fail)
    digests = {(runs["two"] / f"{name}.rank{r}.digest").read_text() for r in (0, 1)}
    assert len(digests) == 1, f"{name}: the two ranks hold different parameters"
    return one | {"two": two}


def test_onerec_pretraining_v1_moe(runs):
    res = _assert_same(runs, "pretrain_v1_moe", min_steps=3)
    first = res["history"][0]
    # MoE load statistics of the global batch (a rank's own counts would differ) and bias updates
    assert first["moe/max_load_ratio"] >= 1.0 and first["moe/bias_abs_mean"] > 0
    # evaluation: loss (Trainer) and beam-search Recall/NDCG/legality over the sharded test users
    for key in ("test_loss", "test_recall@5", "test_ndcg@5", "test_legality", "test_popularity_recall@5"):
        assert _close(res["metrics"][key], res["two"]["metrics"][key]), key
    assert res["metrics"]["test_legality"] == 1.0


def test_moe_bias_update_uses_the_load_of_all_ranks(runs):
    res = _load(runs, "moe_ddp")
    (one, _), (two, _) = res["one"], res["two"]
    # global load [6, 2, 4, 4] (mean 4): sign(mean - load) * 0.1; rank 0 alone ([6, 2, 0, 0]) or
    # counts overwritten by DDP's buffer broadcast would give another step
    assert one["bias"] == two["bias"] == pytest.approx([-0.1, 0.1, 0.0, 0.0])
    assert one["stats"] == pytest.approx(two["stats"]) and one["stats"]["moe/max_load_ratio"] == 1.5


def test_onerec_pretraining_v2(runs):
    res = _assert_same(runs, "pretrain_v2", min_steps=3)
    assert res["two"]["wrapping"]["model_class"] == "DistributedDataParallel"  # really 2 ranks
    for key in ("test_loss", "test_recall@1", "test_ndcg@5"):
        assert _close(res["metrics"][key], res["two"]["metrics"][key]), key


@pytest.mark.parametrize("name", ["ecpo", "gbpo", "gbpo_hybrid"])
def test_onerec_alignment(runs, name):
    res = _assert_same(runs, name, min_steps=2)
    # recommend() on the unwrapped policy after training
    assert res["recommend"] == res["two"]["recommend"] and len(res["recommend"]) == 4
    keys = set().union(*res["history"])
    expected = {"ecpo": ("reward", "reward_std", "legality", "format/selected_legal_frac", "sft_loss"),
                "gbpo": ("dars/tau", "dars/positive_frac", "gbpo/bound_active_frac", "sft_loss"),
                "gbpo_hybrid": ("rollout/reward", "rollout_loss", "legality")}[name]
    assert set(expected) <= keys


def test_reasoning_sft(runs):
    _assert_same(runs, "sft", min_steps=3)  # token-level loss averaged over both ranks' tokens


def test_keye_sft_with_lora(runs):
    res = _assert_same(runs, "keye_sft", min_steps=2)
    assert res["two"]["wrapping"]["model_class"] == "DistributedDataParallel"


def test_fsdp_recipes_refuse_cpu_instead_of_silently_running_ddp(runs):
    """accelerate 1.15 ignores the FSDP plugin for CPU (gloo) process groups: the FSDP2 recipe
    settings would train unsharded under DDP, so they stop with a clear error on CPU."""
    for key in ("one", "two"):
        errors = json.loads((runs[key] / "fsdp_refused.json").read_text())
        assert set(errors) == {"onerec_v2_fsdp2.yaml", "keye_sft_fsdp2.yaml"}
        for message in errors.values():
            assert message and "training.fsdp is set but this run is on CPU" in message


def test_gppo_rewards_and_advantages_over_the_global_batch(runs):
    res = _assert_same(runs, "gppo", min_steps=2)
    assert "reward_std" in res["history"][0] and "clip_ratio/region_mean" in res["history"][0]


def test_gppo_dynamic_sampling_with_steps_per_generation(runs):
    """TRL splits each process' generation batch into ``steps_per_generation`` micro-batches per
    process (after a per-process shuffle), and refill prompts are drawn per process, so steps do
    not see the rows of the 1-process run: compare the generation batch and check the refill."""
    res = _load(runs, "gppo_resample")
    (one, _), (two, _) = res["one"], res["two"]
    first1, first2 = one["history"][0], two["history"][0]
    # the same original generation batch: same share of zero-std groups, fully refilled in both
    assert first1["gppo/kept_group_frac"] == first2["gppo/kept_group_frac"] < 1.0
    assert first1["gppo/trained_group_frac"] == first2["gppo/trained_group_frac"] == 1.0
    assert first2["gppo/dynamic_sampling_rounds"] >= 1.0
    assert all(math.isfinite(h["loss"]) for h in two["history"] if "loss" in h)
    digests = {(runs["two"] / f"gppo_resample.rank{r}.digest").read_text() for r in (0, 1)}
    assert len(digests) == 1
