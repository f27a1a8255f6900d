"""Beam search over items: ``model.recommend()`` vs ``model.generate(num_beams=B)`` with a trie
``prefix_allowed_tokens_fn``, same OneRec-V2 model, same users, same item index.

``recommend`` encodes the context once per user and shares its K/V across all beams (the beams are
folded into the cross-attention query axis) and applies the trie constraint as one batched mask per
level; ``generate`` is transformers' generic beam search (inputs expanded to B * beams rows, the
context computed for every row, one ``prefix_allowed_tokens_fn`` call per beam and step). Reports
items/s for both, their ratio, and whether the top-K lists agree (target: >= 10x at B = 128).

    python benchmarks/onerec_beam_search.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from kwaiformers.models.onerec.item_index import SemanticIdIndex
from kwaiformers.models.onerec_v2.configuration_onerec_v2 import OneRecV2Config
from kwaiformers.models.onerec_v2.modeling_onerec_v2 import OneRecV2ForGenerativeRecommendation


def build(num_items: int, codebook: int, context: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    config = OneRecV2Config(
        user_feature_vocab_sizes=[1000, 3, 8], codebook_size=codebook, num_sid_levels=3,
        short_seq_len=20, long_seq_len=context - 21, embed_dim=16, hidden_size=128,
        num_hidden_layers=4, num_attention_heads=4, num_kv_groups=4, intermediate_size=256,
    )
    torch.manual_seed(seed)
    model = OneRecV2ForGenerativeRecommendation(config).eval()
    codes = torch.randint(0, codebook, (num_items, 3), generator=g)
    index = SemanticIdIndex.from_codes(codes, level_sizes=[codebook] * 3,
                                       popularity=torch.rand(num_items, generator=g))
    return model, index, g


def users(n: int, context: int, codebook: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    batch = {"user_static": torch.stack([torch.randint(0, v, (n,), generator=g) for v in (1000, 3, 8)], 1)}
    for name, t in (("short", 20), ("long", context - 21)):
        batch[f"{name}_sids"] = torch.randint(0, codebook, (n, t, 3), generator=g)
        batch[f"{name}_mask"] = torch.ones(n, t, dtype=torch.bool)
        batch[f"{name}_feats"] = torch.rand(n, t, 4, generator=g)
        batch[f"{name}_labels"] = (torch.rand(n, t, 7, generator=g) < 0.2).float()
    return batch


def timed(fn, repeats: int = 1):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="B in {32, 128}, 4 users")
    parser.add_argument("--beams", type=int, nargs="+", default=None)
    parser.add_argument("--users", type=int, default=None)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--codebook", type=int, default=256)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 avoids oversubscription)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per path (best of; same for both)")
    args = parser.parse_args()
    beams = args.beams or ([32, 128] if args.quick else [32, 128, 512])
    n_users = args.users or (4 if args.quick else 8)
    torch.set_num_threads(args.threads)
    model, index, g = build(args.items, args.codebook, args.context)
    batch = users(n_users, args.context, args.codebook, g)
    k = args.top_k
    fn = model.prefix_allowed_tokens_fn(index)
    rows = []
    print(f"V2 model {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params, "
          f"{args.items} items, {n_users} users, context {args.context}, top-{k}")
    print(f"{'beam':>6} | {'recommend items/s':>18} | {'generate items/s':>17} | {'speed-up':>8} | top-K agree")
    print("-" * 74)
    with torch.no_grad():
        for b in beams:
            rec, t_rec = timed(lambda b=b: model.recommend(batch, num_items=k, beam_size=b, item_index=index),
                               args.repeats)
            gen, t_gen = timed(lambda b=b: model.generate(
                **batch, num_beams=b, num_return_sequences=k, length_penalty=0.0,
                prefix_allowed_tokens_fn=fn, return_dict_in_generate=True, output_scores=True,
            ), args.repeats)
            gen_sids = gen.sequences[:, 1:].view(n_users, k, 3)
            agree = bool(torch.equal(gen_sids, rec.sids))
            items = n_users * k
            row = {"beam": b, "recommend_items_per_s": items / t_rec, "generate_items_per_s": items / t_gen,
                   "speedup": t_gen / t_rec, "topk_agree": agree,
                   "legal": bool(rec.legal.all())}
            rows.append(row)
            print(f"{b:>6} | {row['recommend_items_per_s']:>18.1f} | {row['generate_items_per_s']:>17.1f} | "
                  f"{row['speedup']:>7.1f}x | {agree}")
    print(json.dumps({
        "benchmark": "onerec_beam_search",
        **{f"speedup_at_{r['beam']}": round(r["speedup"], 2) for r in rows},
        **{f"recommend_items_per_s_at_{r['beam']}": round(r["recommend_items_per_s"], 1) for r in rows},
        "topk_agree": all(r["topk_agree"] for r in rows),
        "all_legal": all(r["legal"] for r in rows),
    }))


if __name__ == "__main__":
    main()
