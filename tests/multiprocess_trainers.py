"""Worker for ``tests/test_trainers_multiprocess.py``: runs trainer scenarios in this process group.

``python tests/multiprocess_trainers.py OUT_DIR SCENARIO [SCENARIO ...]`` (one process) or the same
under ``accelerate launch --multi_gpu --num_processes 2`` / ``torchrun --nproc_per_node 2``. Every
scenario uses the same *global* batch whatever the number of processes (per-device batch =
global / world), the same seed and data; rank 0 writes ``OUT_DIR/<scenario>.json`` (losses, logged
metrics, ``recommend()`` output) and ``OUT_DIR/<scenario>.safetensors`` (final parameters); every
rank writes a parameter digest so the test can check that the ranks hold the same model.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

GLOBAL_BATCH = 8


def _world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _save(out: Path, name: str, model, result: dict) -> None:
    import torch
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()
             if isinstance(v, torch.Tensor)}
    digest = float(sum(v.double().abs().sum() for v in state.values()))
    (out / f"{name}.rank{_rank()}.digest").write_text(repr(digest))
    if _rank() == 0:
        save_file(state, str(out / f"{name}.safetensors"))
        (out / f"{name}.json").write_text(json.dumps(result, default=float))


def _history(trainer) -> list[dict]:
    return [{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in trainer.state.log_history]


# ------------------------------------------------------------------------------- OneRec pretraining
def _record_wrapping(trainer_module, attr: str, seen: dict) -> None:
    """Patch the trainer class factory/class so that ``compute_loss`` records how the model it
    receives is wrapped (FSDP2: the module class is an ``FSDP...`` subclass, parameters DTensors)."""
    original = getattr(trainer_module, attr)

    def record(model):
        from torch.distributed.tensor import DTensor

        if not model.training or "model_class" in seen:  # the first training step only
            return
        seen["model_class"] = type(model).__name__
        seen["dtensor_params"] = any(isinstance(p, DTensor) for p in model.parameters())

    if attr == "_make_trainer_class":
        def factory():
            cls = original()

            class Recording(cls):
                def compute_loss(self, model, *args, **kwargs):
                    record(model)
                    return super().compute_loss(model, *args, **kwargs)

            return Recording

        setattr(trainer_module, attr, factory)
    else:
        class RecordingSFT(original):
            def compute_loss(self, model, *args, **kwargs):
                record(model)
                return super().compute_loss(model, *args, **kwargs)

        setattr(trainer_module, attr, RecordingSFT)


def _pretrain(out: Path, name: str, model_cfg: dict, **training) -> None:
    from safetensors.torch import load_file

    from kwaiformers.trainers import onerec_pretrain
    from kwaiformers.trainers.onerec_pretrain import load_recipe, run_recipe

    seen: dict = {}
    _record_wrapping(onerec_pretrain, "_make_trainer_class", seen)

    run_dir = out / name
    raw = {
        "model": model_cfg,
        "data": {"source": "simulator", "simulator": {"num_users": 40, "num_items": 60, "days": 2, "seed": 0},
                 "short_len": 6, "long_len": 8, "max_train_samples": 64, "max_eval_samples": 24},
        "tokenizer": {"num_levels": 2, "codebook_size": [6, 6], "embedding_dim": 8, "disambiguate": True},
        "training": {"output_dir": str(run_dir), "max_steps": 3,
                     "per_device_train_batch_size": 2 * GLOBAL_BATCH // _world(),
                     "per_device_eval_batch_size": 8, "learning_rate": 3e-3, "logging_steps": 1,
                     "save_steps": 3, "eval_strategy": "no", "report_to": "none", "use_cpu": True,
                     "seed": 0, "disable_tqdm": True, "dataloader_num_workers": 0, **training},
        "eval": {"ks": [1, 5], "beam_size": 6, "batch_size": 10, "max_batches": 2},
    }
    metrics = run_recipe(load_recipe(raw))
    if _world() > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()  # rank 0 saved the model
    state = json.loads((run_dir / "checkpoint-3" / "trainer_state.json").read_text())
    weights = load_file(str(run_dir / "model.safetensors"))
    import torch

    model = torch.nn.Module()
    for i, (_name, v) in enumerate(sorted(weights.items())):
        model.register_buffer(f"w{i}", v)
    _save(out, name, model, {"metrics": metrics, "history": state["log_history"],
                             "names": sorted(weights), "wrapping": seen})


def scenario_pretrain_v1_moe(out: Path) -> None:
    _pretrain(out, "pretrain_v1_moe", {
        "type": "onerec", "hidden_size": 16, "num_encoder_layers": 1, "num_decoder_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 32, "sid_embed_dim": 4, "feature_embed_dim": 4,
        "user_feature_embed_dim": 4, "num_experts": 4, "num_experts_per_tok": 1,
        "expert_intermediate_size": 8, "aux_free_bias_update_speed": 0.01})


_V2 = {"type": "onerec_v2", "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
       "embed_dim": 4, "intermediate_size": 32}


def scenario_pretrain_v2(out: Path) -> None:
    _pretrain(out, "pretrain_v2", _V2)


def _fsdp_settings(config: str) -> dict:
    import yaml

    root = Path(__file__).resolve().parent.parent
    training = yaml.safe_load((root / "trainers" / "configs" / config).read_text())["training"]
    return {k: training[k] for k in ("fsdp", "fsdp_config")}


def scenario_fsdp_refused(out: Path) -> None:
    """The shipped FSDP2 recipes' settings on CPU: a clear error, not a silent DDP run."""
    errors = {}
    for name, run in (("onerec_v2_fsdp2.yaml", lambda kw: _pretrain(out, "fsdp_v2", _V2, **kw)),
                      ("keye_sft_fsdp2.yaml", lambda kw: _keye_sft(out, "fsdp_keye", **kw))):
        try:
            run(_fsdp_settings(name))
            errors[name] = None
        except ValueError as exc:
            errors[name] = str(exc)
    if _rank() == 0:
        (out / "fsdp_refused.json").write_text(json.dumps(errors))


