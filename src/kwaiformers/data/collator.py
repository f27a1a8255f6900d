"""Collate :class:`~kwaiformers.data.samples.OneRecSampleBuilder` samples into the OneRec batch.

The batch layout is specified once, in :mod:`kwaiformers.data.schema`; :class:`OneRecCollator`
produces exactly that dict (and checks it with ``validate_onerec_batch``). Histories are truncated
to the most recent ``short_len``/``long_len`` entries and **left-padded** (most recent last),
padded positions have ``mask = False``, codes ``PAD_CODE`` and zero features/labels. The reward
history (``history_durations``/``history_play_times``) is left-padded with NaN to
``reward_history_len`` columns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .samples import OneRecFeatureSpec
from .schema import CONTINUOUS_FEATURES, FEEDBACK_LABELS, PAD_CODE, validate_onerec_batch

__all__ = ["OneRecCollator"]

_F_C = len(CONTINUOUS_FEATURES)
_F_B = len(FEEDBACK_LABELS)


class OneRecCollator:
    """Samples -> ``dict[str, Tensor]`` in the OneRec batch schema.

    Args:
        feature_spec: the builder's :attr:`~OneRecSampleBuilder.feature_spec` (sets the lengths,
            ``num_levels`` and exposes ``user_feature_vocab_sizes`` for the model config).
        short_len, long_len, num_levels, reward_history_len: override / replace the spec.
        validate: run ``validate_onerec_batch`` on every batch.
    """

    def __init__(
        self,
        feature_spec: OneRecFeatureSpec | None = None,
        short_len: int | None = None,
        long_len: int | None = None,
        num_levels: int | None = None,
        reward_history_len: int | None = None,
        validate: bool = True,
    ) -> None:
        spec = feature_spec
        self.feature_spec = spec
        self.short_len = short_len if short_len is not None else (spec.short_len if spec else None)
        self.long_len = long_len if long_len is not None else (spec.long_len if spec else None)
        self.num_levels = num_levels if num_levels is not None else (spec.num_levels if spec else None)
        self.reward_history_len = (reward_history_len if reward_history_len is not None
                                   else (spec.reward_history_len if spec else 64))
        for name in ("short_len", "long_len", "num_levels"):
            val = getattr(self, name)
            if not isinstance(val, int) or val < (1 if name == "num_levels" else 0):
                raise ValueError(f"{name} must be given (or come from feature_spec), got {val!r}")
        self.validate = validate

    @property
    def user_feature_vocab_sizes(self) -> list[int] | None:
        return list(self.feature_spec.user_feature_vocab_sizes) if self.feature_spec else None

    def _pathway(self, samples: Sequence[Mapping[str, Any]], prefix: str, length: int,
                 out: dict[str, torch.Tensor]) -> None:
        bsz, lv = len(samples), self.num_levels
        sids = torch.full((bsz, length, lv), PAD_CODE, dtype=torch.long)
        feats = torch.zeros(bsz, length, _F_C)
        labels = torch.zeros(bsz, length, _F_B)
        mask = torch.zeros(bsz, length, dtype=torch.bool)
        with_ids = f"{prefix}_item_ids" in samples[0]
        item_ids = torch.full((bsz, length), -1, dtype=torch.long)
        for b, s in enumerate(samples):
            h_sids = s[f"{prefix}_sids"]
            n = min(len(h_sids), length)
            if n == 0:
                continue
            h_sids = h_sids[len(h_sids) - n:]
            sid_t = torch.as_tensor(h_sids, dtype=torch.long).reshape(n, -1)
            if sid_t.shape[1] != lv:
                raise ValueError(f"sample {b}: {prefix}_sids have {sid_t.shape[1]} levels, "
                                 f"expected {lv}")
            sids[b, length - n:] = sid_t
            f = s.get(f"{prefix}_feats")
            if f is not None and len(f):
                feats[b, length - n:] = torch.as_tensor(f[len(f) - n:], dtype=torch.float32).reshape(n, _F_C)
            lab = s.get(f"{prefix}_labels")
            if lab is not None and len(lab):
                labels[b, length - n:] = torch.as_tensor(lab[len(lab) - n:], dtype=torch.float32).reshape(n, _F_B)
            mask[b, length - n:] = True
            if with_ids:
                ids = s[f"{prefix}_item_ids"]
                item_ids[b, length - n:] = torch.as_tensor(ids[len(ids) - n:], dtype=torch.long)
        if with_ids:
            out[f"{prefix}_item_ids"] = item_ids
        out[f"{prefix}_sids"], out[f"{prefix}_feats"] = sids, feats
        out[f"{prefix}_labels"], out[f"{prefix}_mask"] = labels, mask

    def __call__(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not isinstance(samples, Sequence) or len(samples) == 0:
            raise ValueError("OneRecCollator needs a non-empty list of samples")
        for key in ("user_static", "short_sids", "long_sids", "target_sids"):
            if key not in samples[0]:
                raise ValueError(f"samples are missing key {key!r} (build them with "
                                 "OneRecSampleBuilder)")
        bsz = len(samples)
        out: dict[str, torch.Tensor] = {}
        widths = {len(s["user_static"]) for s in samples}
        if len(widths) != 1:
            raise ValueError(f"samples have different numbers of user_static features: {widths}")
        out["user_static"] = torch.as_tensor([list(s["user_static"]) for s in samples],
                                             dtype=torch.long).reshape(bsz, -1)
        self._pathway(samples, "short", self.short_len, out)
        self._pathway(samples, "long", self.long_len, out)
        target = torch.as_tensor([list(s["target_sids"]) for s in samples], dtype=torch.long)
        if target.dim() != 2 or target.shape[1] != self.num_levels:
            raise ValueError(f"target_sids must have {self.num_levels} codes per sample, got "
                             f"shape {tuple(target.shape)}")
        out["target_sids"] = target

        def col(key: str, dtype: torch.dtype, default: Any = math.nan) -> torch.Tensor:
            vals = [s.get(key, default) for s in samples]
            vals = [default if v is None else v for v in vals]
            return torch.as_tensor(vals, dtype=dtype)

        if "target_item_id" in samples[0]:
            out["target_item_id"] = col("target_item_id", torch.long, -1)
        if "user_id" in samples[0]:
            out["user_id"] = col("user_id", torch.long, -1)
        if "target_timestamp" in samples[0]:
            out["target_timestamp"] = col("target_timestamp", torch.long, -1)
        out["target_play_time"] = col("target_play_time", torch.float32)
        out["target_duration"] = col("target_duration", torch.float32)
        out["target_is_negative"] = col("target_is_negative", torch.bool, False)
        out["target_logged_prob"] = col("target_logged_prob", torch.float32)
        if "target_served_by_model" in samples[0]:
            out["target_served_by_model"] = col("target_served_by_model", torch.bool, False)
        if "target_labels" in samples[0]:
            out["target_labels"] = torch.as_tensor([list(s["target_labels"]) for s in samples],
                                                   dtype=torch.float32).reshape(bsz, _F_B)
        hl = self.reward_history_len
        durs = torch.full((bsz, hl), math.nan)
        plays = torch.full((bsz, hl), math.nan)
        for b, s in enumerate(samples):
            d = list(s.get("history_durations") or [])[-hl:] if hl else []
            p = list(s.get("history_play_times") or [])[-hl:] if hl else []
            if len(d) != len(p):
                raise ValueError(f"sample {b}: history_durations and history_play_times differ in length")
            if d:
                durs[b, hl - len(d):] = torch.as_tensor(d, dtype=torch.float32)
                plays[b, hl - len(p):] = torch.as_tensor(p, dtype=torch.float32)
        out["history_durations"], out["history_play_times"] = durs, plays
        if self.validate:
            validate_onerec_batch(out, num_levels=self.num_levels)
        return out
