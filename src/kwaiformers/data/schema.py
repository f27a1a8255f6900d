"""The OneRec batch schema: the one contract between data collators and the OneRec models.

A batch is a ``dict[str, torch.Tensor]`` for ``B`` samples (one sample = one user context and one
target impression, OneRec-V2's "newest impression only" organisation). ``L`` is the number of
semantic-ID levels, ``T_s``/``T_l`` the short-term and long-term history lengths. Histories are
**right-aligned in time order and left-padded**: the most recent interaction is the last position;
padded positions have mask ``False`` and code ``PAD_CODE``.

Required keys
-------------
``user_static``        LongTensor[B, F_u]      categorical user features; feature ``f`` takes ids in
                                                ``[0, user_feature_vocab_sizes[f])``, 0 = unknown.
``short_sids``         LongTensor[B, T_s, L]   semantic IDs of the last ``T_s`` interactions.
``short_feats``        FloatTensor[B, T_s, F_c] continuous per-interaction features, in the order of
                                                :data:`CONTINUOUS_FEATURES`.
``short_labels``       FloatTensor[B, T_s, F_b] binary feedback flags, in the order of
                                                :data:`FEEDBACK_LABELS`.
``short_mask``         BoolTensor[B, T_s]
``long_sids`` / ``long_feats`` / ``long_labels`` / ``long_mask``
                       the same for up to ``T_l`` earlier *positive* interactions (V1's
                       positive-feedback pathway; V2's long-term sequence).
``target_sids``        LongTensor[B, L]        codes of the target impression (the label).

Optional keys
-------------
``lifelong_sids`` / ``lifelong_feats`` / ``lifelong_labels`` / ``lifelong_mask``
                       V1's lifelong pathway (compressed history, ``T_ll`` positions).
``target_sids``        may also be LongTensor[B, S, L] for KDD session-wise targets (``S`` items).
``target_item_id``     LongTensor[B]   dataset item id of the target (for Recall/NDCG).
``target_play_time``   FloatTensor[B]  play time of the target impression, seconds.
``target_duration``    FloatTensor[B]  duration of the target item, seconds.
``target_is_negative`` BoolTensor[B]   explicit negative feedback (e.g. KuaiRand ``is_hate``).
``target_logged_prob`` FloatTensor[B]  item-level generation probability logged at serving time;
                                       ``NaN`` when not logged.
``target_served_by_model`` BoolTensor[B]  optional: the exposure was served by the model being
                       aligned (GBPO then uses ``target_logged_prob`` as ``pi_old``; otherwise
                       ``sg(pi)``, OneRec-V2 §3.1.2).
``user_id``            LongTensor[B]   dataset user id.
``short_item_ids`` / ``long_item_ids``  LongTensor[B, T]  dataset item ids of the history positions
                       (``-1`` = padding), for the optional per-item ID embedding of OneRec-V2
                       (``item_id_buckets``).
``history_durations`` / ``history_play_times``  FloatTensor[B, H]  the user's own (duration,
                       play time) history for duration-aware reward shaping, NaN-padded.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

#: Padding value for semantic-ID codes in histories.
PAD_CODE: int = -1

#: Order of ``*_feats`` columns. Durations and play times are ``log1p(seconds)``.
CONTINUOUS_FEATURES: tuple[str, ...] = (
    "log_duration",
    "log_play_time",
    "completion_ratio",
    "log_age_hours",
)

#: Order of ``*_labels`` columns.
FEEDBACK_LABELS: tuple[str, ...] = (
    "is_click",
    "is_like",
    "is_follow",
    "is_comment",
    "is_forward",
    "is_hate",
    "long_view",
)

_PATHWAYS = ("short", "long", "lifelong")


def validate_onerec_batch(batch: Mapping[str, torch.Tensor], num_levels: int | None = None) -> None:
    """Check a batch against the schema; raise ``ValueError``/``TypeError`` naming the field.

    Args:
        batch: the collated batch.
        num_levels: expected number of semantic-ID levels ``L`` (checked when given).
    """
    if not isinstance(batch, Mapping):
        raise TypeError(f"batch must be a mapping of tensors, got {type(batch).__name__}")
    for key in ("user_static", "short_sids", "short_mask", "long_sids", "long_mask", "target_sids"):
        if key not in batch:
            raise ValueError(f"batch is missing required key {key!r} (see kwaiformers.data.schema)")
    for key, value in batch.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"batch[{key!r}] must be a torch.Tensor, got {type(value).__name__}")
    bsz = batch["user_static"].shape[0]
    if bsz == 0:
        raise ValueError("batch is empty (batch['user_static'] has 0 rows)")
    for key, value in batch.items():
        if value.shape[0] != bsz:
            raise ValueError(f"batch[{key!r}] has {value.shape[0]} rows, expected {bsz}")
    for pathway in _PATHWAYS:
        sids = batch.get(f"{pathway}_sids")
        if sids is None:
            continue
        if sids.dim() != 3:
            raise ValueError(f"batch['{pathway}_sids'] must be [B, T, L], got {tuple(sids.shape)}")
        mask = batch.get(f"{pathway}_mask")
        if mask is None or mask.shape != sids.shape[:2]:
            raise ValueError(f"batch['{pathway}_mask'] must be [B, T] matching {pathway}_sids")
        if mask.dtype != torch.bool:
            raise TypeError(f"batch['{pathway}_mask'] must be bool, got {mask.dtype}")
        if num_levels is not None and sids.shape[-1] != num_levels:
            raise ValueError(
                f"batch['{pathway}_sids'] has {sids.shape[-1]} levels, expected {num_levels}"
            )
    target = batch["target_sids"]
    if target.dim() not in (2, 3):
        raise ValueError(f"batch['target_sids'] must be [B, L] or [B, S, L], got {tuple(target.shape)}")
    if num_levels is not None and target.shape[-1] != num_levels:
        raise ValueError(f"batch['target_sids'] has {target.shape[-1]} levels, expected {num_levels}")
    if (target < 0).any():
        raise ValueError("batch['target_sids'] contains negative (padding) codes")