def scenario_moe_ddp(out: Path) -> None:
    """Aux-loss-free bias step after two forwards (gradient accumulation) under DDP: routing
    counts must not be overwritten by DDP's buffer broadcast and must be summed over ranks."""
    import torch
    from torch.nn.functional import one_hot

    from kwaiformers.models.onerec.modeling_moe import (
        OneRecMoE,
        exclude_moe_counters_from_ddp,
        moe_load_stats,
        update_aux_free_biases,
    )

    torch.manual_seed(0)
    root = torch.nn.Sequential(OneRecMoE(4, 4, 1, 4))
    with torch.no_grad():
        root[0].gate.weight.copy_(torch.eye(4) * 10)  # token one_hot(e) routes to expert e
    exclude_moe_counters_from_ddp(root)
    model = root
    if _world() > 1:
        from accelerate import PartialState

        PartialState(cpu=True)  # joins the gloo group of the launcher
        model = torch.nn.parallel.DistributedDataParallel(root, find_unused_parameters=True)
    experts = {0: [[0, 0, 0, 1], [0, 0, 1, 0]], 1: [[2, 2, 2, 3], [2, 3, 3, 3]]}  # per rank, per micro-batch
    ranks = [_rank()] if _world() > 1 else [0, 1]
    for micro in range(2):
        ids = [e for r in ranks for e in experts[r][micro]]
        model(one_hot(torch.tensor(ids), 4).float()).sum().backward()
    update_aux_free_biases(root, 0.1)
    _save(out, "moe_ddp", root, {"bias": root[0].e_score_correction_bias.tolist(),
                                 "stats": moe_load_stats(root), "history": []})


# ------------------------------------------------------------------------------- ECPO / GBPO
def _recommend(trainer) -> list:
    import torch
    from test_onerec_alignment_trainers import _rows

    from kwaiformers.trainers.onerec_rl_common import stack_collator

    policy = trainer._policy()  # the unwrapped model
    batch = stack_collator(_rows(n=4, seed=7))
    with torch.no_grad():
        rec = policy.recommend(batch, num_items=3, beam_size=6, item_index=trainer.item_index)
    return rec.sids.tolist()


def _rl(out: Path, name: str, trainer) -> None:
    trainer.train()
    _save(out, name, trainer._policy(), {"history": _history(trainer), "recommend": _recommend(trainer)})


def scenario_ecpo(out: Path) -> None:
    from test_onerec_alignment_trainers import _common, _dataset, _model, _pscore

    from kwaiformers.trainers.ecpo_config import ECPOConfig
    from kwaiformers.trainers.ecpo_trainer import ECPOTrainer

    model, index = _model()
    args = ECPOConfig(**_common(out / "ecpo", max_steps=3), per_device_train_batch_size=GLOBAL_BATCH // _world(),
                      num_generations=4, format_reward_k=2, beam_size=6, scale_rewards="batch",
                      sft_filter_quantile=0.5)
    _rl(out, "ecpo", ECPOTrainer(model, reward_model=_pscore(), args=args, train_dataset=_dataset(),
                                 item_index=index))


def scenario_gbpo(out: Path) -> None:
    from test_onerec_alignment_trainers import _common, _dataset, _model

    from kwaiformers.trainers.gbpo_config import GBPOConfig
    from kwaiformers.trainers.gbpo_trainer import GBPOTrainer

    model, index = _model()
    args = GBPOConfig(**_common(out / "gbpo", max_steps=3), per_device_train_batch_size=GLOBAL_BATCH // _world(),
                      dars_inclusive_threshold=True)
    _rl(out, "gbpo", GBPOTrainer(model, args=args, train_dataset=_dataset(), item_index=index))


