"""``kwaiformers semantic-ids``: fit a semantic-ID tokenizer and item index from a dataset."""

from __future__ import annotations

import argparse
import json
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--kuairand", metavar="DIR", help="KuaiRand (or simulated) CSV directory")
    src.add_argument("--kuairec", metavar="DIR", help="KuaiRec data directory")
    src.add_argument("--movielens", metavar="DIR", help="MovieLens 100K / 1M directory")
    parser.add_argument("--variant", default=None, help="KuaiRand file variant (pure, 1k, 27k, sim)")
    parser.add_argument("--embeddings", choices=("collaborative", "text"), default="collaborative")
    parser.add_argument("--text-model", default=None, help="encoder for --embeddings text")
    parser.add_argument("--dim", type=int, default=64, help="collaborative embedding size")
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--codebook-size", type=int, default=256)
    parser.add_argument("--method", choices=("kmeans", "balanced"), default="kmeans")
    parser.add_argument("--niter", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--disambiguate", action="store_true", help="TIGER-style extra level")
    parser.add_argument("--out", required=True, help="directory for the tokenizer and index")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from kwaiformers.models.onerec.semantic_ids import SemanticIdTokenizer

    from .embeddings import collaborative_embeddings, text_embeddings
    from .loaders import load_kuairand, load_kuairec, load_movielens

    if args.kuairand:
        data = load_kuairand(args.kuairand, variant=args.variant)
    elif args.kuairec:
        data = load_kuairec(args.kuairec)
    else:
        data = load_movielens(args.movielens)
    inter_items = np.asarray(data["interactions"]["item_id"], dtype=np.int64)
    item_ids = np.union1d(np.asarray(data["items"]["item_id"], dtype=np.int64), inter_items)
    if args.embeddings == "text":
        text = dict(zip(data["items"]["item_id"], data["items"]["text"]))
        emb = text_embeddings([text.get(int(i), f"item {int(i)}") for i in item_ids],
                              model_name_or_path=args.text_model)
    else:
        _, emb = collaborative_embeddings(data["interactions"], dim=args.dim, item_ids=item_ids,
                                          seed=args.seed)
    tok = SemanticIdTokenizer.fit(emb, num_levels=args.levels, codebook_size=args.codebook_size,
                                  method=args.method, niter=args.niter, seed=args.seed)
    pos = np.searchsorted(item_ids, inter_items)
    popularity = torch.tensor(np.bincount(pos, minlength=len(item_ids)), dtype=torch.float64)
    index = tok.build_index(item_ids=torch.from_numpy(item_ids), popularity=popularity,
                            disambiguate=args.disambiguate)
    report = tok.quality_report(emb, tok.fit_codes_)
    report["index_level_sizes"] = index.level_sizes
    os.makedirs(args.out, exist_ok=True)
    tok.save_pretrained(args.out)
    index.save_pretrained(args.out)
    with open(os.path.join(args.out, "quality_report.json"), "w") as fh:
        json.dump(report, fh, indent=2)
    print(json.dumps(report, indent=2))
    return 0
