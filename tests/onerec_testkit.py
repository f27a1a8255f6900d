"""Tiny OneRec artefacts for the OneRec model tests: schema batches, configs and a brute-force
reference item index (a test double with the ``SemanticIdIndex`` query interface)."""

from __future__ import annotations

import itertools

import torch

from kwaiformers.data.schema import CONTINUOUS_FEATURES, FEEDBACK_LABELS, PAD_CODE

LEVELS = (5, 6, 7)
USER_VOCAB = (11, 3, 4)


def make_batch(
    batch_size: int = 3,
    level_sizes=LEVELS,
    short_len: int = 4,
    long_len: int = 6,
    lifelong_len: int = 0,
    session: int = 0,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """A random batch following ``kwaiformers.data.schema`` (left-padded histories)."""
    g = torch.Generator().manual_seed(seed)
    num_levels = len(level_sizes)

    def sids(n, t):
        cols = [torch.randint(0, k, (n, t), generator=g) for k in level_sizes]
        return torch.stack(cols, -1)

    batch: dict[str, torch.Tensor] = {
        "user_static": torch.stack([torch.randint(0, v, (batch_size,), generator=g) for v in USER_VOCAB], 1)
    }
    for name, t in (("short", short_len), ("long", long_len), ("lifelong", lifelong_len)):
        if name == "lifelong" and t == 0:
            continue
        s = sids(batch_size, t)
        lengths = torch.randint(1, t + 1, (batch_size,), generator=g)
        mask = torch.arange(t)[None, :] >= (t - lengths)[:, None]
        s = s.masked_fill(~mask[..., None], PAD_CODE)
        batch[f"{name}_sids"] = s
        batch[f"{name}_mask"] = mask
        batch[f"{name}_feats"] = torch.rand(batch_size, t, len(CONTINUOUS_FEATURES), generator=g) * mask[..., None]
        batch[f"{name}_labels"] = (
            torch.rand(batch_size, t, len(FEEDBACK_LABELS), generator=g) < 0.3
        ).float() * mask[..., None]
    if session:
        batch["target_sids"] = sids(batch_size, session)
    else:
        batch["target_sids"] = sids(batch_size, 1)[:, 0]
    assert batch["target_sids"].shape[-1] == num_levels
    return batch


def v2_config(**overrides):
    from kwaiformers.models.onerec_v2.configuration_onerec_v2 import OneRecV2Config

    kwargs = dict(
        user_feature_vocab_sizes=list(USER_VOCAB), num_sid_levels=len(LEVELS), codebook_size=list(LEVELS),
        short_seq_len=4, long_seq_len=6, embed_dim=8, hidden_size=16, num_hidden_layers=2,
        num_attention_heads=4, num_kv_groups=2, intermediate_size=32,
    )
    kwargs.update(overrides)
    return OneRecV2Config(**kwargs)


def v1_config(**overrides):
    from kwaiformers.models.onerec.configuration_onerec import OneRecConfig

    kwargs = dict(
        user_feature_vocab_sizes=list(USER_VOCAB), num_sid_levels=len(LEVELS), codebook_size=list(LEVELS),
        short_seq_len=4, long_seq_len=6, lifelong_seq_len=8, num_lifelong_queries=3, qformer_layers=1,
        user_feature_embed_dim=8, sid_embed_dim=8, feature_embed_dim=8, hidden_size=16,
        num_encoder_layers=1, num_decoder_layers=2, num_attention_heads=4, intermediate_size=32,
    )
    kwargs.update(overrides)
    return OneRecConfig(**kwargs)


class BruteForceIndex:
    """Reference item index over an explicit list of item tuples (most popular item first)."""

    def __init__(self, codes: torch.Tensor, level_sizes, popularity=None) -> None:
        self.codes = codes.long()
        self.level_sizes = list(level_sizes)
        self.num_levels = len(self.level_sizes)
        pop = popularity if popularity is not None else torch.zeros(len(codes))
        self.table: dict[tuple[int, ...], list[int]] = {}
        for item in sorted(range(len(codes)), key=lambda i: (-float(pop[i]), i)):
            self.table.setdefault(tuple(codes[item].tolist()), []).append(item)

    def allowed_next_codes(self, prefixes: torch.Tensor) -> torch.Tensor:
        depth = prefixes.shape[1]
        out = torch.zeros(prefixes.shape[0], self.level_sizes[depth], dtype=torch.bool)
        for row, prefix in enumerate(prefixes.tolist()):
            for key in self.table:
                if list(key[:depth]) == prefix:
                    out[row, key[depth]] = True
        return out

    def is_legal(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.tensor([tuple(c) in self.table for c in codes.tolist()], dtype=torch.bool)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.tensor([self.table.get(tuple(c), [-1])[0] for c in codes.tolist()], dtype=torch.long)

    def items_for(self, codes: torch.Tensor) -> list[list[int]]:
        return [list(self.table.get(tuple(c), [])) for c in codes.tolist()]

    def item_codes(self, item_ids: torch.Tensor) -> torch.Tensor:
        return self.codes[item_ids.long()]

    def all_tuples(self) -> torch.Tensor:
        return torch.tensor(sorted(self.table), dtype=torch.long)


def random_index(num_items: int = 12, level_sizes=LEVELS, seed: int = 1) -> BruteForceIndex:
    g = torch.Generator().manual_seed(seed)
    codes = torch.stack([torch.randint(0, k, (num_items,), generator=g) for k in level_sizes], 1)
    popularity = torch.rand(num_items, generator=g)
    return BruteForceIndex(codes, level_sizes, popularity)


def all_tuples(level_sizes=LEVELS) -> torch.Tensor:
    return torch.tensor(list(itertools.product(*[range(k) for k in level_sizes])), dtype=torch.long)
