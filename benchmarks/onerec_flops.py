"""Forward FLOPs per sample: OneRec-V1 encoder-decoder vs OneRec-V2 lazy decoder (V2 paper §2.1, Table 2).

Both 1B-class presets are built on the ``meta`` device (no memory, no compute) and one sample's
forward pass (context + the L target codes, loss included) is counted with
``torch.utils.flop_counter.FlopCounterMode`` at several context lengths. The V2 paper reports
296.36 (1B enc-dec 1:1) vs 18.89 GFLOPs (1B lazy decoder) at context 512, i.e. -94%; the target here
is a V2/V1 ratio <= 0.08 at 512 that keeps falling as the context grows.

    python benchmarks/onerec_flops.py [--quick] [--contexts 512 3000]
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


def count(model_cls, config, context: int) -> tuple[float, float]:
    """(forward GFLOPs for one sample, parameters in billions)."""
    config._attn_implementation = "eager"  # every attention FLOP is a visible matmul
    with torch.device("meta"):
        model = model_cls(config)
    params = sum(p.numel() for p in model.parameters()) / 1e9
    batch = meta_batch(context, config.num_sid_levels, len(config.user_feature_vocab_sizes))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(**batch)
    return counter.get_total_flops() / 1e9, params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="contexts 512 and 3000 only (the default)")
    parser.add_argument("--contexts", type=int, nargs="+", default=None)
    parser.add_argument("--v1-preset", default="onerec-encdec-1b")
    parser.add_argument("--v2-preset", default="onerec-v2-1b")
    args = parser.parse_args()
    contexts = args.contexts or ([512, 3000] if args.quick else [512, 1024, 3000, 6000])
    rows = []
    print(f"{'context':>8} | {'V1 ' + args.v1_preset:>24} | {'V2 ' + args.v2_preset:>22} | {'V2/V1':>7}")
    print("-" * 72)
    for n in contexts:
        v1_cfg = OneRecConfig.from_preset(
            args.v1_preset, short_seq_len=SHORT, long_seq_len=n - 1 - SHORT, num_lifelong_queries=0
        )
        v2_cfg = OneRecV2Config.from_preset(args.v2_preset, short_seq_len=SHORT, long_seq_len=n - 1 - SHORT)
        v1, p1 = count(OneRecForGenerativeRecommendation, v1_cfg, n)
        v2, p2 = count(OneRecV2ForGenerativeRecommendation, v2_cfg, n)
        rows.append({"context": n, "v1_gflops": v1, "v2_gflops": v2, "ratio": v2 / v1,
                     "v1_params_b": p1, "v2_params_b": p2})
        print(f"{n:>8} | {v1:>17.2f} GFLOPs | {v2:>15.2f} GFLOPs | {v2 / v1:>7.4f}")
    print(f"parameters: V1 {rows[0]['v1_params_b']:.3f}B, V2 {rows[0]['v2_params_b']:.3f}B "
          "(context-length-dependent position tables included)")
    print("paper (V2 Table 2, context 512): 296.36 vs 18.89 GFLOPs, ratio 0.0637")
    ratios = [r["ratio"] for r in rows]
    print(json.dumps({
        "benchmark": "onerec_flops",
        "v1_preset": args.v1_preset,
        "v2_preset": args.v2_preset,
        **{f"ratio_at_{r['context']}": round(r["ratio"], 5) for r in rows},
        **{f"v1_gflops_at_{r['context']}": round(r["v1_gflops"], 2) for r in rows},
        **{f"v2_gflops_at_{r['context']}": round(r["v2_gflops"], 2) for r in rows},
        "ratio_falls_with_context": all(b < a for a, b in zip(ratios, ratios[1:])),
    }))


if __name__ == "__main__":
    main()
