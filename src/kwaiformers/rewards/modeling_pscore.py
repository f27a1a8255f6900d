"""P-Score: the multi-tower preference reward model of the OneRec Technical Report §2.4.1.

One tower per objective (click, long view, like, follow, dislike, ...) predicts that objective with a
BCE auxiliary loss; the towers' hidden states plus the user and item representations feed a final
MLP whose single output is the P-Score ``p``, trained with the report's weighted BCE against every
objective's label:

    L_P-Score = sum_xtr w^xtr [ -y^xtr log p - (1 - y^xtr) log(1 - p) ]

(on *negative* objectives such as dislike the target is ``1 - y``, our documented choice, so that a
high P-Score means "the user prefers this item"). The report builds on SIM; here the user side is a
target-attention (DIN/SIM-style) pooling of the user's short- and long-term history, each history
position being the sum of its per-level semantic-ID embeddings plus its features and feedback.

The model consumes the OneRec batch schema (:mod:`kwaiformers.data.schema`) with the candidate item
in ``target_sids`` and ``labels`` of shape ``[B, num_objectives]``, so it trains with
``transformers.Trainer`` on the same logs as the recommender; :meth:`PScoreModel.score` scores G
generated candidates per user for ECPO rollouts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from kwaiformers.data.schema import FEEDBACK_LABELS

from .configuration_pscore import PScoreConfig

__all__ = ["PScoreConfig", "PScoreModel", "PScoreOutput", "pscore_labels_from_batch"]


@dataclass
class PScoreOutput(ModelOutput):
    """Outputs of :class:`PScoreModel`.

    Attributes:
        loss: weighted P-Score BCE + ``tower_loss_weight`` x the towers' BCE (when labels given).
        logits: FloatTensor[B] (or [B, G]) P-Score logits; ``sigmoid`` gives ``p``.
        tower_logits: FloatTensor[B, O] (or [B, G, O]) per-objective logits.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    tower_logits: torch.Tensor | None = None


def pscore_labels_from_batch(
    batch: Mapping[str, torch.Tensor], config: PScoreConfig
) -> torch.Tensor:
    """FloatTensor[B, O] labels of the target exposures for ``config.objectives``.

    Sources, in order: ``batch["target_labels"]`` (FloatTensor[B, F_b] in ``FEEDBACK_LABELS``
    order), a per-label key ``batch["target_<name>"]``, then derivations: ``is_hate`` from
    ``target_is_negative``; ``long_view`` = play time >= min(duration, ``long_view_seconds``);
    ``complete`` = play time >= duration; ``is_click`` = play time > 0. Raises ``ValueError``
    naming the objective when none applies.
    """
    cols = []
    labels = batch.get("target_labels")
    play, dur = batch.get("target_play_time"), batch.get("target_duration")
    for name in config.objectives:
        if labels is not None and name in FEEDBACK_LABELS:
            cols.append(labels[:, FEEDBACK_LABELS.index(name)].float())
        elif f"target_{name}" in batch:
            cols.append(batch[f"target_{name}"].float())
        elif name == "is_hate" and "target_is_negative" in batch:
            cols.append(batch["target_is_negative"].float())
        elif name == "long_view" and play is not None and dur is not None:
            cols.append((play >= torch.clamp(dur, max=config.long_view_seconds)).float())
        elif name == "complete" and play is not None and dur is not None:
            cols.append((play >= dur).float())
        elif name == "is_click" and play is not None:
            cols.append((play > 0).float())
        else:
            raise ValueError(
                f"cannot build the label of objective {name!r}: the batch has no 'target_labels', "
                f"'target_{name}' or the fields it can be derived from"
            )
    return torch.stack(cols, dim=-1)


class PScorePreTrainedModel(PreTrainedModel):
    config_class = PScoreConfig
    base_model_prefix = "pscore"
    main_input_name = "target_sids"

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)


