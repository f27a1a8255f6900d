"""Training throughput on CPU: OneRec-V2 (lazy decoder) vs OneRec-V1 (encoder-decoder) at equal
parameter count (V2 paper §2: "-90% training resources").

Both models get the same width, heads and context; V1's encoder + decoder layer counts are chosen so
its parameter count matches V2's within a few percent. Each step is forward + backward + AdamW on one
random schema batch; samples/s is measured after warm-up steps, in one run, and the ratio reported.

    python benchmarks/onerec_train_throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from kwaiformers.data.schema import CONTINUOUS_FEATURES, FEEDBACK_LABELS
from kwaiformers.models.onerec.configuration_onerec import OneRecConfig
from kwaiformers.models.onerec.modeling_onerec import OneRecForGenerativeRecommendation
from kwaiformers.models.onerec_v2.configuration_onerec_v2 import OneRecV2Config
from kwaiformers.models.onerec_v2.modeling_onerec_v2 import OneRecV2ForGenerativeRecommendation

VOCAB = [1000, 3, 8]


def batch_of(n: int, context: int, codebook: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    batch = {"user_static": torch.stack([torch.randint(0, v, (n,), generator=g) for v in VOCAB], 1)}
    for name, t in (("short", 20), ("long", context - 21)):
        batch[f"{name}_sids"] = torch.randint(0, codebook, (n, t, 3), generator=g)
        batch[f"{name}_mask"] = torch.ones(n, t, dtype=torch.bool)
        batch[f"{name}_feats"] = torch.rand(n, t, len(CONTINUOUS_FEATURES), generator=g)
        batch[f"{name}_labels"] = (torch.rand(n, t, len(FEEDBACK_LABELS), generator=g) < 0.2).float()
    batch["target_sids"] = torch.randint(0, codebook, (n, 3), generator=g)
    return batch


def params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def throughput(model, batch, steps: int, warmup: int) -> float:
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        opt.step()
    return steps * batch["user_static"].shape[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps, warmup = (3, 1) if args.quick else (10, 2)
    codebook, d = 256, args.hidden
    common = dict(user_feature_vocab_sizes=VOCAB, codebook_size=codebook, num_sid_levels=3,
                  short_seq_len=20, long_seq_len=args.context - 21, hidden_size=d,
                  num_attention_heads=4, intermediate_size=4 * d)
    torch.manual_seed(0)
    v2 = OneRecV2ForGenerativeRecommendation(OneRecV2Config(num_hidden_layers=8, embed_dim=32, **common))
    target = params(v2)
    best = None
    for layers in range(1, 13):  # V1 encoder = decoder depth, matched on parameters
        cfg = OneRecConfig(num_encoder_layers=layers, num_decoder_layers=layers, sid_embed_dim=32,
                           feature_embed_dim=32, user_feature_embed_dim=32, num_lifelong_queries=0, **common)
        with torch.device("meta"):
            n = params(OneRecForGenerativeRecommendation(cfg))
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (cfg, n)
    torch.manual_seed(0)
    v1 = OneRecForGenerativeRecommendation(best[0])
    g = torch.Generator().manual_seed(0)
    batch = batch_of(args.batch, args.context, codebook, g)
    v1_sps = throughput(v1, batch, steps, warmup)
    v2_sps = throughput(v2, batch, steps, warmup)
    print(f"context {args.context}, batch {args.batch}, width {d}, {steps} timed steps")
    print(f"{'model':<34} | {'params':>10} | {'samples/s':>10}")
    print("-" * 62)
    print(f"{'V1 enc-dec ' + str(best[0].num_encoder_layers) + '+' + str(best[0].num_decoder_layers) + ' layers':<34} | "
          f"{params(v1) / 1e6:>9.2f}M | {v1_sps:>10.1f}")
    print(f"{'V2 lazy decoder 8 layers':<34} | {target / 1e6:>9.2f}M | {v2_sps:>10.1f}")
    print(f"V2 / V1 training throughput: {v2_sps / v1_sps:.2f}x")
    print(json.dumps({
        "benchmark": "onerec_train_throughput", "context": args.context,
        "v1_params_m": round(params(v1) / 1e6, 3), "v2_params_m": round(target / 1e6, 3),
        "v1_samples_per_s": round(v1_sps, 2), "v2_samples_per_s": round(v2_sps, 2),
        "v2_over_v1": round(v2_sps / v1_sps, 3),
    }))


if __name__ == "__main__":
    main()
