"""FLOPs per sample: OneRec-V1 encoder-decoder vs OneRec-V2 lazy decoder (V2 paper §2.1, Table 2),
in two conventions.

Both 1B-class presets are built on the ``meta`` device (no memory, no compute), at several context
lengths:

* **forward per sample** (measured): one sample's forward pass (context + the L target codes, loss
  included) counted with ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-add);
* **training per item, the paper's convention** (``6 x params x tokens``): every parameter costs 6
  FLOPs per token it processes in forward + backward, and the context of one request is shared by
  the ``k`` items served for it (``--items-per-request``, 5 in V2 App. B): V1 =
  ``6 (N_enc T_ctx / k + N_dec L)``, V2 = ``6 (N_ctx T_ctx / k + N_dec L)`` with ``N_enc`` / ``N_ctx``
  the parameters that process the context (V1's encoder, V2's context processor; embedding tables
  excluded) and ``N_dec`` the rest (decoder and heads).

The V2 paper reports 296.36 (1B enc-dec 1:1) vs 18.89 GFLOPs (1B lazy decoder) at context 512,
i.e. -94%; the target here is a V2/V1 ratio <= 0.08 at 512 that keeps falling as the context grows.

    python benchmarks/onerec_flops.py [--quick] [--contexts 512 3000] [--items-per-request 5]
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.utils.flop_counter import FlopCounterMode

from kwaiformers.models.onerec.configuration_onerec import OneRecConfig
from kwaiformers.models.onerec.modeling_onerec import OneRecForGenerativeRecommendation
from kwaiformers.models.onerec_v2.configuration_onerec_v2 import OneRecV2Config
from kwaiformers.models.onerec_v2.modeling_onerec_v2 import OneRecV2ForGenerativeRecommendation

SHORT = 20


def meta_batch(context: int, num_levels: int, user_features: int) -> dict[str, torch.Tensor]:
    """One sample whose context is ``1 user token + 20 short + (context - 21) long`` positions."""
    long = context - 1 - SHORT
    dev = "meta"
    batch = {"user_static": torch.zeros(1, user_features, dtype=torch.long, device=dev)}
    for name, t in (("short", SHORT), ("long", long)):
        batch[f"{name}_sids"] = torch.zeros(1, t, num_levels, dtype=torch.long, device=dev)
        batch[f"{name}_mask"] = torch.ones(1, t, dtype=torch.bool, device=dev)
        batch[f"{name}_feats"] = torch.zeros(1, t, 4, device=dev)
        batch[f"{name}_labels"] = torch.zeros(1, t, 7, device=dev)
    batch["target_sids"] = torch.zeros(1, num_levels, dtype=torch.long, device=dev)
    return batch


def _dense_params(module: torch.nn.Module) -> int:
    """Parameters excluding embedding tables (a lookup is no FLOP)."""
    emb = {id(p) for m in module.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    return sum(p.numel() for p in module.parameters() if id(p) not in emb)


def count(model_cls, config, context: int, items_per_request: int = 5) -> dict[str, float]:
    """Forward GFLOPs for one sample, the ``6 N T`` training GFLOPs per item (context shared by
    ``items_per_request``) and the parameter counts (billions)."""
    config._attn_implementation = "eager"  # every attention FLOP is a visible matmul
    with torch.device("meta"):
        model = model_cls(config)
    params = sum(p.numel() for p in model.parameters()) / 1e9
    batch = meta_batch(context, config.num_sid_levels, len(config.user_feature_vocab_sizes))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(**batch)
    ctx_module = model.encoder if hasattr(model, "encoder") else model.context_processor
    n_ctx = _dense_params(ctx_module)
    n_tgt = _dense_params(model) - n_ctx
    levels = config.num_sid_levels
    train = 6 * (n_ctx * context / items_per_request + n_tgt * levels)
    return {"forward": counter.get_total_flops() / 1e9, "train_6nt": train / 1e9, "params": params,
            "ctx_params": n_ctx / 1e9, "tgt_params": n_tgt / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="contexts 512 and 3000 only (the default)")
    parser.add_argument("--contexts", type=int, nargs="+", default=None)
    parser.add_argument("--v1-preset", default="onerec-encdec-1b")
    parser.add_argument("--v2-preset", default="onerec-v2-1b")
    parser.add_argument("--items-per-request", type=int, default=5,
                        help="items served per request, sharing one context (V2 App. B: 5)")
    args = parser.parse_args()
    if args.items_per_request < 1:
        parser.error("--items-per-request must be >= 1")
    contexts = args.contexts or ([512, 3000] if args.quick else [512, 1024, 3000, 6000])
    rows = []
    k = args.items_per_request
    print(f"{'':>8} | {'forward per sample (measured)':^38} | {f'training per item, 6 N T, k={k}':^38}")
    print(f"{'context':>8} | {'V1':>13} {'V2':>13} {'V2/V1':>8} | {'V1':>13} {'V2':>13} {'V2/V1':>8}")
    print("-" * 92)
    for n in contexts:
        v1_cfg = OneRecConfig.from_preset(
            args.v1_preset, short_seq_len=SHORT, long_seq_len=n - 1 - SHORT, num_lifelong_queries=0
        )
        v2_cfg = OneRecV2Config.from_preset(args.v2_preset, short_seq_len=SHORT, long_seq_len=n - 1 - SHORT)
        v1 = count(OneRecForGenerativeRecommendation, v1_cfg, n, k)
        v2 = count(OneRecV2ForGenerativeRecommendation, v2_cfg, n, k)
        rows.append({"context": n, "v1_gflops": v1["forward"], "v2_gflops": v2["forward"],
                     "ratio": v2["forward"] / v1["forward"], "v1_train_gflops": v1["train_6nt"],
                     "v2_train_gflops": v2["train_6nt"], "train_ratio": v2["train_6nt"] / v1["train_6nt"],
                     "v1_params_b": v1["params"], "v2_params_b": v2["params"], "v1": v1, "v2": v2})
        r = rows[-1]
        print(f"{n:>8} | {r['v1_gflops']:>13.2f} {r['v2_gflops']:>13.2f} {r['ratio']:>8.4f} | "
              f"{r['v1_train_gflops']:>13.2f} {r['v2_train_gflops']:>13.2f} {r['train_ratio']:>8.4f}")
    v1, v2 = rows[0]["v1"], rows[0]["v2"]
    print(f"(GFLOPs) parameters: V1 {v1['params']:.3f}B (encoder {v1['ctx_params']:.3f}B, decoder+heads "
          f"{v1['tgt_params']:.3f}B dense), V2 {v2['params']:.3f}B (context processor {v2['ctx_params']:.3f}B, "
          f"decoder+heads {v2['tgt_params']:.3f}B dense)")
    print("paper (V2 Table 2, context 512): 296.36 vs 18.89 GFLOPs, ratio 0.0637")
    ratios = [r["ratio"] for r in rows]
    print(json.dumps({
        "benchmark": "onerec_flops",
        "v1_preset": args.v1_preset,
        "v2_preset": args.v2_preset,
        "items_per_request": k,
        **{f"ratio_at_{r['context']}": round(r["ratio"], 5) for r in rows},
        **{f"v1_gflops_at_{r['context']}": round(r["v1_gflops"], 2) for r in rows},
        **{f"v2_gflops_at_{r['context']}": round(r["v2_gflops"], 2) for r in rows},
        **{f"train_ratio_at_{r['context']}": round(r["train_ratio"], 5) for r in rows},
        **{f"v1_train_gflops_at_{r['context']}": round(r["v1_train_gflops"], 2) for r in rows},
        **{f"v2_train_gflops_at_{r['context']}": round(r["v2_train_gflops"], 2) for r in rows},
        "ratio_falls_with_context": all(b < a for a, b in zip(ratios, ratios[1:])),
    }))


if __name__ == "__main__":
    main()