class PScoreModel(PScorePreTrainedModel):
    """Multi-tower P-Score reward model (see the module docstring)."""

    def __init__(self, config: PScoreConfig):
        super().__init__(config)
        h, ht = config.hidden_size, config.tower_hidden_size
        self.code_embed = nn.Embedding(sum(config.level_sizes) + 1, h)
        self.user_embeds = nn.ModuleList(nn.Embedding(v, h) for v in config.user_feature_vocab_sizes)
        self.feat_proj = nn.Linear(config.num_continuous_features, h)
        self.label_proj = nn.Linear(config.num_feedback_labels, h)
        self.attn_query = nn.Linear(h, h, bias=False)
        width = 5 * h
        self.towers = nn.ModuleList(
            nn.Sequential(nn.Linear(width, ht), nn.LeakyReLU()) for _ in config.objectives
        )
        self.tower_heads = nn.ModuleList(nn.Linear(ht, 1) for _ in config.objectives)
        self.final = nn.Sequential(
            nn.Linear(ht * len(config.objectives) + width, ht), nn.LeakyReLU(), nn.Linear(ht, 1)
        )
        self.post_init()

    # -- encoders ---------------------------------------------------------------------------
    def _embed_sids(self, sids: torch.Tensor) -> torch.Tensor:
        """Sum of per-level code embeddings; PAD (negative) codes embed to the padding row."""
        cfg = self.config
        if sids.shape[-1] != cfg.num_levels:
            raise ValueError(f"sids have {sids.shape[-1]} levels, expected {cfg.num_levels}")
        sizes = torch.tensor(cfg.level_sizes, device=sids.device)
        if (sids >= sizes).any():
            raise ValueError(f"sids contain codes >= the level's codebook size {cfg.level_sizes}")
        offsets = torch.cumsum(sizes, 0) - sizes
        pad = int(sizes.sum())
        idx = torch.where(sids < 0, torch.full_like(sids, pad), sids + offsets)
        return self.code_embed(idx).sum(-2)

    def _history(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, masks = [], []
        for pathway in ("short", "long"):
            sids = batch.get(f"{pathway}_sids")
            if sids is None:
                continue
            x = self._embed_sids(sids)
            feats = batch.get(f"{pathway}_feats")
            if feats is not None:
                x = x + self.feat_proj(torch.nan_to_num(feats.float()))
            labels = batch.get(f"{pathway}_labels")
            if labels is not None:
                x = x + self.label_proj(labels.float())
            tokens.append(x)
            masks.append(batch[f"{pathway}_mask"].bool())
        if not tokens:
            raise ValueError("batch has neither 'short_sids' nor 'long_sids'")
        return torch.cat(tokens, 1), torch.cat(masks, 1)

    def encode_user(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """User-side tensors shared by all candidates of a user."""
        hist, mask = self._history(batch)
        bsz = hist.shape[0]
        static = hist.new_zeros(bsz, self.config.hidden_size)
        if self.user_embeds:
            us = batch.get("user_static")
            if us is None or us.shape[-1] != len(self.user_embeds):
                raise ValueError(
                    f"batch['user_static'] must be [B, {len(self.user_embeds)}] for this P-Score config"
                )
            for f, emb in enumerate(self.user_embeds):
                static = static + emb(us[:, f].clamp(0, emb.num_embeddings - 1))
        m = mask.unsqueeze(-1).to(hist.dtype)
        mean = (hist * m).sum(1) / m.sum(1).clamp(min=1.0)
        return {"hist": hist, "mask": mask, "static": static, "mean": mean}

    def _score(self, user: dict[str, torch.Tensor], cand: torch.Tensor):
        """cand: [B, G, H] -> (logits [B, G], tower_logits [B, G, O])."""
        hist, mask = user["hist"], user["mask"]
        att = torch.einsum("bgh,bth->bgt", self.attn_query(cand), hist) / math.sqrt(hist.shape[-1])
        att = att.masked_fill(~mask[:, None, :], float("-inf"))
        w = torch.softmax(att, -1)
        w = torch.nan_to_num(w, nan=0.0)  # users without history: zero attention output
        pooled = torch.einsum("bgt,bth->bgh", w, hist)
        g = cand.shape[1]
        x = torch.cat(
            [
                user["static"][:, None].expand(-1, g, -1),
                user["mean"][:, None].expand(-1, g, -1),
                pooled,
                cand,
                pooled * cand,
            ],
            -1,
        )
        hidden = [tower(x) for tower in self.towers]
        tower_logits = torch.cat([head(hd) for head, hd in zip(self.tower_heads, hidden)], -1)
        logits = self.final(torch.cat([*hidden, x], -1)).squeeze(-1)
        return logits, tower_logits

    # -- public API -------------------------------------------------------------------------
    def forward(
        self,
        target_sids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **batch: torch.Tensor,
    ) -> PScoreOutput:
        """Score the target item of each sample; with ``labels`` [B, O] also return the loss."""
        if target_sids is None:
            raise ValueError("PScoreModel.forward needs target_sids [B, L] (the candidate items)")
        if target_sids.dim() != 2:
            raise ValueError(f"target_sids must be [B, L], got {tuple(target_sids.shape)}")
        if target_sids.shape[0] == 0:
            raise ValueError("batch is empty (target_sids has 0 rows)")
        user = self.encode_user(batch)
        logits, tower_logits = self._score(user, self._embed_sids(target_sids)[:, None])
        logits, tower_logits = logits[:, 0], tower_logits[:, 0]
        loss = None
        if labels is not None:
            loss = self.loss(logits, tower_logits, labels)
        return PScoreOutput(loss=loss, logits=logits, tower_logits=tower_logits)

    def loss(self, logits: torch.Tensor, tower_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Weighted P-Score BCE (TR §2.4.1) + ``tower_loss_weight`` x towers' BCE, batch mean."""
        cfg = self.config
        num_obj = len(cfg.objectives)
        if labels.shape != (*logits.shape, num_obj):
            raise ValueError(
                f"labels must be [B, {num_obj}] (one column per objective {cfg.objectives}), "
                f"got {tuple(labels.shape)}"
            )
        labels = labels.float()
        if torch.isnan(labels).any():
            raise ValueError("labels contain NaN")
        tower = F.binary_cross_entropy_with_logits(tower_logits, labels, reduction="none").sum(-1)
        neg = torch.tensor(
            [o in cfg.negative_objectives for o in cfg.objectives], device=labels.device
        )
        target = torch.where(neg, 1.0 - labels, labels)
        weights = torch.tensor(cfg.objective_weights, device=labels.device, dtype=labels.dtype)
        combined = F.binary_cross_entropy_with_logits(
            logits[..., None].expand_as(target), target, reduction="none"
        )
        return ((combined * weights).sum(-1) + cfg.tower_loss_weight * tower).mean()

    @torch.no_grad()
    def score(self, batch: Mapping[str, torch.Tensor], sids: torch.Tensor) -> torch.Tensor:
        """P-Scores ``p`` in (0, 1) of ``G`` candidates per user: sids [B, G, L] -> [B, G]."""
        if sids.dim() != 3:
            raise ValueError(f"sids must be [B, G, L], got {tuple(sids.shape)}")
        user = self.encode_user(batch)
        logits, _ = self._score(user, self._embed_sids(sids.clamp(min=0)))
        return torch.sigmoid(logits)