def scenario_gbpo_hybrid(out: Path) -> None:
    from test_onerec_alignment_trainers import _common, _dataset, _model, _pscore

    from kwaiformers.trainers.gbpo_config import GBPOConfig
    from kwaiformers.trainers.gbpo_trainer import GBPOTrainer

    model, index = _model()
    args = GBPOConfig(**_common(out / "gbpo_hybrid", max_steps=2),
                      per_device_train_batch_size=GLOBAL_BATCH // _world(), mode="hybrid",
                      num_generations=2, beam_size=4, scale_rewards="batch", dars_inclusive_threshold=True)
    _rl(out, "gbpo_hybrid", GBPOTrainer(model, args=args, train_dataset=_dataset(), reward_model=_pscore(),
                                        item_index=index))


# ------------------------------------------------------------------------------- SFT / GPPO / Keye
def _reasoning_config(name: str, per_device: int, **training) -> dict:
    import yaml

    root = Path(__file__).resolve().parent.parent
    config = yaml.safe_load((root / "trainers" / "configs" / name).read_text())
    config["training"].update(per_device_train_batch_size=per_device, **training)
    config["dataset"]["num_samples"] = 32
    return config


def scenario_sft(out: Path) -> None:
    from kwaiformers.trainers.recipes_reasoning import run_sft

    config = _reasoning_config("tiny_sft_cpu.yaml", GLOBAL_BATCH // _world(), max_steps=3,
                               output_dir=str(out / "sft"), disable_tqdm=True)
    trainer = run_sft(config, train=False)
    trainer.train()
    _save(out, "sft", trainer.model, {"history": _history(trainer)})


def _batch_independent_sampling(model, group_size: int) -> None:
    """Make ``model.generate`` sample every row with its own seed (from the prompt and the row's
    place in its group) so that completions do not depend on how rows are split into batches:
    then the 1- and 2-process runs sample the same completions and can be compared exactly."""
    import zlib

    import torch

    generate = model.generate

    def per_row(*, input_ids, attention_mask, **kwargs):
        rows = []
        for i in range(input_ids.shape[0]):
            prompt = input_ids[i][attention_mask[i].bool()].tolist()
            torch.manual_seed(zlib.crc32(repr(prompt).encode()) + i % group_size)
            rows.append(generate(input_ids=input_ids[i:i + 1], attention_mask=attention_mask[i:i + 1],
                                 **kwargs)[0])
        pad = model.generation_config.pad_token_id
        width = max(len(r) for r in rows)
        return torch.stack([torch.cat([r, r.new_full((width - len(r),), pad)]) for r in rows])

    model.generate = per_row


def _gppo(out: Path, name: str, **training) -> None:
    from kwaiformers.trainers.recipes_reasoning import run_gppo

    # per-process generation batch = per_device * steps_per_generation = whole groups of 4
    config = _reasoning_config("tiny_gppo_cpu.yaml", GLOBAL_BATCH // _world(), output_dir=str(out / name),
                               max_completion_length=10, disable_tqdm=True, **training)
    trainer = run_gppo(config, train=False)
    _batch_independent_sampling(trainer.model, trainer.num_generations)
    trainer.train()
    _save(out, name, trainer.model, {"history": _history(trainer)})


def scenario_gppo(out: Path) -> None:
    # one optimiser step per generation: the 1- and 2-process runs train on the same rows
    _gppo(out, "gppo", steps_per_generation=1, max_steps=2)


def scenario_gppo_resample(out: Path) -> None:
    # dynamic sampling + 2 optimiser steps per generation. TRL shuffles each process' generation
    # batch and splits it into steps_per_generation micro-batches *per process*, so the rows of
    # a step differ from the 1-process run: the test compares the generation-level quantities
    _gppo(out, "gppo_resample", steps_per_generation=2, zero_std_groups="resample",
          dynamic_sampling_max_rounds=3, max_steps=2)


def _keye_sft(out: Path, name: str, **training) -> None:
    import trl
    import yaml

    from kwaiformers.trainers.keye_sft_recipe import build_keye_sft_trainer

    seen: dict = {}
    _record_wrapping(trl, "SFTTrainer", seen)
    root = Path(__file__).resolve().parent.parent
    cfg = yaml.safe_load((root / "trainers" / "configs" / "keye_sft_tiny.yaml").read_text())
    cfg["dataset"]["synthetic"] = {"num_samples": 8}
    cfg["training"].update(per_device_train_batch_size=4 // _world(), max_steps=2, disable_tqdm=True,
                           **training)
    trainer = build_keye_sft_trainer(cfg, output_dir=str(out / name))
    trainer.train()
    _save(out, name, trainer.model, {"history": _history(trainer), "wrapping": seen})


def scenario_keye_sft(out: Path) -> None:
    _keye_sft(out, "keye_sft")


def main(argv: list[str]) -> None:
    import torch

    torch.set_num_threads(1)
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for name in argv[1:]:
        start = time.perf_counter()
        globals()[f"scenario_{name}"](out)
        print(f"scenario {name}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
